"""Server-side verification of AWS Signature Version 4 (header and presigned-query forms).

`verify()` rebuilds the canonical request exactly as botocore / the AWS SDKs build it and
compares HMACs in constant time. Failures are `ApiError`s with the codes, HTTP statuses and texts
that AWS JSON (Coral) services answer. Sources for the texts: the observed responses recorded in
mhart/dynalite and mhart/kinesalite (built by probing DynamoDB/Kinesis), plus public issue reports
quoting real ECS and other awsJson services (all 400 for the JSON protocol):

- no Authorization header and no `X-Amz-Algorithm` query param, or a header that is not `AWS4-*`:
  MissingAuthenticationTokenException "Missing Authentication Token"
- malformed header / query params, bad date format, wrong number of credential elements,
  unsupported algorithm: IncompleteSignatureException
- signature mismatch, `Signature expired: ...` / `Signature not yet current: ...` (5 minute window),
  wrong credential scope, unsigned Host, both auth forms at once: InvalidSignatureException
  (ECS answers the mismatch text without the canonical-string appendix that DynamoDB adds)
- unknown access key: UnrecognizedClientException "The security token included in the request is
  invalid."

Payload hash: `x-amz-content-sha256` when present (a hex value must equal sha256(body);
`UNSIGNED-PAYLOAD` leaves the body unsigned, as botocore sends with payload signing off), else
sha256(body); presigned URLs may also use `UNSIGNED-PAYLOAD`.

Leniencies (documented differences from AWS): a `Date` header in RFC 1123 form is accepted and
converted (botocore emits that form when a caller sets `Date`); any non-empty region is accepted.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote, unquote

from galley.errors import ApiError

__all__ = [
    "ALGORITHM",
    "HeaderItems",
    "MAX_CLOCK_SKEW_SECONDS",
    "SIGNATURE_MISMATCH_MESSAGE",
    "SignedBy",
    "verify",
]

log = logging.getLogger(__name__)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW_SECONDS = 300
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_HEX_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_AUTH_SPLIT_RE = re.compile(r"[,\s]+")
_QUERY_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
    "X-Amz-Date",
)


class HeaderItems(Protocol):
    """Anything with `.items()` yielding (name, value) pairs: dicts, multi-dicts, `Message`s."""

    def items(self) -> Iterable[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class SignedBy:
    """Who signed a verified request, from its credential scope."""

    access_key: str
    region: str
    service: str
    date: str
    session_token: str | None = None


@dataclass(slots=True)
class _Auth:
    algorithm: str
    credential: str
    signed_headers: list[str]
    signed_headers_raw: str
    signature: str
    date_raw: str
    expires: int | None
    presigned: bool


def _missing_token() -> ApiError:
    return ApiError("MissingAuthenticationTokenException", "Missing Authentication Token")


def _incomplete(message: str) -> ApiError:
    return ApiError("IncompleteSignatureException", message)


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidSignatureException", message)


def _unrecognized() -> ApiError:
    return ApiError(
        "UnrecognizedClientException", "The security token included in the request is invalid."
    )


def _normalise_headers(headers: Mapping[str, str] | HeaderItems) -> dict[str, list[str]]:
    """Lower-case header names; keep every value (multi-dicts yield repeated items)."""
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _parse_query(query: str) -> list[tuple[str, str]]:
    """Split a raw query string into percent-decoded (key, value) pairs, keeping order."""
    if query.startswith("?"):
        query = query[1:]
    pairs: list[tuple[str, str]] = []
    if not query:
        return pairs
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def _parse_header_auth(auth: str, headers: dict[str, list[str]]) -> _Auth:
    """Parse `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""
    auth = auth.strip()
    algorithm, _, rest = auth.partition(" ")
    fields: dict[str, str] = {}
    for token in _AUTH_SPLIT_RE.split(rest):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not eq:
            raise _incomplete(
                f"'{token}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{auth}'."
            )
        fields[key] = value
    message = ""
    for name in ("Credential", "Signature"):
        if not fields.get(name):
            message += f"Authorization header requires '{name}' parameter. "
    if "SignedHeaders" not in fields:
        message += "Authorization header requires 'SignedHeaders' parameter. "
    date_raw = _first(headers, "x-amz-date") or _first(headers, "date")
    if not date_raw:
        message += (
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        )
    if message:
        raise _incomplete(message + "Authorization=" + auth)
    signed_raw = fields["SignedHeaders"]
    return _Auth(
        algorithm=algorithm,
        credential=fields["Credential"],
        signed_headers=[h.strip().lower() for h in signed_raw.split(";") if h.strip()],
        signed_headers_raw=signed_raw,
        signature=fields["Signature"],
        date_raw=date_raw or "",
        expires=None,
        presigned=False,
    )


def _parse_query_auth(params: dict[str, str]) -> _Auth:
    """Parse presigned-URL auth (`X-Amz-Algorithm=...&X-Amz-Credential=...&...`)."""
    message = ""
    for name in _QUERY_REQUIRED:
        if not params.get(name):
            message += f"AWS query-string parameters must include '{name}'. "
    if message:
        raise _incomplete(message + "Re-examine the query-string parameters.")
    expires: int | None = None
    raw_expires = params.get("X-Amz-Expires")
    if raw_expires is not None:
        try:
            expires = int(raw_expires)
        except ValueError:
            raise _incomplete(
                f"X-Amz-Expires must be a number of seconds, got '{raw_expires}'."
            ) from None
        if expires < 0:
            raise _incomplete(f"X-Amz-Expires must be non-negative, got '{raw_expires}'.")
    signed_raw = params["X-Amz-SignedHeaders"]
    return _Auth(
        algorithm=params["X-Amz-Algorithm"],
        credential=params["X-Amz-Credential"],
        signed_headers=[h.strip().lower() for h in signed_raw.split(";") if h.strip()],
        signed_headers_raw=signed_raw,
        signature=params["X-Amz-Signature"],
        date_raw=params["X-Amz-Date"],
        expires=expires,
        presigned=True,
    )


def _amz_date(raw: str) -> tuple[str, float]:
    """Return (ISO-8601 basic timestamp, epoch seconds) for an X-Amz-Date / Date value."""
    value = raw.strip()
    if _AMZ_DATE_RE.fullmatch(value):
        fields = (
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
        )
        try:
            datetime(*fields)  # range check (month 13, hour 25, ...)
        except ValueError:
            pass
        else:
            return value, float(calendar.timegm((*fields, 0, 0, 0)))
    else:
        try:  # RFC 1123 `Date` header, as botocore sends when a caller presets `Date`
            dt = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            dt = None
        if dt is not None:
            if dt.tzinfo is None:  # "-0000" (what botocore emits) parses as naive UTC
                dt = dt.replace(tzinfo=UTC)
            epoch = dt.timestamp()
            return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch)), epoch
    raise _incomplete(
        f"Date must be in ISO-8601 'basic format'. Got '{raw}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _fmt(epoch: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch))


def _check_time(amz: str, signed_at: float, now: float, expires: int | None) -> None:
    """Reject requests outside the clock-skew window (or past a presigned URL's expiry)."""
    skew = MAX_CLOCK_SKEW_SECONDS
    if signed_at > now + skew:
        raise _invalid(
            f"Signature not yet current: {amz} is still later than {_fmt(now + skew)} "
            f"({_fmt(now)} + 5 min.)"
        )
    if expires is None:
        if signed_at < now - skew:
            raise _invalid(
                f"Signature expired: {amz} is now earlier than {_fmt(now - skew)} "
                f"({_fmt(now)} - 5 min.)"
            )
    elif signed_at + expires < now:
        raise _invalid(
            f"Signature expired: {amz} is now earlier than {_fmt(now - expires)} "
            f"({_fmt(now)} - {expires} sec.)"
        )


@lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive (and cache) the SigV4 signing key for one credential scope."""
    k_date = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k_region = hmac.new(k_date, region.encode(), hashlib.sha256).digest()
    k_service = hmac.new(k_region, service.encode(), hashlib.sha256).digest()
    return hmac.new(k_service, _TERMINATOR.encode(), hashlib.sha256).digest()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus empty-segment collapsing, as botocore does."""
    if not path:
        return "/"
    out: list[str] = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if out:
                    out.pop()
            else:
                out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return (first + "/".join(out) + last) or "/"


def _canonical_uri(path: str) -> str:
    if path == "/" or not path:
        return "/"
    return quote(_remove_dot_segments(path), safe="/~")


def _canonical_query(pairs: list[tuple[str, str]], presigned: bool) -> str:
    encoded = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in pairs
        if not (presigned and k == "X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(names: list[str], headers: dict[str, list[str]]) -> str:
    lines = []
    for name in names:
        values = headers.get(name)
        if values is None and name == "host":
            values = headers.get(":authority")
        value = ",".join(" ".join(v.split()) for v in values) if values else ""
        lines.append(f"{name}:{value}")
    return "\n".join(lines)


def _payload_hashes(headers: dict[str, list[str]], body: bytes, presigned: bool) -> list[str]:
    """Candidate payload hashes to sign with, in the order clients use them."""
    declared = _first(headers, "x-amz-content-sha256")
    if declared is not None:
        declared = declared.strip()
        if _HEX_SHA256_RE.fullmatch(declared):
            if declared.lower() != hashlib.sha256(body).hexdigest():
                raise _invalid(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )
        return [declared]
    actual = hashlib.sha256(body).hexdigest()
    return [actual, UNSIGNED_PAYLOAD] if presigned else [actual]


def verify(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str] | HeaderItems,
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: float | None = None,
    *,
    service: str | None = None,
) -> SignedBy:
    """Verify a SigV4-signed request and return who signed it, or raise `ApiError`.

    `path` and `query` are the raw (still percent-encoded) request-target parts; `headers` may be
    any mapping (names are matched case-insensitively); `secret_for` maps an access key id to its
    secret (None if unknown). `service`, when given, is the signing name the scope must carry.
    """
    now = time.time() if now is None else now
    hdrs = _normalise_headers(headers)
    pairs = _parse_query(query)
    query_params = dict(pairs)
    auth_header = _first(hdrs, "authorization")
    presigned = "X-Amz-Algorithm" in query_params

    if presigned and auth_header is not None:
        raise _invalid(
            "Found both 'X-Amz-Algorithm' as a query-string param "
            "and 'Authorization' as HTTP header."
        )
    if presigned:
        auth = _parse_query_auth(query_params)
    elif auth_header is None or not auth_header.strip().startswith("AWS4-"):
        raise _missing_token()
    else:
        auth = _parse_header_auth(auth_header, hdrs)

    amz, signed_at = _amz_date(auth.date_raw)
    _check_time(amz, signed_at, now, auth.expires)

    if "host" not in auth.signed_headers and ":authority" not in auth.signed_headers:
        raise _invalid("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if auth.algorithm != ALGORITHM:
        raise _incomplete(
            f"Unsupported AWS 'algorithm': '{auth.algorithm}' (only {ALGORITHM} for now). "
        )

    credential = auth.credential.rstrip("/")
    parts = credential.split("/")
    if len(parts) != 5:
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{auth.credential}'"
        )
    access_key, scope_date, region, scope_service, terminator = parts
    scope_errors = ""
    if not region:
        scope_errors += f"Credential should be scoped to a valid region, not '{region}'. "
    if service is not None and scope_service != service:
        scope_errors += f"Credential should be scoped to correct service: '{service}'. "
    if terminator != _TERMINATOR:
        scope_errors += (
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not '{terminator}'. "
        )
    if scope_date != amz[:8]:
        scope_errors += (
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz[:8]}', from '{amz}'."
        )
    if scope_errors:
        raise _invalid(scope_errors)

    secret = secret_for(access_key)
    if secret is None:
        raise _unrecognized()

    key = _signing_key(secret, scope_date, region, scope_service)
    scope = f"{scope_date}/{region}/{scope_service}/{_TERMINATOR}"
    prefix = "\n".join(
        (
            method.upper(),
            _canonical_uri(path),
            _canonical_query(pairs, auth.presigned),
            _canonical_headers(auth.signed_headers, hdrs) + "\n",
            auth.signed_headers_raw,
        )
    )
    provided = auth.signature.strip().lower().encode("utf-8", "replace")
    for payload_hash in _payload_hashes(hdrs, body, auth.presigned):
        canonical = prefix + "\n" + payload_hash
        string_to_sign = "\n".join(
            (ALGORITHM, amz, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        )
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), provided):
            token = _first(hdrs, "x-amz-security-token") or query_params.get("X-Amz-Security-Token")
            return SignedBy(access_key, region, scope_service, scope_date, token)
        log.debug(
            "SigV4 mismatch for canonical request:\n%s\nstring to sign:\n%s",
            canonical,
            string_to_sign,
        )
    raise _invalid(SIGNATURE_MISMATCH_MESSAGE)
