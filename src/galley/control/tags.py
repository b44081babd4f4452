"""Tags on any ECS resource, kept in one table keyed by resource ARN."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from galley import arns
from galley.app import Galley
from galley.arns import Scope
from galley.errors import invalid_parameter, resource_not_found
from galley.store import schema as s

MAX_TAGS = 50


def validate(tags: list[dict[str, Any]]) -> None:
    if len(tags) > MAX_TAGS:
        raise invalid_parameter(f"A resource can have at most {MAX_TAGS} tags.")
    for tag in tags:
        key = tag.get("key")
        if not key or len(key) > 128:
            raise invalid_parameter("Tag keys must be between 1 and 128 characters.")
        if len(tag.get("value", "")) > 256:
            raise invalid_parameter("Tag values must be at most 256 characters.")
        if key.lower().startswith("aws:"):
            raise invalid_parameter("Tag keys may not start with the reserved prefix 'aws:'.")


def get(conn: Connection, arn: str) -> list[dict[str, str]]:
    rows = conn.execute(
        select(s.tags.c.key, s.tags.c.value)
        .where(s.tags.c.resource_arn == arn)
        .order_by(s.tags.c.key)
    )
    return [{"key": k, "value": v} for k, v in rows]


def put(conn: Connection, arn: str, tags: list[dict[str, Any]]) -> None:
    if not tags:
        return
    validate(tags)
    latest = {tag["key"]: tag.get("value", "") for tag in tags}
    remove(conn, arn, list(latest))
    conn.execute(
        insert(s.tags), [{"resource_arn": arn, "key": k, "value": v} for k, v in latest.items()]
    )
    if len(get(conn, arn)) > MAX_TAGS:
        raise invalid_parameter(f"A resource can have at most {MAX_TAGS} tags.")


def remove(conn: Connection, arn: str, keys: list[str] | None = None) -> None:
    stmt = delete(s.tags).where(s.tags.c.resource_arn == arn)
    if keys is not None:
        stmt = stmt.where(s.tags.c.key.in_(keys))
    conn.execute(stmt)


def _require_resource(conn: Connection, scope: Scope, arn: str) -> None:
    parsed = arns.parse(arn)
    if parsed is None:
        raise invalid_parameter("The ARN provided is invalid.")
    kind = arns.resource_kind(arn)
    table = TAGGABLE.get(kind or "")
    if table is None:
        raise invalid_parameter("The ARN provided is invalid.")
    if conn.execute(select(table.c.arn).where(table.c.arn == arn)).first() is None:
        raise resource_not_found("The specified resource could not be found.")


# ARN resource kind -> the table holding that kind (each has an `arn` column).
TAGGABLE: dict[str, Any] = {
    "cluster": s.clusters,
    "task-definition": s.task_definitions,
    "task": s.tasks,
}


def tag_resource(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        _require_resource(conn, scope, params["resourceArn"])
        put(conn, params["resourceArn"], params["tags"])
    return {}


def untag_resource(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.write() as conn:
        _require_resource(conn, scope, params["resourceArn"])
        remove(conn, params["resourceArn"], params["tagKeys"])
    return {}


def list_tags_for_resource(app: Galley, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    with app.store.read() as conn:
        _require_resource(conn, scope, params["resourceArn"])
        return {"tags": get(conn, params["resourceArn"])}
