"""Task definitions: register revisions, describe, list, deregister, delete.

Validation and normalisation are pure and live in `taskdef_rules`; this module only numbers
revisions (never reused, even after deletion) and keeps them in the store.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, insert, select, update

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.control import tags
from galley.control.common import now, paginate, with_token
from galley.control.taskdef_rules import normalize_task_definition
from galley.errors import client_error, invalid_parameter
from galley.store import schema as s
from galley.store.db import dumps, loads

_FAMILY_REV = re.compile(r"^([A-Za-z0-9_-]{1,255}):(\d+)$")
_FAMILY = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
T = s.task_definitions


def _lookup(conn: Connection, scope: Scope, ref: str) -> dict[str, Any] | None:
    """A task definition by ARN, family:revision, or family (its latest ACTIVE revision)."""
    if arns.is_arn(ref):
        row = conn.execute(select(T.c.doc).where(T.c.arn == ref)).first()
    elif m := _FAMILY_REV.match(ref):
        row = conn.execute(
            select(T.c.doc).where(
                T.c.region == scope.region,
                T.c.family == m.group(1),
                T.c.revision == int(m.group(2)),
            )
        ).first()
    elif _FAMILY.match(ref):
        row = conn.execute(
            select(T.c.doc)
            .where(T.c.region == scope.region, T.c.family == ref, T.c.status == "ACTIVE")
            .order_by(T.c.revision.desc())
            .limit(1)
        ).first()
    else:
        row = None
    return loads(row.doc) if row else None


def get_for_launch(conn: Connection, scope: Scope, ref: str) -> dict[str, Any]:
    """The ACTIVE task definition a RunTask/CreateService names, with ECS's refusals."""
    doc = _lookup(conn, scope, ref)
    if doc is None or doc["status"] == "DELETE_IN_PROGRESS":
        raise invalid_parameter("TaskDefinition not found.")
    if doc["status"] != "ACTIVE":
        raise invalid_parameter("TaskDefinition is inactive")
    return doc


def register_task_definition(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    body = normalize_task_definition(params)
    tag_list = params.get("tags", [])
    tags.validate(tag_list)
    family = body["family"]
    with app.store.write() as conn:
        row = conn.execute(
            select(s.families.c.last_revision).where(
                s.families.c.region == scope.region, s.families.c.family == family
            )
        ).first()
        revision = (row.last_revision if row else 0) + 1
        if row:
            conn.execute(
                update(s.families)
                .where(s.families.c.region == scope.region, s.families.c.family == family)
                .values(last_revision=revision)
            )
        else:
            conn.execute(
                insert(s.families).values(
                    region=scope.region, family=family, last_revision=revision
                )
            )
        arn = scope.task_definition_arn(family, revision)
        doc = {
            "taskDefinitionArn": arn,
            **body,
            "revision": revision,
            "status": "ACTIVE",
            "registeredAt": now(),
            "registeredBy": f"arn:aws:iam::{scope.account}:root",
        }
        conn.execute(
            insert(T).values(
                arn=arn,
                region=scope.region,
                family=family,
                revision=revision,
                status="ACTIVE",
                doc=dumps(doc),
            )
        )
        tags.put(conn, arn, tag_list)
    result: dict[str, Any] = {"taskDefinition": doc}
    if tag_list:
        result["tags"] = tag_list
    return result


def describe_task_definition(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.read() as conn:
        doc = _lookup(conn, scope, params["taskDefinition"])
        if doc is None:
            raise client_error("Unable to describe task definition.")
        result: dict[str, Any] = {"taskDefinition": doc}
        if "TAGS" in params.get("include", []):
            result["tags"] = tags.get(conn, doc["taskDefinitionArn"])
    return result


def list_task_definitions(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    query = select(T.c.arn).where(
        T.c.region == scope.region, T.c.status == params.get("status", "ACTIVE")
    )
    if params.get("familyPrefix"):
        query = query.where(T.c.family == params["familyPrefix"])
    if params.get("sort", "ASC") == "DESC":
        query = query.order_by(T.c.family.desc(), T.c.revision.desc())
    else:
        query = query.order_by(T.c.family, T.c.revision)
    with app.store.read() as conn:
        arn_list = [r.arn for r in conn.execute(query)]
    page, token = paginate(arn_list, params)
    return with_token({"taskDefinitionArns": page}, token)


def list_task_definition_families(
    app: Galley, scope: Scope, params: dict[str, Any]
) -> dict[str, Any]:
    status = params.get("status", "ALL")
    with app.store.read() as conn:
        rows = conn.execute(select(T.c.family, T.c.status).where(T.c.region == scope.region))
        active: dict[str, bool] = {}
        for family, st in rows:
            active[family] = active.get(family, False) or st == "ACTIVE"
    prefix = params.get("familyPrefix", "")
    families = sorted(
        f
        for f, is_active in active.items()
        if f.startswith(prefix) and (status == "ALL" or (status == "ACTIVE") == is_active)
    )
    page, token = paginate(families, params)
    return with_token({"families": page}, token)


def _require_revision(conn: Connection, scope: Scope, ref: str) -> dict[str, Any]:
    if not (arns.is_arn(ref) or _FAMILY_REV.match(ref)):
        raise client_error("Invalid revision number. Number: " + ref.rpartition(":")[2])
    doc = _lookup(conn, scope, ref)
    if doc is None:
        raise client_error("The specified task definition does not exist.")
    return doc


def _save(conn: Connection, doc: dict[str, Any]) -> None:
    conn.execute(
        update(T)
        .where(T.c.arn == doc["taskDefinitionArn"])
        .values(status=doc["status"], doc=dumps(doc))
    )


def deregister_task_definition(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        doc = _require_revision(conn, scope, params["taskDefinition"])
        if doc["status"] == "ACTIVE":
            doc["status"] = "INACTIVE"
            doc["deregisteredAt"] = now()
            _save(conn, doc)
    return {"taskDefinition": doc}


def delete_task_definitions(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params["taskDefinitions"]
    if not 1 <= len(refs) <= 10:
        raise invalid_parameter("taskDefinitions must contain between 1 and 10 entries.")
    deleted, failures = [], []
    with app.store.write() as conn:
        for ref in refs:
            doc = (
                _lookup(conn, scope, ref) if (arns.is_arn(ref) or _FAMILY_REV.match(ref)) else None
            )
            if doc is None:
                failures.append(
                    {
                        "arn": ref,
                        "reason": "TASK_DEFINITION_NOT_FOUND",
                        "detail": "The specified task definition does not exist.",
                    }
                )
            elif doc["status"] == "ACTIVE":
                failures.append(
                    {
                        "arn": doc["taskDefinitionArn"],
                        "reason": "The specified task definition is still in ACTIVE status. "
                        "Please deregister the target and try again.",
                    }
                )
            else:
                if doc["status"] == "INACTIVE":
                    doc["status"] = "DELETE_IN_PROGRESS"
                    doc["deleteRequestedAt"] = now()
                    _save(conn, doc)
                deleted.append(doc)
    return {"taskDefinitions": deleted, "failures": failures}
