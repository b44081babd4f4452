"""The API server's HTTP/1.1 front end over real sockets, with a stub router.

Keep-alive, pipelining, Content-Length / chunked / absent bodies, Expect: 100-continue, HTTP/1.0,
refusals (a 4xx, the connection closed, the server still serving), a long poll that blocks only
its own connection, and shutdown.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from galley.api.server import MAX_HEAD_BYTES, GalleyHTTPServer


class StubRouter:
    """Echoes what the server handed it; `/block` waits for `release`, `/boom` raises."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[str, str, str, Any, bytes]] = []

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes
               ) -> tuple[int, dict[str, Any], str]:
        self.calls.append((method, path, query, headers, body))
        if path == "/block":
            self.release.wait(10)
        if path == "/boom":
            raise RuntimeError("handler bug")
        status = 400 if path == "/bad" else 200
        return status, {"path": path, "query": query, "body": body.decode("latin-1"),
                        "target": headers.get("x-amz-target")}, "rid-" + path


@pytest.fixture
def server() -> Iterator[GalleyHTTPServer]:
    srv = GalleyHTTPServer(("127.0.0.1", 0), StubRouter())  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.router.release.set()  # type: ignore[attr-defined]
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def connect(srv: GalleyHTTPServer) -> socket.socket:
    sock = socket.create_connection(srv.server_address[:2], timeout=5)
    return sock


class Reader:
    """Reads whole responses (Content-Length framed) off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(fields.get("content-length", "0"))
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, fields, body

    def closed(self) -> bool:
        """True if the server closed the connection (EOF or reset) with nothing more to read."""
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def post(path: str, body: bytes, *extra: str, version: str = "HTTP/1.1") -> bytes:
    fields = "".join(f"{x}\r\n" for x in extra)
    return (f"POST {path} {version}\r\nHost: x\r\nX-Amz-Target: Svc.Op\r\n"
            f"Content-Length: {len(body)}\r\n{fields}\r\n").encode() + body


def test_post_with_http_client_and_keep_alive(server: GalleyHTTPServer) -> None:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    for n in range(3):
        conn.request("POST", f"/p{n}?q=1", body=b'{"a":1}', headers={"X-Amz-Target": "S.O"})
        r = conn.getresponse()
        doc = json.loads(r.read())
        assert r.status == 200
        assert doc == {"path": f"/p{n}", "query": "q=1", "body": '{"a":1}', "target": "S.O"}
        assert r.getheader("Content-Type") == "application/x-amz-json-1.1"
        assert r.getheader("x-amzn-RequestId") == f"rid-/p{n}"
        assert r.getheader("Connection") is None
    conn.close()
    assert len(server.router.calls) == 3  # type: ignore[attr-defined]


def test_router_status_is_passed_on(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(post("/bad", b"{}"))
        status, _, _ = Reader(sock).response()
    assert status == 400


def test_pipelined_requests_are_answered_in_order(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(post("/one", b"1") + post("/two", b"22") + b"GET /health HTTP/1.1\r\n\r\n")
        reader = Reader(sock)
        assert json.loads(reader.response()[2])["body"] == "1"
        assert json.loads(reader.response()[2])["body"] == "22"
        assert reader.response()[:1] == (200,)


def test_request_split_across_many_sends(server: GalleyHTTPServer) -> None:
    raw = post("/slow", b'{"x":"' + b"y" * 1000 + b'"}')
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(raw), 7):
            sock.sendall(raw[i:i + 7])
        status, _, body = Reader(sock).response()
    assert status == 200 and len(json.loads(body)["body"]) == 1008


def test_bare_lf_head_arriving_byte_by_byte(server: GalleyHTTPServer) -> None:
    raw = b"POST /b HTTP/1.1\nHost: x\nContent-Length: 2\n\nok"
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in raw:
            sock.sendall(bytes([byte]))
        status, _, body = Reader(sock).response()
    assert status == 200 and json.loads(body)["body"] == "ok"


def test_other_methods_are_501_and_close(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        status, fields, _ = reader.response()
        assert status == 501 and fields["connection"] == "close"
        assert reader.closed()


def test_missing_content_length_means_no_body(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /empty HTTP/1.1\r\nHost: x\r\n\r\n" + post("/next", b"n"))
        reader = Reader(sock)
        assert json.loads(reader.response()[2])["body"] == ""
        assert json.loads(reader.response()[2])["body"] == "n"


def test_chunked_body(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                     b"0\r\nTrailer: t\r\n\r\n" + post("/after", b"a"))
        reader = Reader(sock)
        assert json.loads(reader.response()[2])["body"] == "Wikipedia in\r\n\r\nchunks."
        assert json.loads(reader.response()[2])["body"] == "a"


def test_bad_chunk_size_is_400_and_closes(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\nabc\r\n0\r\n\r\n")
        reader = Reader(sock)
        assert reader.response()[0] == 400
        assert reader.closed()


def test_expect_100_continue(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = Reader(sock)
        interim = sock.recv(100)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        status, _, body = reader.response()
    assert status == 200 and json.loads(body)["body"] == "{}"


def test_get_routes(server: GalleyHTTPServer) -> None:
    server.get_routes["/metrics"] = lambda: (200, "text/plain", b"up 1\n")
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.request("GET", "/health?x=1")
    r = conn.getresponse()
    assert (r.status, json.loads(r.read())) == (200, {"status": "ok"})
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert (r.status, r.getheader("Content-Type"), r.read()) == (200, "text/plain", b"up 1\n")
    conn.request("GET", "/nothing")
    r = conn.getresponse()
    assert r.status == 404 and r.read()
    server.ready = lambda: False
    conn.request("GET", "/health")
    r = conn.getresponse()
    assert r.status == 404 and r.read()
    conn.request("PUT", "/", body=b"xyz")  # unsupported (http.client reconnects after it)
    r = conn.getresponse()
    assert r.status == 501 and r.read()
    conn.request("POST", "/still", body=b"ok")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["body"] == "ok"
    conn.close()


def test_http_10_closes_unless_keep_alive(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(post("/a", b"1", version="HTTP/1.0"))
        reader = Reader(sock)
        status, fields, _ = reader.response()
        assert status == 200 and fields["connection"] == "close"
        assert reader.closed()
    with connect(server) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(post("/a", b"1", "Connection: keep-alive", version="HTTP/1.0"))
            status, fields, _ = reader.response()
            assert status == 200 and fields["connection"] == "keep-alive"


def test_connection_close_is_honoured(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(post("/a", b"1", "Connection: close"))
        reader = Reader(sock)
        status, fields, _ = reader.response()
        assert status == 200 and fields["connection"] == "close"
        assert reader.closed()


@pytest.mark.parametrize("raw", [
    b"NONSENSE\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
    b"POST / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"POST / HTTP/1.1\r\n folded: x\r\n\r\n",
])
def test_malformed_requests_are_400_and_close(server: GalleyHTTPServer, raw: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(raw)
        reader = Reader(sock)
        status, fields, body = reader.response()
        assert status == 400
        assert fields["connection"] == "close"
        assert json.loads(body)["message"]
        assert reader.closed()
    assert_still_serving(server)


def test_oversized_head_is_refused_not_a_crash(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        try:  # the server may answer and close before it has read everything
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (4 * MAX_HEAD_BYTES))
        except OSError:
            pass
        status, fields, _ = Reader(sock).response()
    assert status == 431 and fields["connection"] == "close"
    with connect(server) as sock:
        many = b"".join(b"X-%d: v\r\n" % i for i in range(200))
        sock.sendall(b"GET / HTTP/1.1\r\n" + many + b"\r\n")
        assert Reader(sock).response()[0] == 431
    assert_still_serving(server)


def test_too_large_body_is_413(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n")
        assert Reader(sock).response()[0] == 413
    with connect(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")
        assert Reader(sock).response()[0] == 501
    assert_still_serving(server)


def test_unsupported_http_version_is_505(server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/2.0\r\n\r\n")
        assert Reader(sock).response()[0] == 505


def test_peer_closing_mid_request_does_not_hurt(server: GalleyHTTPServer) -> None:
    for partial in (b"POST / HTT", b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"):
        with connect(server) as sock:
            sock.sendall(partial)
    assert_still_serving(server)


def test_handler_exception_is_a_500_and_the_connection_survives(
        server: GalleyHTTPServer) -> None:
    with connect(server) as sock:
        reader = Reader(sock)
        sock.sendall(post("/boom", b"{}"))
        status, _, body = reader.response()
        assert status == 500 and json.loads(body)["__type"] == "ServerException"
        sock.sendall(post("/fine", b"{}"))
        assert reader.response()[0] == 200


def test_a_blocked_request_blocks_only_its_own_connection(server: GalleyHTTPServer) -> None:
    router: Any = server.router
    with connect(server) as blocked:
        blocked.sendall(post("/block", b"{}"))
        started = time.monotonic()
        assert_still_serving(server)
        assert time.monotonic() - started < 2
        router.release.set()
        assert Reader(blocked).response()[0] == 200


def test_shutdown_ends_serving_and_idle_connections() -> None:
    srv = GalleyHTTPServer(("127.0.0.1", 0), StubRouter())  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    idle = connect(srv)
    idle.sendall(post("/a", b"1"))
    reader = Reader(idle)
    assert reader.response()[0] == 200
    srv.shutdown()
    thread.join(5)
    assert not thread.is_alive()
    idle.settimeout(5)
    assert reader.closed()  # the idle keep-alive connection was closed
    idle.close()
    srv.server_close()
    with pytest.raises(OSError):
        socket.create_connection(srv.server_address[:2], timeout=1).close()


def test_shutdown_lets_a_request_in_progress_finish() -> None:
    router = StubRouter()
    srv = GalleyHTTPServer(("127.0.0.1", 0), router)  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    with connect(srv) as busy:
        busy.sendall(post("/block", b"{}"))
        deadline = time.monotonic() + 5
        while not router.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.shutdown()
        thread.join(5)
        router.release.set()
        reader = Reader(busy)
        status, fields, _ = reader.response()
        assert status == 200 and fields["connection"] == "close"
        assert reader.closed()
    srv.server_close()


def assert_still_serving(srv: GalleyHTTPServer) -> None:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=5)
    conn.request("GET", "/health")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b'{"status":"ok"}'
    conn.close()
