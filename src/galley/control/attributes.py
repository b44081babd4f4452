"""PutAttributes, DeleteAttributes, ListAttributes: custom attributes on container instances.

Attributes live in the instance document beside the ones the agent registered (ecs.os-type and
any `--attribute`), so placement's memberOf and ListContainerInstances' filter see a change at
once. The only target type ECS has is `container-instance`.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, select, update

from galley.app import Galley
from galley.arns import Scope
from galley.control import clusters
from galley.control.common import paginate, with_token
from galley.errors import ApiError, invalid_parameter
from galley.store import schema as s
from galley.store.db import dumps, loads

INST = s.container_instances
TARGET_TYPE = "container-instance"
MAX_PER_CALL = 10
MAX_CUSTOM = 10  # per resource; the built-in ecs.* attributes do not count
_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.@/\\: -]{1,128}$")


def _check(attribute: dict[str, Any], *, with_value: bool) -> None:
    name = attribute["name"]
    if not _NAME.match(name):
        raise invalid_parameter(
            f"Invalid attribute name {name!r}: use 1-128 letters, numbers, hyphens, "
            "underscores, periods and forward slashes.")
    value = attribute.get("value")
    if with_value and value is not None and (not _VALUE.match(value) or value != value.strip()):
        raise invalid_parameter(
            f"Invalid value for attribute {name!r}: use 1-128 letters, numbers, hyphens, "
            "underscores, periods, at signs, slashes, colons and spaces, not at either end.")
    if attribute.get("targetType", TARGET_TYPE) != TARGET_TYPE:
        raise invalid_parameter(f"targetType must be {TARGET_TYPE}.")
    if not attribute.get("targetId"):
        raise invalid_parameter(f"A targetId is required for attribute {name!r}.")


def _target_docs(conn: Connection, cluster: dict[str, Any], targets: dict[str, str]
                 ) -> dict[str, dict[str, Any]]:
    """instance ARN -> its document, for {ARN: the reference the request used}; an unknown
    target is refused."""
    docs = {}
    for arn, ref in targets.items():
        row = conn.execute(select(INST.c.doc).where(
            INST.c.arn == arn, INST.c.cluster_arn == cluster["clusterArn"],
            INST.c.status != "INACTIVE")).first()
        if row is None:
            raise ApiError("TargetNotFoundException",
                           f"Could not find the {TARGET_TYPE} {ref} in cluster "
                           f"{cluster['clusterName']}.")
        docs[arn] = loads(row.doc)
    return docs


def _change(app: Galley, scope: Scope, params: dict[str, Any], *, put: bool
            ) -> dict[str, Any]:
    attributes = params["attributes"]
    if not 1 <= len(attributes) <= MAX_PER_CALL:
        raise invalid_parameter(f"attributes must hold between 1 and {MAX_PER_CALL} entries.")
    for a in attributes:
        _check(a, with_value=put)
    with app.store.write() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        target_arns = [scope.instance_arn_for(cluster["clusterName"], a["targetId"])
                       for a in attributes]
        docs = _target_docs(conn, cluster, dict(zip(target_arns,
                                                    (a["targetId"] for a in attributes),
                                                    strict=True)))
        for a, arn in zip(attributes, target_arns, strict=True):
            doc = docs[arn]
            kept = [x for x in doc.get("attributes", []) if x["name"] != a["name"]]
            if put:
                kept.append({"name": a["name"], **({"value": a["value"]} if "value" in a
                                                    else {})})
            doc["attributes"] = kept
        for arn, doc in docs.items():
            custom = [x for x in doc["attributes"] if not x["name"].startswith("ecs.")]
            if len(custom) > MAX_CUSTOM:
                raise ApiError("AttributeLimitExceededException",
                               f"You can have at most {MAX_CUSTOM} custom attributes per "
                               f"resource; {arn} would have {len(custom)}.")
            conn.execute(update(INST).where(INST.c.arn == arn).values(doc=dumps(doc)))
    app.store.actual_changed.bump()  # daemons follow their memberOf constraints
    return {"attributes": [{**a, "targetType": TARGET_TYPE, "targetId": arn}
                           for a, arn in zip(attributes, target_arns, strict=True)]}


def put_attributes(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    return _change(app, scope, params, put=True)


def delete_attributes(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    return _change(app, scope, params, put=False)


def list_attributes(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    if params["targetType"] != TARGET_TYPE:
        raise invalid_parameter(f"targetType must be {TARGET_TYPE}.")
    name, value = params.get("attributeName"), params.get("attributeValue")
    if value is not None and name is None:
        raise invalid_parameter("attributeValue can only be given with attributeName.")
    with app.store.read() as conn:
        cluster = clusters.get_active(conn, scope, params.get("cluster"))
        rows = conn.execute(select(INST.c.arn, INST.c.doc).where(
            INST.c.cluster_arn == cluster["clusterArn"], INST.c.status != "INACTIVE")
            .order_by(INST.c.registered_at, INST.c.arn)).all()
    found = []
    for row in rows:
        for a in loads(row.doc).get("attributes", []):
            if name is not None and a["name"] != name:
                continue
            if value is not None and a.get("value") != value:
                continue
            found.append({**a, "targetType": TARGET_TYPE, "targetId": row.arn})
    page, token = paginate(found, params)
    return with_token({"attributes": page}, token)
