"""Clusters: create (idempotent), describe with derived counts, list, update, delete.

DescribeClusters answers are derived from several tables (the cluster row, live task counts, the
services and container instances that later modules count through `COUNTERS`). Computing them
costs a handful of queries, so each cluster's answer is kept, encoded, in `_ANSWERS` under the
store generation read before computing it (`Store.generation()`), and reused only while the
generation is unchanged: any commit, through `Store.write()` or by another connection to the
SQLite file, makes every kept answer stale, so every answer still reflects every write. This
holds only while an answer is a function of the store's content alone: a field computed from
the clock (or anything else outside the store) must not be added to `_present` without taking
it out of the cache.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.control import tags
from galley.control.common import now, paginate, with_token
from galley.errors import ApiError, cluster_not_found, invalid_parameter
from galley.jsondoc import RawJson
from galley.scheduler import capacity
from galley.store import schema as s
from galley.store.db import dumps, generation_of, loads

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
PENDING_STATES = ("PROVISIONING", "PENDING", "ACTIVATING")
DEFAULT_SETTINGS = [{"name": "containerInsights", "value": "disabled"}]


def cluster_arn_for(scope: Scope, ref: str | None) -> str:
    ref = ref or "default"
    return ref if arns.is_arn(ref) else scope.cluster_arn(ref)


def get_active(conn: Connection, scope: Scope, ref: str | None) -> dict[str, Any]:
    """The ACTIVE cluster a request names (name or ARN, default "default"), else ClusterNotFound.

    Nearly every call names a cluster, so its row (status, document) is kept in `_ROWS` under
    the store generation, like DescribeClusters' answers; never inside a write transaction that
    has changed something (see `generation_of`). The document is decoded afresh every time."""
    arn = cluster_arn_for(scope, ref)
    generation = generation_of(conn)  # before reading: a later commit makes it stale
    row = _ROWS.get(generation, arn)
    if row is None:
        found = conn.execute(
            select(s.clusters.c.status, s.clusters.c.doc).where(s.clusters.c.arn == arn)
        ).first()
        row = (found.status, found.doc) if found is not None else (None, None)
        _ROWS.put(generation, arn, row)
    status, doc = row
    if status != "ACTIVE":
        raise cluster_not_found()
    return loads(doc)


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
        "defaultCapacityProviderStrategy": capacity.normalized(
            params.get("defaultCapacityProviderStrategy", [])),
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
    try:
        capacity.check_cluster(params.get("capacityProviders") or [],
                               params.get("defaultCapacityProviderStrategy") or [])
    except capacity.StrategyError as e:
        raise invalid_parameter(str(e)) from None
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


class AnswerCache:
    """Values computed from the store, kept while the store's generation is unchanged.

    Only for values that are a function of the store's content (not of the clock). `get` and
    `put` take the generation the caller read *before* reading the store; a None generation (the
    store cannot tell) caches nothing. Entries of an older generation are
    dropped as a whole when a newer one is put. Thread-safe: the state is one tuple, swapped.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._state: tuple[Any, dict[Any, Any]] = (None, {})

    def get(self, generation: Any, key: Any) -> Any:
        held, entries = self._state
        if generation is None or generation != held:
            return None
        return entries.get(key)

    def put(self, generation: Any, key: Any, value: Any) -> None:
        if generation is None:
            return
        held, entries = self._state
        if generation != held:
            self._state = (generation, {key: value})
        elif len(entries) < self.limit:
            entries[key] = value


_ANSWERS = AnswerCache()  # (cluster ARN, with tags) -> encoded DescribeClusters answer
_ROWS = AnswerCache()  # cluster ARN -> (status, document) of its row, (None, None) if none
_MISSING: Any = object()  # kept for an ARN no cluster has: a MISSING failure


def describe_clusters(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    refs = params.get("clusters") or ["default"]
    if len(refs) > 100:
        raise invalid_parameter("At most 100 clusters can be described at once.")
    with_tags = "TAGS" in params.get("include", [])
    wanted = list(dict.fromkeys(cluster_arn_for(scope, r) for r in refs))
    generation = app.store.generation()  # before reading: a later commit makes it stale
    found = [_ANSWERS.get(generation, (arn, with_tags)) for arn in wanted]
    if None in found:
        found = _describe_from_store(app, wanted, with_tags)
        for arn, answer in zip(wanted, found, strict=True):
            _ANSWERS.put(generation, (arn, with_tags), answer)
    clusters: list[Any] = []
    failures: list[dict[str, str]] = []
    for arn, answer in zip(wanted, found, strict=True):
        if answer is _MISSING:
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            clusters.append(answer)
    return {"clusters": clusters, "failures": failures}


def _describe_from_store(app: Galley, wanted: list[str], with_tags: bool) -> list[Any]:
    """Each wanted cluster's Describe answer, encoded, or _MISSING."""
    with app.store.read() as conn:
        rows = {
            r.arn: loads(r.doc)
            for r in conn.execute(
                select(s.clusters.c.arn, s.clusters.c.doc).where(s.clusters.c.arn.in_(wanted))
            )
        }
        counts = _counts(conn, list(rows))
        return [
            RawJson(dumps(_present(rows[arn], counts[arn],
                                   tags.get(conn, arn) if with_tags else None)))
            if arn in rows else _MISSING
            for arn in wanted
        ]


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
