"""The HTTP edge: AWS JSON 1.1 over HTTP/1.1 keep-alive, SigV4 on every request, /health.

A request flows: read body -> verify signature -> route by X-Amz-Target to a service ->
validate against botocore's model -> call the handler -> JSON answer. Every ApiError becomes an
AWS-shaped 4xx; anything else is logged and answered as a 500 ServerException.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
            req = Request(Scope(signed.region, self.account_id), signed.access_key, operation,
                          request_id)
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


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate small writes on a kept-alive connection; with Nagle
    # on, the body waits for the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True
    server: GalleyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: bytes, ctype: str, request_id: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if request_id:
            self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        extra = self.server.get_routes.get(path)
        if path == "/health" and self.server.ready():
            self._send(200, b'{"status":"ok"}', "application/json")
        elif extra is not None:
            status, ctype, payload = extra()
            self._send(status, payload, ctype)
        else:
            self._send(404, b'{"message":"Not found"}', "application/json")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        status, doc, request_id = self.server.router.handle("POST", path, query, self.headers, body)
        self._send(status, encode_body(doc), "application/x-amz-json-1.1", request_id)


class GalleyHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        super().__init__(address, _HttpHandler)
        self.router = router
        self.started = time.time()
        self.get_routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}
        self.ready: Callable[[], bool] = lambda: True
