"""SigV4 verification against requests signed by botocore itself (and by the real AWS CLI)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from galley.api import sigv4
from galley.api.sigv4 import SignedBy, verify
from galley.errors import ApiError

AKID = "AKIDEXAMPLE0000000001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "us-west-2"
HOST = "ecs.us-west-2.amazonaws.com"
URL = f"https://{HOST}/"
TARGET = "AmazonEC2ContainerServiceV20141113.ListClusters"
BODY = b'{"maxResults": 10}'
KEYS = {AKID: SECRET, "AKIDSESSION": "session-secret"}


def secret_for(access_key: str) -> str | None:
    return KEYS.get(access_key)


def signed(
    *,
    url: str = URL,
    body: bytes = BODY,
    headers: Mapping[str, str] | None = None,
    creds: Credentials | None = None,
    service: str = "ecs",
    region: str = REGION,
    context: dict[str, Any] | None = None,
) -> AWSRequest:
    """A request signed by botocore's SigV4Auth, as boto3 would send it."""
    req = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": TARGET,
            **(headers or {}),
        },
    )
    if context:
        req.context.update(context)
    SigV4Auth(creds or Credentials(AKID, SECRET), service, region).add_auth(req)
    return req


def wire_headers(req: AWSRequest) -> dict[str, str]:
    """Headers as they arrive at the server: the HTTP client adds Host from the URL."""
    headers = {k: v for k, v in req.headers.items()}
    headers.setdefault("Host", urlsplit(req.url).netloc)
    return headers


def check(
    req: AWSRequest,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    now: float | None = None,
    service: str | None = None,
) -> SignedBy:
    parts = urlsplit(req.url)
    raw_body = (req.body or b"") if body is None else body
    assert isinstance(raw_body, bytes)
    return verify(
        req.method,
        parts.path or "/",
        parts.query,
        wire_headers(req) if headers is None else headers,
        raw_body,
        secret_for,
        now=now,
        service=service,
    )


def rejected(req: AWSRequest, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        check(req, **kwargs)
    assert info.value.status == 400
    return info.value


# --------------------------------------------------------------------------- accepted requests


def test_plain_botocore_request_is_accepted() -> None:
    by = check(signed())
    assert by == SignedBy(AKID, REGION, "ecs", time.strftime("%Y%m%d", time.gmtime()))
    assert by.session_token is None


def test_signed_by_is_frozen() -> None:
    by = check(signed())
    with pytest.raises(AttributeError):
        by.access_key = "x"  # type: ignore[misc]


def test_header_names_are_case_insensitive() -> None:
    req = signed()
    for transform in (str.lower, str.upper, str.title):
        assert check(req, headers={transform(k): v for k, v in wire_headers(req).items()})


def test_extra_unsigned_headers_are_ignored() -> None:
    req = signed()
    headers = wire_headers(req)
    headers.update(
        {
            "User-Agent": "something-else/1.0",
            "X-Forwarded-For": "10.0.0.1",
            "Accept-Encoding": "identity",
            "X-Amzn-Trace-Id": "Root=1-abc",
        }
    )
    assert check(req, headers=headers).access_key == AKID


def test_header_values_with_spaces_are_trimmed_and_folded() -> None:
    raw = "  value   with\t several    spaces  "
    req = signed(headers={"X-Amz-Meta-Spaced": raw})
    assert "x-amz-meta-spaced" in req.headers["Authorization"]
    headers = wire_headers(req)
    assert headers["X-Amz-Meta-Spaced"] == raw
    assert check(req, headers=headers)
    # The same value sent with different inner whitespace still canonicalises identically.
    headers["X-Amz-Meta-Spaced"] = "value with several spaces"
    assert check(req, headers=headers)


def test_session_token_header_is_signed_and_reported() -> None:
    req = signed(creds=Credentials("AKIDSESSION", "session-secret", "the-session-token"))
    assert "x-amz-security-token" in req.headers["Authorization"]
    by = check(req)
    assert by.access_key == "AKIDSESSION"
    assert by.session_token == "the-session-token"


def test_tampered_session_token_is_rejected() -> None:
    req = signed(creds=Credentials("AKIDSESSION", "session-secret", "the-session-token"))
    headers = wire_headers(req)
    headers["X-Amz-Security-Token"] = "another-token"
    assert rejected(req, headers=headers).code == "InvalidSignatureException"


def test_date_header_instead_of_x_amz_date() -> None:
    # botocore switches to an RFC 1123 `Date` header when the caller presets one.
    req = signed(headers={"Date": "placeholder"})
    assert "X-Amz-Date" not in req.headers
    assert check(req).access_key == AKID


def test_explicit_payload_hash_header() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    req = signed(headers={"X-Amz-Content-SHA256": digest})
    assert "x-amz-content-sha256" in req.headers["Authorization"]
    assert check(req)


def test_unsigned_payload_is_accepted_when_declared() -> None:
    # botocore over https with payload signing disabled declares UNSIGNED-PAYLOAD.
    req = signed(context={"payload_signing_enabled": False})
    assert req.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert check(req)


def test_payload_hash_header_must_match_body() -> None:
    req = signed(headers={"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    err = rejected(req)
    assert err.code == "InvalidSignatureException"
    assert "x-amz-content-sha256" in err.message


def test_empty_body() -> None:
    assert check(signed(body=b""))


def test_non_default_port_and_query_string() -> None:
    req = signed(url="http://localhost:4566/?b=2&a=1&c=x%20y")
    assert check(req)


def test_expected_service_matches() -> None:
    assert check(signed(), service="ecs").service == "ecs"


def test_other_regions_and_services_are_reported() -> None:
    by = check(signed(service="application-autoscaling", region="eu-central-1"))
    assert (by.service, by.region) == ("application-autoscaling", "eu-central-1")


def test_presigned_query_auth() -> None:
    req = AWSRequest(method="GET", url=f"https://{HOST}/?Action=ListClusters", data=b"")
    SigV4QueryAuth(Credentials(AKID, SECRET), "ecs", REGION, expires=60).add_auth(req)
    assert "X-Amz-Signature=" in req.url
    by = check(req, headers={"Host": HOST}, body=b"")
    assert by.access_key == AKID


def test_presigned_query_auth_expires() -> None:
    req = AWSRequest(method="GET", url=f"https://{HOST}/", data=b"")
    SigV4QueryAuth(Credentials(AKID, SECRET), "ecs", REGION, expires=60).add_auth(req)
    err = rejected(req, headers={"Host": HOST}, body=b"", now=time.time() + 120)
    assert err.code == "InvalidSignatureException"
    assert err.message.startswith("Signature expired: ")


def test_signing_keys_are_cached() -> None:
    sigv4._signing_key.cache_clear()
    for _ in range(5):
        check(signed())
    info = sigv4._signing_key.cache_info()
    assert info.misses == 1
    assert info.hits == 4


# --------------------------------------------------------------------------- rejected requests


def test_missing_authentication() -> None:
    req = signed()
    headers = {k: v for k, v in wire_headers(req).items() if k.lower() != "authorization"}
    err = rejected(req, headers=headers)
    assert (err.code, err.message) == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


def test_non_sigv4_authorization_counts_as_missing() -> None:
    req = signed()
    headers = wire_headers(req)
    headers["Authorization"] = "Bearer abc"
    assert rejected(req, headers=headers).code == "MissingAuthenticationTokenException"


def test_tampered_body() -> None:
    err = rejected(signed(), body=b'{"maxResults": 11}')
    assert err.code == "InvalidSignatureException"
    assert err.message == sigv4.SIGNATURE_MISMATCH_MESSAGE
    assert err.message.startswith(
        "The request signature we calculated does not match the signature you provided"
    )


def test_tampered_signed_header() -> None:
    req = signed()
    headers = wire_headers(req)
    headers["X-Amz-Target"] = "AmazonEC2ContainerServiceV20141113.DeleteCluster"
    assert rejected(req, headers=headers).code == "InvalidSignatureException"


def test_non_ascii_signature_is_a_mismatch() -> None:
    req = signed()
    auth = req.headers["Authorization"]
    auth = auth[: auth.index("Signature=") + len("Signature=")] + "é" * 64
    assert rejected(req, headers=set_authorization(req, auth)).code == "InvalidSignatureException"


def test_wrong_secret() -> None:
    req = signed(creds=Credentials(AKID, "not-the-secret"))
    assert rejected(req).code == "InvalidSignatureException"


def test_unknown_access_key() -> None:
    err = rejected(signed(creds=Credentials("AKIDUNKNOWN", SECRET)))
    assert (err.code, err.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def test_expired_signature() -> None:
    req = signed()
    err = rejected(req, now=time.time() + 301)
    assert err.code == "InvalidSignatureException"
    assert err.message.startswith("Signature expired: ")
    assert err.message.endswith(" - 5 min.)")
    assert " is now earlier than " in err.message


def test_signature_from_the_future() -> None:
    err = rejected(signed(), now=time.time() - 301)
    assert err.code == "InvalidSignatureException"
    assert err.message.startswith("Signature not yet current: ")
    assert err.message.endswith(" + 5 min.)")


def test_small_clock_skew_is_tolerated() -> None:
    req = signed()
    assert check(req, now=time.time() + 240)
    assert check(req, now=time.time() - 240)


def set_authorization(req: AWSRequest, value: str) -> dict[str, str]:
    headers = wire_headers(req)
    headers["Authorization"] = value
    return headers


def test_malformed_authorization_missing_parameters() -> None:
    req = signed()
    headers = set_authorization(req, "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/ecs/x")
    err = rejected(req, headers=headers)
    assert err.code == "IncompleteSignatureException"
    assert "Authorization header requires 'Signature' parameter." in err.message
    assert "Authorization header requires 'SignedHeaders' parameter." in err.message
    assert err.message.endswith("Authorization=" + headers["Authorization"])


def test_malformed_authorization_missing_equal_sign() -> None:
    req = signed()
    auth = req.headers["Authorization"].replace("Credential=", "Credential= ")
    err = rejected(req, headers=set_authorization(req, auth))
    assert err.code == "IncompleteSignatureException"
    assert "not a valid key=value pair (missing equal-sign) in Authorization header" in err.message


def test_malformed_credential_scope() -> None:
    req = signed()
    auth = req.headers["Authorization"].replace(f"Credential={AKID}/", f"Credential={AKID}/x/")
    err = rejected(req, headers=set_authorization(req, auth))
    assert err.code == "IncompleteSignatureException"
    assert err.message.startswith("Credential must have exactly 5 slash-delimited elements")


def test_unsupported_algorithm() -> None:
    req = signed()
    auth = req.headers["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")
    err = rejected(req, headers=set_authorization(req, auth))
    assert err.code == "IncompleteSignatureException"
    assert "Unsupported AWS 'algorithm'" in err.message


def test_missing_date_header() -> None:
    req = signed()
    headers = {k: v for k, v in wire_headers(req).items() if k.lower() != "x-amz-date"}
    err = rejected(req, headers=headers)
    assert err.code == "IncompleteSignatureException"
    assert "requires existence of either a 'X-Amz-Date' or a 'Date' header" in err.message


@pytest.mark.parametrize("value", ["2024-01-01T00:00:00Z", "20241340T000000Z", "yesterday"])
def test_bad_date_format(value: str) -> None:
    req = signed()
    headers = wire_headers(req)
    headers["X-Amz-Date"] = value
    err = rejected(req, headers=headers)
    assert err.code == "IncompleteSignatureException"
    assert err.message == (
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def test_credential_date_must_match_request_date() -> None:
    req = signed()
    today = req.headers["X-Amz-Date"][:8]
    auth = req.headers["Authorization"].replace(f"/{today}/", "/20000101/")
    err = rejected(req, headers=set_authorization(req, auth))
    assert err.code == "InvalidSignatureException"
    assert err.message.startswith("Date in Credential scope does not match YYYYMMDD")


def test_wrong_service_scope() -> None:
    err = rejected(signed(service="logs"), service="ecs")
    assert (err.code, err.message) == (
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecs'. ",
    )


def test_host_must_be_signed() -> None:
    req = signed()
    auth = (
        req.headers["Authorization"]
        .replace("SignedHeaders=", "SignedHeaders=x;")
        .replace("host;", "")
    )
    err = rejected(req, headers=set_authorization(req, auth))
    assert err.code == "InvalidSignatureException"
    assert "'Host' or ':authority' must be a 'SignedHeader'" in err.message


def test_both_header_and_query_auth() -> None:
    req = AWSRequest(method="GET", url=f"https://{HOST}/", data=b"")
    SigV4QueryAuth(Credentials(AKID, SECRET), "ecs", REGION).add_auth(req)
    headers = {"Host": HOST, "Authorization": signed().headers["Authorization"]}
    err = rejected(req, headers=headers, body=b"")
    assert err.code == "InvalidSignatureException"
    assert "Found both 'X-Amz-Algorithm'" in err.message


def test_incomplete_query_auth() -> None:
    req = AWSRequest(method="GET", url=f"https://{HOST}/?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    err = rejected(req, headers={"Host": HOST}, body=b"")
    assert err.code == "IncompleteSignatureException"
    assert "AWS query-string parameters must include 'X-Amz-Credential'." in err.message


# --------------------------------------------------------------------------- real client requests


def _capture_client_request(**client_kwargs: Any) -> Any:
    """Run ecs.list_clusters through a real botocore client and capture the prepared request."""
    captured: list[Any] = []
    session = botocore.session.get_session()
    client = session.create_client(
        "ecs",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        **client_kwargs,
    )

    def before_send(request: Any, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _RawBody(b'{"clusterArns": []}'))

    client.meta.events.register("before-send.ecs.ListClusters", before_send)
    client.list_clusters(maxResults=5)
    return captured[0]


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


def test_real_botocore_client_request() -> None:
    prepared = _capture_client_request()
    parts = urlsplit(prepared.url)
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()}
    headers["Host"] = parts.netloc
    body = prepared.body if isinstance(prepared.body, bytes) else prepared.body.encode()
    by = verify(prepared.method, parts.path or "/", parts.query, headers, body, secret_for)
    assert (by.access_key, by.service, by.region) == (AKID, "ecs", REGION)


class _VerifyingHandler(http.server.BaseHTTPRequestHandler):
    results: list[Any] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        path, _, query = self.path.partition("?")
        try:
            outcome: Any = verify("POST", path, query, self.headers, body, secret_for)
        except ApiError as err:
            outcome = err
        self.results.append((outcome, body))
        payload = json.dumps({"clusterArns": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.mark.skipif(shutil.which("aws") is None, reason="AWS CLI not installed")
def test_aws_cli_request_body_hash(tmp_path: Any) -> None:
    """The real `aws ecs list-clusters` request (CLI payload hashing, headers) verifies."""
    _VerifyingHandler.results = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _VerifyingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "AWS_ACCESS_KEY_ID": AKID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
            "AWS_MAX_ATTEMPTS": "1",
        }
        port = server.server_address[1]
        proc = subprocess.run(
            [
                "aws",
                "ecs",
                "list-clusters",
                "--max-items",
                "3",
                "--endpoint-url",
                f"http://127.0.0.1:{port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    assert _VerifyingHandler.results, "the CLI sent no request"
    outcome, body = _VerifyingHandler.results[0]
    assert isinstance(outcome, SignedBy), outcome
    assert outcome.access_key == AKID
    assert isinstance(json.loads(body), dict)
