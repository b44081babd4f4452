"""The HTTP edge: AWS JSON 1.1 over HTTP/1.1 keep-alive, SigV4 on every request, /health.

A request flows: read body -> verify signature -> route by X-Amz-Target to a service ->
validate against botocore's model -> call the handler -> JSON answer. Every ApiError becomes an
AWS-shaped 4xx; anything else is logged and answered as a 500 ServerException.

The HTTP/1.1 front end is this module's own, kept small because every API call pays for it: one
thread per connection (a long-polling agent blocks only its own), the request line and header
fields parsed straight from the socket buffer (`parse_head`), bodies by Content-Length or chunked
transfer coding, pipelining and keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection:
keep-alive`), `Expect: 100-continue`, and each answer written with one send on a TCP_NODELAY
socket. Malformed or oversized requests get a 4xx and the connection is closed.
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import orjson

from galley.api import sigv4
from galley.api.model import ServiceModel
from galley.arns import Scope
from galley.errors import ApiError
from galley.jsondoc import encode_body

log = logging.getLogger("galley.api")

Handler = Callable[["Request", dict[str, Any]], dict[str, Any]]


class Request:
    """What a handler knows about the call it serves."""

    __slots__ = ("scope", "access_key", "operation", "request_id")

    def __init__(self, scope: Scope, access_key: str, operation: str, request_id: str) -> None:
        self.scope = scope
        self.access_key = access_key
        self.operation = operation
        self.request_id = request_id


class Service:
    """One AWS JSON service: its botocore model and the handlers Galley implements."""

    def __init__(self, model: ServiceModel, handlers: dict[str, Handler]) -> None:
        unknown = set(handlers) - set(model.operation_names)
        if unknown:
            raise ValueError(f"handlers for operations not in the model: {sorted(unknown)}")
        self.model = model
        self.handlers = handlers


class Router:
    """Maps X-Amz-Target to (service, handler) and runs the call."""

    def __init__(self, account_id: str, secret_for: Callable[[str], str | None]) -> None:
        self.account_id = account_id
        self.secret_for = secret_for
        self.services: dict[str, Service] = {}

    def add(self, service: Service) -> None:
        self.services[service.model.target_prefix] = service

    def handle(self, method: str, path: str, query: str, headers: Any, body: bytes
               ) -> tuple[int, dict[str, Any], str]:
        """Answer one request: (status, JSON body, request id)."""
        request_id = str(uuid.uuid4())
        try:
            signed = sigv4.verify(method, path, query, headers, body, self.secret_for)
            target = headers.get("X-Amz-Target") or ""
            prefix, _, operation = target.rpartition(".")
            service = self.services.get(prefix)
            if service is None or operation not in service.model.operation_names:
                raise ApiError("UnknownOperationException", f"Unknown operation {target!r}.")
            try:
                params = orjson.loads(body) if body.strip() else {}
            except ValueError as e:
                raise ApiError("SerializationException", f"Malformed JSON body: {e}") from None
            service.model.validate_input(operation, params)
            params = without_nulls(params)
            handler = service.handlers.get(operation)
            if handler is None:
                raise ApiError(
                    "UnsupportedFeatureException",
                    f"Galley does not implement {operation} yet.",
                )
            host = headers.get("Host") or ""
            scope = Scope(signed.region, self.account_id,
                          endpoint=f"http://{host}/" if host else "")
            req = Request(scope, signed.access_key, operation, request_id)
            return 200, handler(req, params), request_id
        except ApiError as e:
            return e.status, {"__type": e.code, "message": e.message}, request_id
        except Exception:
            log.exception("request %s failed", request_id)
            return 500, {"__type": "ServerException", "message": "Internal server error."}, \
                request_id


def without_nulls(value: Any) -> Any:
    """The request with JSON nulls dropped: AWS treats a null member exactly as an absent one."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


# ---- HTTP/1.1 --------------------------------------------------------------------------------

MAX_HEAD_BYTES = 64 * 1024
"""Request line plus header fields; a longer head is answered 431 and the connection closed."""
MAX_HEADERS = 100
MAX_LINE_BYTES = 8 * 1024
"""A chunk-size or trailer line of a chunked body."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""A larger body is answered 413 (AWS JSON requests are kilobytes)."""
JSON_11 = "application/x-amz-json-1.1"
_RECV = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(r"[0-9A-Fa-f]{1,15}")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")


class HttpError(Exception):
    """A request the HTTP layer refuses: answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Closed(Exception):
    """The peer closed the connection (or it broke) in the middle of a request."""


class Headers:
    """A request's header fields in arrival order; `get` is case-insensitive (first value)."""

    __slots__ = ("_fields", "_first")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        first: dict[str, str] = {}
        for name, value in fields:
            first.setdefault(name.lower(), value)
        self._first = first

    def items(self) -> list[tuple[str, str]]:
        return self._fields

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._fields if n.lower() == key]

    def __getitem__(self, name: str) -> str | None:  # as email.message.Message: None if absent
        return self._first.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (n for n, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class RequestHead:
    """The parsed request line and header fields."""

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: tuple[int, int], headers: Headers
                 ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the answer (RFC 9112 9.3)."""
        tokens = {t.strip().lower() for v in self.headers.get_all("connection")
                  for t in v.split(",")}
        if "close" in tokens:
            return False
        return self.version >= (1, 1) or "keep-alive" in tokens


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (request line and header fields, up to the empty line ending it).

    Lines end in CRLF or a bare LF; empty lines before the request line are skipped (RFC 9112
    2.2). Raises `HttpError` 400 for anything malformed (including obsolete line folding and a
    space before a field's colon), 431 for too many fields, 505 for an HTTP version other than
    1.x.
    """
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, "Request header fields too large")
    lines = head.decode("latin-1").rstrip("\r\n").split("\n")
    i = 0
    while i < len(lines) and lines[i] in ("", "\r"):
        i += 1
    if i == len(lines):
        raise HttpError(400, "Empty request")
    request_line = lines[i].removesuffix("\r")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[1] or not _TOKEN.fullmatch(parts[0]):
        raise HttpError(400, f"Bad request line {request_line[:200]!r}")
    method, target, version_text = parts
    version = _VERSION.fullmatch(version_text)
    if version is None:
        raise HttpError(400, f"Bad HTTP version {version_text[:50]!r}")
    major, minor = int(version.group(1)), int(version.group(2))
    if major != 1:
        raise HttpError(505, f"HTTP version not supported: {version_text}")
    fields: list[tuple[str, str]] = []
    for line in lines[i + 1:]:
        line = line.removesuffix("\r")
        if not line:
            raise HttpError(400, "Empty line inside the header section")
        if line[0] in " \t":
            raise HttpError(400, "Obsolete line folding in a header field")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"Bad header field {line[:200]!r}")
        fields.append((name, value.strip(" \t")))
        if len(fields) > MAX_HEADERS:
            raise HttpError(431, "Too many header fields")
    return RequestHead(method, target, (major, minor), Headers(fields))


def body_length(headers: Headers) -> int | None:
    """The Content-Length of a request (0 when absent), None for a chunked body.

    Raises `HttpError`: 400 for a malformed or contradictory length, 501 for a transfer coding
    other than chunked, 413 for a body over MAX_BODY_BYTES.
    """
    coding = headers.get_all("transfer-encoding")
    if coding:
        codings = [c.strip().lower() for v in coding for c in v.split(",") if c.strip()]
        if codings != ["chunked"]:
            raise HttpError(501, f"Unsupported transfer coding {', '.join(coding)[:100]!r}")
        return None
    values = {v.strip() for v in headers.get_all("content-length")}
    if not values:
        return 0
    if len(values) != 1:
        raise HttpError(400, "Conflicting Content-Length values")
    (text,) = values
    if not _DIGITS.fullmatch(text):
        raise HttpError(400, f"Bad Content-Length {text[:50]!r}")
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, "Request body too large")
    return length


class HttpConnection:
    """Reads requests off one socket: heads, bodies (sized or chunked), pipelined requests."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _recv(self) -> bytes:
        try:
            data = self.sock.recv(_RECV)
        except OSError as e:
            raise _Closed() from e
        if not data:
            raise _Closed()
        return data

    def read_head(self) -> RequestHead | None:
        """The next request's head, or None if the peer closed the connection between requests."""
        buf = self.buf
        searched = 0  # bytes of buf known not to hold the end of the head
        while True:
            start = max(0, searched - 3)
            end = buf.find(b"\r\n\r\n", start)
            # Heads may also end in bare LFs (as http.server accepts): whichever comes first.
            bare = buf.find(b"\n\n", start, None if end < 0 else end)
            if bare >= 0:
                end, skip = bare, 2
                break
            if end >= 0:
                skip = 4
                break
            if len(buf) > MAX_HEAD_BYTES:
                self.buf = b""
                raise HttpError(431, "Request header fields too large")
            searched = len(buf)
            try:
                data = self._recv()
            except _Closed:
                if buf.strip():
                    raise
                return None
            buf += data
        self.buf = buf[end + skip:]
        return parse_head(buf[:end])

    def read_exact(self, n: int) -> bytes:
        buf = self.buf
        if len(buf) >= n:
            self.buf = buf[n:]
            return buf[:n]
        parts = [buf]
        have = len(buf)
        while have < n:
            data = self._recv()
            parts.append(data)
            have += len(data)
        joined = b"".join(parts)
        self.buf = joined[n:]
        return joined[:n]

    def read_line(self) -> bytes:
        """One line of a chunked body (without its CRLF / LF)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = self.buf[:i]
                self.buf = self.buf[i + 1:]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > MAX_LINE_BYTES:
                raise HttpError(400, "Line too long in a chunked body")
            self.buf += self._recv()

    def read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self.read_line().split(b";", 1)[0].strip().decode("latin-1")
            if not _HEX.fullmatch(size_text):
                raise HttpError(400, f"Bad chunk size {size_text[:50]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError(413, "Request body too large")
            parts.append(self.read_exact(size))
            if self.read_line():
                raise HttpError(400, "Chunk data longer than its size")
        for _ in range(MAX_HEADERS + 1):  # trailer fields, ignored, up to the empty line
            if not self.read_line():
                return b"".join(parts)
        raise HttpError(431, "Too many trailer fields")

    def read_body(self, head: RequestHead) -> bytes:
        length = body_length(head.headers)
        if head.version >= (1, 1) and (head.headers.get("expect") or "").lower() == \
                "100-continue" and (length is None or len(self.buf) < length):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length is None:
            return self.read_chunked()
        return self.read_exact(length) if length else b""


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def render_response(status: int, ctype: str, payload: bytes, request_id: str | None = None,
                    connection: str | None = None) -> bytes:
    """Status line, header fields and body, ready for one send."""
    reason = _REASONS.get(status, "Unknown")
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            f"Server: Galley\r\nDate: {_http_date()}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(payload)}\r\n")
    if request_id:
        head += f"x-amzn-RequestId: {request_id}\r\n"
    if connection:
        head += f"Connection: {connection}\r\n"
    return (head + "\r\n").encode("latin-1") + payload


class GalleyHTTPServer:
    """The API's HTTP/1.1 server: `serve_forever()` in a thread, `shutdown()` from another."""

    request_queue_size = 128

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        self.started = time.time()
        self.get_routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}
        self.ready: Callable[[], bool] = lambda: True
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.create_server(address, family=family,
                                           backlog=self.request_queue_size)
        self.server_address = self.socket.getsockname()
        self._lock = threading.Lock()
        self._closing = False
        self._idle: set[socket.socket] = set()  # connections waiting for their next request
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    # -- accepting ------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    if not selector.select(poll_interval) or self._stop.is_set():
                        continue
                    try:
                        sock, peer = self.socket.accept()
                    except OSError:
                        continue
                    with self._lock:
                        self._open.add(sock)
                    threading.Thread(target=self._serve_connection, args=(sock, peer),
                                     name=f"http-{peer[1]}", daemon=True).start()
        finally:
            self._stop.clear()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop accepting and wait for the accept loop to end. Connections waiting for a request
        are closed; one inside a request finishes it, answers with `Connection: close` and
        closes."""
        with self._lock:
            self._closing = True
            for sock in self._idle:
                _shutdown_socket(sock)
        self._stop.set()
        self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
        with self._lock:
            self._closing = True
            for sock in self._open:
                _shutdown_socket(sock)

    # -- one connection -------------------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket, peer: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = HttpConnection(sock)
        lock, idle = self._lock, self._idle
        try:
            while True:
                with lock:
                    if self._closing:
                        break
                    idle.add(sock)
                try:
                    head = conn.read_head()
                finally:
                    with lock:
                        idle.discard(sock)
                if head is None:
                    break
                body = conn.read_body(head)
                status, ctype, payload, request_id = self._answer(head, body, peer)
                # Closing: answer, then close. Other methods (HEAD, PUT, ...) are refused with a
                # body their clients may not expect, so their connections are not reused.
                keep_alive = head.keep_alive and not self._closing and \
                    head.method in ("GET", "POST")
                if keep_alive:
                    connection = None if head.version >= (1, 1) else "keep-alive"
                else:
                    connection = "close"
                sock.sendall(render_response(status, ctype, payload, request_id, connection))
                if not keep_alive:
                    break
        except HttpError as e:
            log.debug("%s bad request: %s %s", peer, e.status, e.message)
            try:
                sock.sendall(render_response(e.status, "application/json", encode_body(
                    {"__type": _REASONS.get(e.status, "BadRequest").replace(" ", ""),
                     "message": e.message}), connection="close"))
                _drain(sock)
            except OSError:
                pass
        except (_Closed, OSError):
            pass
        except Exception:
            log.exception("connection from %s failed", peer)
        finally:
            with lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _answer(self, head: RequestHead, body: bytes, peer: Any
                ) -> tuple[int, str, bytes, str | None]:
        """(status, content type, payload, request id) for one request."""
        request_id: str | None = None
        path, _, query = head.target.partition("?")
        try:
            if head.method == "POST":
                status, doc, request_id = self.router.handle("POST", path, query, head.headers,
                                                             body)
                ctype, payload = JSON_11, encode_body(doc)
            elif head.method == "GET":
                extra = self.get_routes.get(path)
                if path == "/health" and self.ready():
                    status, ctype, payload = 200, "application/json", b'{"status":"ok"}'
                elif extra is not None:
                    status, ctype, payload = extra()
                else:
                    status, ctype, payload = 404, "application/json", b'{"message":"Not found"}'
            else:
                status, ctype = 501, "application/json"
                payload = b'{"message":"Unsupported method"}'
        except Exception:
            log.exception("request %s %s failed", head.method, path)
            status, ctype = 500, "application/json"
            payload = b'{"__type":"ServerException","message":"Internal server error."}'
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s \"%s %s\" %s %s", peer[0], head.method, head.target, status,
                      len(payload))
        return status, ctype, payload, request_id


def _drain(sock: socket.socket, limit: int = 1024 * 1024, seconds: float = 1.0) -> None:
    """Half-close, then read and drop what the peer still sends (briefly): closing a socket with
    unread input resets the connection, and the peer could lose the answer just sent."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    while limit > 0 and time.monotonic() < deadline:
        data = sock.recv(_RECV)
        if not data:
            return
        limit -= len(data)


def _shutdown_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
