"""The HTTP/1.1 request parser of the API server: request lines, header fields, body framing."""

from __future__ import annotations

import pytest

from galley.api.server import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    Headers,
    HttpError,
    body_length,
    parse_head,
    render_response,
)


def status_of(head: bytes) -> int:
    with pytest.raises(HttpError) as err:
        parse_head(head)
    return err.value.status


def test_request_line_and_fields() -> None:
    head = parse_head(b"POST /a/b?x=1 HTTP/1.1\r\nHost: h:1\r\nX-Amz-Target:  A.B  \r\n"
                      b"x-amz-target: second\r\nContent-Length: 2")
    assert (head.method, head.target, head.version) == ("POST", "/a/b?x=1", (1, 1))
    assert head.headers.get("host") == "h:1"
    assert head.headers.get("X-AMZ-TARGET") == "A.B"  # first value, surrounding blanks dropped
    assert head.headers.get_all("X-Amz-Target") == ["A.B", "second"]
    assert head.headers["missing"] is None and head.headers.get("missing", "d") == "d"
    assert "content-length" in head.headers and "nope" not in head.headers
    assert head.headers.items()[0] == ("Host", "h:1")  # original names, in order (for SigV4)
    assert len(head.headers) == 4 and list(head.headers)[1] == "X-Amz-Target"


def test_bare_lf_lines_and_leading_empty_lines() -> None:
    head = parse_head(b"\r\n\nGET /health HTTP/1.0\nHost: x\n")
    assert (head.method, head.target, head.version) == ("GET", "/health", (1, 0))
    assert head.headers.get("Host") == "x"


def test_empty_field_value_is_kept() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nX-Empty:\r\n").headers.get("x-empty") == ""


@pytest.mark.parametrize("line", [
    b"GARBAGE", b"GET /", b"GET / HTTP/1.1 extra", b"GET  / HTTP/1.1", b"G(T / HTTP/1.1",
    b"GET / FTP/1.1", b"GET / HTTP/1", b"GET / http/1.1", b"", b"\r\n", b" GET / HTTP/1.1",
])
def test_bad_request_line_is_400(line: bytes) -> None:
    assert status_of(line + b"\r\nHost: x") == 400


def test_other_http_versions_are_505() -> None:
    assert status_of(b"GET / HTTP/2.0\r\nHost: x") == 505
    assert status_of(b"GET / HTTP/0.9") == 505


@pytest.mark.parametrize("field", [
    b"NoColon", b"Bad Name: x", b"Name : x", b": value", b"Na(me: x", b" folded", b"\tfolded",
])
def test_bad_header_field_is_400(field: bytes) -> None:
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n" + field) == 400


def test_empty_line_inside_the_head_is_400() -> None:
    assert status_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nX: y") == 400


def test_too_many_fields_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    assert status_of(b"GET / HTTP/1.1\r\n" + fields) == 431
    ok = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS))
    assert len(parse_head(b"GET / HTTP/1.1\r\n" + ok).headers) == MAX_HEADERS


def test_oversized_head_is_431() -> None:
    assert status_of(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES) == 431


def test_non_ascii_bytes_do_not_crash() -> None:
    head = parse_head(b"GET /\xff HTTP/1.1\r\nX: \xe9\xff")
    assert head.target == "/\xff" and head.headers.get("x") == "\xe9\xff"


@pytest.mark.parametrize(("raw", "keep"), [
    (b"GET / HTTP/1.1\r\nHost: x", True),
    (b"GET / HTTP/1.1\r\nConnection: close", False),
    (b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Close", False),
    (b"GET / HTTP/1.0\r\nHost: x", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive", True),
])
def test_keep_alive(raw: bytes, keep: bool) -> None:
    assert parse_head(raw).keep_alive is keep


def headers(*fields: tuple[str, str]) -> Headers:
    return Headers(list(fields))


def test_body_length() -> None:
    assert body_length(headers()) == 0  # no Content-Length: no body
    assert body_length(headers(("Content-Length", "12"))) == 12
    assert body_length(headers(("content-length", " 0 "))) == 0
    assert body_length(headers(("Content-Length", "5"), ("Content-Length", "5"))) == 5
    assert body_length(headers(("Transfer-Encoding", "chunked"))) is None
    assert body_length(headers(("Transfer-Encoding", "Chunked"), ("Content-Length", "3"))) is None


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "0x10", "\u00b2", "", "1 2", "+5",
                                   "9" * 19])
def test_bad_content_length_is_400(value: str) -> None:
    with pytest.raises(HttpError) as err:
        body_length(headers(("Content-Length", value)))
    assert err.value.status == 400


def test_conflicting_content_lengths_are_400() -> None:
    with pytest.raises(HttpError) as err:
        body_length(headers(("Content-Length", "5"), ("Content-Length", "6")))
    assert err.value.status == 400


def test_too_large_body_is_413() -> None:
    with pytest.raises(HttpError) as err:
        body_length(headers(("Content-Length", str(MAX_BODY_BYTES + 1))))
    assert err.value.status == 413


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "identity", "chunked, chunked"])
def test_other_transfer_codings_are_501(coding: str) -> None:
    with pytest.raises(HttpError) as err:
        body_length(headers(("Transfer-Encoding", coding)))
    assert err.value.status == 501


def test_render_response() -> None:
    out = render_response(200, "application/x-amz-json-1.1", b"{}", "rid-1")
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Length: 2" in lines and "x-amzn-RequestId: rid-1" in lines
    assert "Content-Type: application/x-amz-json-1.1" in lines
    assert any(line.startswith("Date: ") and line.endswith(" GMT") for line in lines)
    assert body == b"{}"
    closing = render_response(431, "application/json", b"", connection="close")
    assert closing.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"\r\nConnection: close\r\n" in closing and b"RequestId" not in closing
