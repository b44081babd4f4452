"""Clusters: create (idempotent), describe with derived counts, list, update, delete."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.control import tags
from galley.control.common import describe_each, now, paginate, with_token
from galley.errors import ApiError, cluster_not_found, invalid_parameter
from galley.store import schema as s
from galley.store.db import dumps, loads

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
PENDING_STATES = ("PROVISIONING", "PENDING", "ACTIVATING")
DEFAULT_SETTINGS = [{"name": "containerInsights", "value": "disabled"}]


def cluster_arn_for(scope: Scope, ref: str | None) -> str:
    ref = ref or "default"
    return ref if arns.is_arn(ref) else scope.cluster_arn(ref)


def get_active(conn: Connection, scope: Scope, ref: str | None) -> dict[str, Any]:
    """The ACTIVE cluster a request names (name or ARN, default "default"), else ClusterNotFound."""
    row = conn.execute(
        select(s.clusters.c.doc, s.clusters.c.status).where(
            s.clusters.c.arn == cluster_arn_for(scope, ref)
        )
    ).first()
    if row is None or row.status != "ACTIVE":
        raise cluster_not_found()
    return loads(row.doc)


def _counts(conn: Connection, cluster_arns: list[str]) -> dict[str, dict[str, int]]:
    counts = {a: {"running": 0, "pending": 0, "services": 0, "instances": 0} for a in cluster_arns}
    rows = conn.execute(
        select(s.tasks.c.cluster_arn, s.tasks.c.last_status, func.count())
        .where(s.tasks.c.cluster_arn.in_(cluster_arns), s.tasks.c.stopped_at.is_(None))
        .group_by(s.tasks.c.cluster_arn, s.tasks.c.last_status)
    )
    for arn, status, n in rows:
        if status == "RUNNING":
            counts[arn]["running"] += n
        elif status in PENDING_STATES:
            counts[arn]["pending"] += n
    for counter in COUNTERS:
        for arn, key, n in counter(conn, cluster_arns):
            counts[arn][key] += n
    return counts


# Later modules (services, container instances) add functions yielding (cluster_arn, key, n).
COUNTERS: list[Any] = []


def _present(
    doc: dict[str, Any], counts: dict[str, int], tag_list: list[dict[str, str]] | None
) -> dict[str, Any]:
    out = dict(doc)
    out["registeredContainerInstancesCount"] = counts["instances"]
    out["runningTasksCount"] = counts["running"]
    out["pendingTasksCount"] = counts["pending"]
    out["activeServicesCount"] = counts["services"]
    out["statistics"] = []
    out["tags"] = tag_list or []
    return out


def _new_doc(scope: Scope, name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusterArn": scope.cluster_arn(name),
        "clusterName": name,
        "status": "ACTIVE",
        "settings": params.get("settings") or list(DEFAULT_SETTINGS),
        "capacityProviders": params.get("capacityProviders", []),
        "defaultCapacityProviderStrategy": params.get("defaultCapacityProviderStrategy", []),
        **({"configuration": params["configuration"]} if "configuration" in params else {}),
        **(
            {"serviceConnectDefaults": params["serviceConnectDefaults"]}
            if "serviceConnectDefaults" in params
            else {}
        ),
    }


def create_cluster(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("clusterName") or "default"
    if not _NAME.match(name):
        raise invalid_parameter(
            "Cluster name should be between 1 and 255 characters long and can only contain "
            "letters, numbers, underscores and hyphens."
        )
    tag_list = params.get("tags", [])
    tags.validate(tag_list)
    _check_settings(params.get("settings", []))
    arn = scope.cluster_arn(name)
    with app.store.write() as conn:
        row = conn.execute(
            select(s.clusters.c.doc, s.clusters.c.status).where(s.clusters.c.arn == arn)
        ).first()
        if row is not None and row.status == "ACTIVE":
            # Idempotent, as ECS: the existing cluster comes back unchanged.
            doc = loads(row.doc)
        else:
            doc = _new_doc(scope, name, params)
            values = {"status": "ACTIVE", "created_at": now(), "doc": dumps(doc)}
            if row is None:
                conn.execute(
                    insert(s.clusters).values(arn=arn, region=scope.region, name=name, **values)
                )
            else:
                conn.execute(update(s.clusters).where(s.clusters.c.arn == arn).values(**values))
                tags.remove(conn, arn)
            tags.put(conn, arn, tag_list)
        counts = _counts(conn, [arn])[arn]
        return {"cluster": _present(doc, counts, tags.get(conn, arn))}


def describe_clusters(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params.get("clusters") or ["default"]
    if len(refs) > 100:
        raise invalid_parameter("At most 100 clusters can be described at once.")
    include = set(params.get("include", []))
    wanted = [cluster_arn_for(scope, r) for r in refs]
    with app.store.read() as conn:
        rows = {
            r.arn: loads(r.doc)
            for r in conn.execute(
                select(s.clusters.c.arn, s.clusters.c.doc).where(s.clusters.c.arn.in_(wanted))
            )
        }
        counts = _counts(conn, list(rows))
        clusters, failures = describe_each(wanted, rows, lambda arn, doc: _present(
            doc, counts[arn], tags.get(conn, arn) if "TAGS" in include else None))
    return {"clusters": clusters, "failures": failures}


def list_clusters(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.read() as conn:
        arn_list = [
            r.arn
            for r in conn.execute(
                select(s.clusters.c.arn)
                .where(s.clusters.c.region == scope.region, s.clusters.c.status == "ACTIVE")
                .order_by(s.clusters.c.arn)
            )
        ]
    page, token = paginate(arn_list, params)
    return with_token({"clusterArns": page}, token)


def update_cluster(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        doc = get_active(conn, scope, params["cluster"])
        _check_settings(params.get("settings", []))
        for key in ("settings", "configuration", "serviceConnectDefaults"):
            if key in params:
                doc[key] = (
                    _merge_settings(doc.get(key), params[key]) if key == "settings" else params[key]
                )
        _save(conn, doc)
        counts = _counts(conn, [doc["clusterArn"]])[doc["clusterArn"]]
        return {"cluster": _present(doc, counts, tags.get(conn, doc["clusterArn"]))}


def update_cluster_settings(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    return update_cluster(
        app, scope, {"cluster": params["cluster"], "settings": params["settings"]}
    )


def _check_settings(settings: list[dict[str, str]]) -> None:
    for item in settings:
        if item.get("name") != "containerInsights" or "value" not in item:
            raise invalid_parameter("Cluster settings need name 'containerInsights' and a value.")


def _merge_settings(
    current: list[dict[str, str]] | None, new: list[dict[str, str]]
) -> list[dict[str, str]]:
    merged = {x["name"]: x for x in current or []}
    merged.update({x["name"]: x for x in new})
    return list(merged.values())


def _save(conn: Connection, doc: dict[str, Any]) -> None:
    conn.execute(
        update(s.clusters)
        .where(s.clusters.c.arn == doc["clusterArn"])
        .values(doc=dumps(doc), status=doc["status"])
    )


# Later modules add refusal checks: functions (conn, cluster_arn) -> ApiError | None.
DELETE_CHECKS: list[Any] = []


def delete_cluster(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        doc = get_active(conn, scope, params["cluster"])
        arn = doc["clusterArn"]
        for check in DELETE_CHECKS:
            refusal = check(conn, arn)
            if refusal is not None:
                raise refusal
        active_task = conn.execute(
            select(s.tasks.c.arn)
            .where(s.tasks.c.cluster_arn == arn, s.tasks.c.stopped_at.is_(None))
            .limit(1)
        ).first()
        if active_task is not None:
            raise ApiError(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            )
        doc["status"] = "INACTIVE"
        _save(conn, doc)
        counts = _counts(conn, [arn])[arn]
        return {"cluster": _present(doc, counts, tags.get(conn, arn))}
