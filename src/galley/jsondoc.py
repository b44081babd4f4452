"""JSON documents, fast (orjson): the store keeps resources as JSON text and the API answers
JSON, so a stored document can be spliced into an answer without being parsed again."""

from __future__ import annotations

from typing import Any

import orjson

loads = orjson.loads


def dumps(doc: Any) -> str:
    return orjson.dumps(doc).decode()


class RawJson(str):
    """A JSON text already at hand (e.g. a stored document), written into answers unparsed."""


def _raw(value: Any) -> Any:
    if isinstance(value, RawJson):
        return orjson.Fragment(value.encode())
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_body(doc: dict[str, Any]) -> bytes:
    """An API answer as bytes, with any RawJson values spliced in."""
    return orjson.dumps(doc, default=_raw, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
