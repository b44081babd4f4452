"""Stored JSON spliced into answers."""

import json

from galley.jsondoc import RawJson, dumps, encode_body, loads


def test_raw_json_is_spliced_not_quoted() -> None:
    stored = dumps({"taskArn": "arn:x", "version": 3})
    body = encode_body({"tasks": [RawJson(stored), {"taskArn": "arn:y"}], "failures": []})
    assert json.loads(body) == {"tasks": [{"taskArn": "arn:x", "version": 3},
                                          {"taskArn": "arn:y"}], "failures": []}


def test_round_trip() -> None:
    doc = {"a": [1, 2.5, "é"], "b": {"c": None}}
    assert loads(dumps(doc)) == doc
