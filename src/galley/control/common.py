"""Small pieces every control module uses: time, pagination tokens, JSON docs."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from galley.errors import invalid_parameter

T = TypeVar("T")


def now() -> float:
    """Epoch seconds with millisecond precision, as ECS timestamps are."""
    return round(time.time(), 3)


def encode_token(position: Any) -> str:
    raw = json.dumps({"p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return json.loads(raw)["p"]
    except (ValueError, KeyError, TypeError):
        raise invalid_parameter("Invalid nextToken.") from None


def page_limit(params: dict[str, Any], default: int = 100, maximum: int = 100) -> int:
    limit = params.get("maxResults", default)
    if not 1 <= limit <= maximum:
        raise invalid_parameter(f"maxResults must be between 1 and {maximum}.")
    return int(limit)


def _page_start(params: dict[str, Any]) -> int:
    """The offset a nextToken carries (0 without one); a bad token is the caller's error."""
    if not params.get("nextToken"):
        return 0
    start = decode_token(params["nextToken"])
    if not isinstance(start, int) or start < 0:
        raise invalid_parameter("Invalid nextToken.")
    return start


def paginate(
    items: Sequence[T], params: dict[str, Any], default: int = 100, maximum: int = 100
) -> tuple[list[T], str | None]:
    """One page of an already ordered list, by offset in an opaque token."""
    limit, start = page_limit(params, default, maximum), _page_start(params)
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, encode_token(start + limit) if more else None


def paginate_query(conn: Any, query: Any, params: dict[str, Any], default: int = 100,
                   maximum: int = 100) -> tuple[list[Any], str | None]:
    """One page of an ordered SELECT, fetched with OFFSET/LIMIT in the database."""
    limit, start = page_limit(params, default, maximum), _page_start(params)
    rows = conn.execute(query.offset(start).limit(limit + 1)).all()
    more = len(rows) > limit
    return rows[:limit], encode_token(start + limit) if more else None


def with_token(result: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        result["nextToken"] = token
    return result


def describe_each(wanted: Sequence[str], found: Mapping[str, T],
                  present: Callable[[str, T], Any]) -> tuple[list[Any], list[dict[str, str]]]:
    """A Describe* answer: what was found, in request order and once each, and a MISSING
    failure for every other ARN asked for (ECS reports those, it does not raise)."""
    items: list[Any] = []
    failures: list[dict[str, str]] = []
    for arn in dict.fromkeys(wanted):
        if arn in found:
            items.append(present(arn, found[arn]))
        else:
            failures.append({"arn": arn, "reason": "MISSING"})
    return items, failures
