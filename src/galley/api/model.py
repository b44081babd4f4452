"""Request validation against botocore's service models (awsJson services: ecs, logs, autoscaling).

`ServiceModel.load("ecs").validate_input("RunTask", params)` checks a decoded JSON body the way
the AWS (Coral) front end does before an operation runs. Validators are compiled lazily per
operation from the model's shapes into closures and cached, so a request costs one walk over its
input.

Error choices, with the evidence behind them:

- Wrong JSON type for a member (string where an integer belongs, scalar where a list/structure
  belongs, ...), or a body that is not a JSON object: 400 ``SerializationException``. Real ECS
  answers e.g. ``SerializationException: STRING_VALUE cannot be converted to Integer`` for an
  UpdateService deploymentConfiguration sent as strings (aws/aws-cdk-cli#973, 2025); the
  structural texts ("Start of structure or map found where not expected.", "Start of list found
  where not expected", "Expected list or null", "Expected map or null", "Expected null") are the
  Coral deserializer's, as recorded in mhart/kinesalite and in floci-io/floci#2686. Type errors
  abort at the first one (deserialization stops), so only one is reported.
- Missing required members, enum, length, range and pattern violations: 400 with the Coral
  "N validation error(s) detected: Value ... at 'path' failed to satisfy constraint: Member must
  ..." text (up to 10 errors joined by "; "; list items addressed as ``name.1.member``). ECS models
  no ValidationException and answers parameter problems as ``InvalidParameterException`` (e.g.
  "include should be one of [ATTACHMENTS,SETTINGS,STATISTICS,TAGS]",
  hashicorp/terraform-provider-aws#23342), so ECS uses that code. CloudWatch Logs answers the same
  Coral text as ``InvalidParameterException`` (winston-cloudwatch#136, fluent-plugin-cloudwatch-logs
  #116/#140); Application Auto Scaling as ``ValidationException`` (its model's own exception;
  localstack/localstack#6138 quotes that text). Services not listed use ValidationException when
  their model defines it, else InvalidParameterException. ECS's semantic checks answered as
  ``ClientException`` ("Container.image should not be null or empty.", aws/aws-cli#5924; "Family
  can not be blank.") are business rules for the handlers, not model validation.
- Unknown members are ignored and JSON ``null`` means "absent", as on AWS. Null items inside lists
  and maps are reported as "Member must not be null" so handlers never see them.
- Java-only regex constructs (``\\p{...}``, surrogate ranges) that Python cannot compile are
  approximated (``\\p{L}``/``\\p{N}`` as ``\\w``, ``\\p{Z}`` as ``\\s``) or skipped, never
  tightened.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import botocore.loaders

from galley.errors import ApiError

__all__ = ["ServiceModel", "load"]

Check = Callable[[Any, str, list[str]], None]
"""A compiled validator: (non-null value, member path, error sink) -> None; raises on bad types."""

MAX_REPORTED_ERRORS = 10
MAX_RENDERED_VALUE = 1024

_VALIDATION_CODES = {
    "ecs": "InvalidParameterException",
    "logs": "InvalidParameterException",
    "application-autoscaling": "ValidationException",
}
_INT_BOUNDS = {
    "integer": (-(2**31), 2**31 - 1, "Integer"),
    "long": (-(2**63), 2**63 - 1, "Long"),
}
_JAVA_CLASSES = {
    "string": "String",
    "boolean": "Boolean",
    "float": "Float",
    "double": "Double",
    "timestamp": "Date",
    "blob": "ByteBuffer",
}
_loader_lock = threading.Lock()
_loader: botocore.loaders.Loader | None = None
_models: dict[str, ServiceModel] = {}


def _get_loader() -> botocore.loaders.Loader:
    global _loader
    if _loader is None:
        _loader = botocore.loaders.Loader()
    return _loader


def _serialization_error(value: Any, expected: str) -> ApiError:
    """The Coral deserializer's complaint about a JSON value of the wrong kind."""
    if isinstance(value, dict):
        message = "Start of structure or map found where not expected."
    elif isinstance(value, list):
        message = "Start of list found where not expected"
    else:
        message = f"{_token(value)} cannot be converted to {expected}"
    return ApiError("SerializationException", message)


def _token(value: Any) -> str:
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    return "NUMBER_VALUE"


def _render(value: Any) -> str:
    """Render a value the way Coral quotes it in validation messages (Java toString style)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _violation(value: Any, path: str, constraint: str, sensitive: bool) -> str:
    if sensitive:
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    rendered = _render(value)
    if len(rendered) > MAX_RENDERED_VALUE:
        rendered = rendered[:MAX_RENDERED_VALUE] + "..."
    shown = "null" if value is None else f"'{rendered}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


def _not_null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _summary(errors: list[str]) -> str:
    shown = errors[:MAX_REPORTED_ERRORS]
    plural = "s" if len(shown) > 1 else ""
    return f"{len(shown)} validation error{plural} detected: " + "; ".join(shown)


def _compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """Compile a model (Java) regex for Python; approximate or give up rather than tighten."""
    translated = pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", r"\s")
    try:
        return re.compile(translated)
    except re.error:
        return None


def _length_limits(shape: dict[str, Any]) -> list[Callable[[int], str | None]]:
    """Length constraints (strings, blobs, lists, maps) as functions of the measured length."""
    checks: list[Callable[[int], str | None]] = []
    lo, hi = shape.get("min"), shape.get("max")
    if lo:
        lo_i = int(lo)
        msg_lo = f"Member must have length greater than or equal to {lo}"
        checks.append(lambda n: msg_lo if n < lo_i else None)
    if hi is not None:
        hi_i = int(hi)
        msg_hi = f"Member must have length less than or equal to {hi}"
        checks.append(lambda n: msg_hi if n > hi_i else None)
    return checks


def _value_limits(shape: dict[str, Any]) -> list[Callable[[float], str | None]]:
    """Numeric range constraints as functions of the value."""
    checks: list[Callable[[float], str | None]] = []
    lo, hi = shape.get("min"), shape.get("max")
    if lo is not None:
        msg_lo = f"Member must have value greater than or equal to {lo}"
        checks.append(lambda v: msg_lo if v < lo else None)
    if hi is not None:
        msg_hi = f"Member must have value less than or equal to {hi}"
        checks.append(lambda v: msg_hi if v > hi else None)
    return checks


def _parse_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


class _Compiler:
    """Turns model shapes into `Check` closures, memoised per shape name (handles recursion)."""

    def __init__(self, shapes: dict[str, Any]) -> None:
        self._shapes = shapes
        self._done: dict[str, Check] = {}

    def shape(self, name: str) -> Check:
        done = self._done.get(name)
        if done is not None:
            return done
        slot: list[Check] = []

        def forward(value: Any, path: str, errors: list[str]) -> None:
            slot[0](value, path, errors)

        self._done[name] = forward  # placeholder while compiling recursive shapes
        built = self._build(self._shapes[name])
        slot.append(built)
        self._done[name] = built
        return built

    def _build(self, shape: dict[str, Any]) -> Check:
        kind = shape["type"]
        if kind == "structure":
            if shape.get("document"):
                return _accept_anything
            return self._structure(shape)
        if kind == "list":
            return self._list(shape)
        if kind == "map":
            return self._map(shape)
        if kind == "string":
            return self._string(shape)
        if kind in _INT_BOUNDS:
            return self._integer(shape)
        if kind in ("float", "double"):
            return self._number(shape)
        if kind == "boolean":
            return self._boolean()
        if kind == "timestamp":
            return self._timestamp()
        if kind == "blob":
            return self._blob(shape)
        return _accept_anything

    def _structure(self, shape: dict[str, Any]) -> Check:
        members = {name: self.shape(ref["shape"]) for name, ref in shape["members"].items()}
        required = tuple(shape.get("required", ()))

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, dict):
                if isinstance(value, list):
                    raise _serialization_error(value, "structure")
                raise ApiError("SerializationException", "Expected null")
            for name in required:
                if value.get(name) is None:
                    errors.append(_not_null(_join(path, name)))
            for name, item in value.items():
                if item is None:
                    continue
                member = members.get(name)
                if member is not None:
                    member(item, _join(path, name), errors)

        return check

    def _list(self, shape: dict[str, Any]) -> Check:
        item_check = self.shape(shape["member"]["shape"])
        limits = _length_limits(shape)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, list):
                if isinstance(value, dict):
                    raise _serialization_error(value, "list")
                raise ApiError("SerializationException", "Expected list or null")
            for limit in limits:
                problem = limit(len(value))
                if problem:
                    errors.append(_violation(value, path, problem, False))
            for index, item in enumerate(value, 1):
                item_path = f"{path}.{index}.member"
                if item is None:
                    errors.append(_not_null(item_path))
                else:
                    item_check(item, item_path, errors)

        return check

    def _map(self, shape: dict[str, Any]) -> Check:
        key_shape = self._shapes[shape["key"]["shape"]]
        key_limits = _key_constraints(key_shape)
        value_check = self.shape(shape["value"]["shape"])
        limits = _length_limits(shape)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, dict):
                if isinstance(value, list):
                    raise _serialization_error(value, "map")
                raise ApiError("SerializationException", "Expected map or null")
            for limit in limits:
                problem = limit(len(value))
                if problem:
                    errors.append(_violation(value, path, problem, False))
            for key, item in value.items():
                if key_limits:
                    problems = [p for p in (c(key) for c in key_limits) if p]
                    if problems:
                        constraint = (
                            "Map keys must satisfy constraint: [" + ", ".join(problems) + "]"
                        )
                        errors.append(_violation(value, path, constraint, False))
                item_path = f"{path}.{key}.member"
                if item is None:
                    errors.append(_not_null(item_path))
                else:
                    value_check(item, item_path, errors)

        return check

    def _string(self, shape: dict[str, Any]) -> Check:
        constraints = _key_constraints(shape)
        sensitive = bool(shape.get("sensitive"))

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, str):
                raise _serialization_error(value, "String")
            for constraint in constraints:
                problem = constraint(value)
                if problem:
                    errors.append(_violation(value, path, problem, sensitive))

        def check_plain(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, str):
                raise _serialization_error(value, "String")

        return check if constraints else check_plain

    def _integer(self, shape: dict[str, Any]) -> Check:
        low, high, java = _INT_BOUNDS[shape["type"]]
        limits = _value_limits(shape)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _serialization_error(value, java)
            if isinstance(value, float) and not value.is_integer():
                raise _serialization_error(value, java)
            if not low <= value <= high:
                raise _serialization_error(value, java)
            for limit in limits:
                problem = limit(value)
                if problem:
                    errors.append(_violation(value, path, problem, False))

        return check

    def _number(self, shape: dict[str, Any]) -> Check:
        java = _JAVA_CLASSES[shape["type"]]
        limits = _value_limits(shape)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _serialization_error(value, java)
            for limit in limits:
                problem = limit(value)
                if problem:
                    errors.append(_violation(value, path, problem, False))

        return check

    @staticmethod
    def _boolean() -> Check:
        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, bool):
                raise _serialization_error(value, "Boolean")

        return check

    @staticmethod
    def _timestamp() -> Check:
        def check(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, bool):
                raise _serialization_error(value, "Date")
            if isinstance(value, int | float):
                return
            if isinstance(value, str) and _parse_timestamp(value):
                return
            raise _serialization_error(value, "Date")

        return check

    @staticmethod
    def _blob(shape: dict[str, Any]) -> Check:
        limits = _length_limits(shape)
        sensitive = bool(shape.get("sensitive"))

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, str):
                raise _serialization_error(value, "ByteBuffer")
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(
                    "SerializationException",
                    f"'{value[:64]}' can not be converted to a Blob: invalid Base64",
                ) from None
            for limit in limits:
                problem = limit(len(raw))
                if problem:
                    errors.append(_violation(value, path, problem, sensitive))

        return check


def _accept_anything(value: Any, path: str, errors: list[str]) -> None:
    """Document members (and unknown shape kinds) accept any JSON value."""


def _by_length(limit: Callable[[int], str | None]) -> Callable[[str], str | None]:
    return lambda s: limit(len(s))


def _key_constraints(shape: dict[str, Any]) -> list[Callable[[str], str | None]]:
    """Enum, length and pattern constraints of a string shape as functions of the value."""
    checks: list[Callable[[str], str | None]] = []
    enum = shape.get("enum")
    if enum:
        allowed = frozenset(enum)
        msg_enum = "Member must satisfy enum value set: [" + ", ".join(enum) + "]"
        checks.append(lambda s: msg_enum if s not in allowed else None)
    for limit in _length_limits(shape):
        checks.append(_by_length(limit))
    pattern = shape.get("pattern")
    if pattern:
        compiled = _compile_pattern(pattern)
        if compiled is not None:
            rx: re.Pattern[str] = compiled
            msg_pattern = f"Member must satisfy regular expression pattern: {pattern}"
            checks.append(lambda s: msg_pattern if rx.fullmatch(s) is None else None)
    return checks


class ServiceModel:
    """One botocore service model plus lazily compiled, cached per-operation input validators."""

    def __init__(self, service_name: str, data: dict[str, Any]) -> None:
        self.service_name = service_name
        self.raw: dict[str, Any] = data
        meta = data["metadata"]
        self.metadata: dict[str, Any] = dict(meta)
        self.target_prefix: str = meta.get("targetPrefix", "")
        self.protocol: str = meta.get("protocol", "")
        self.json_version: str = meta.get("jsonVersion", "")
        self.signing_name: str = meta.get("signingName") or meta.get("endpointPrefix", "")
        self.api_version: str = meta.get("apiVersion", "")
        self._operations: dict[str, Any] = data["operations"]
        self.operation_names: frozenset[str] = frozenset(self._operations)
        shapes: dict[str, Any] = data["shapes"]
        self._shapes = shapes
        code = _VALIDATION_CODES.get(service_name)
        if code is None:
            code = (
                "ValidationException"
                if "ValidationException" in shapes
                else "InvalidParameterException"
            )
        self.validation_error_code: str = code
        self._compiler = _Compiler(shapes)
        self._validators: dict[str, Check] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, service_name: str) -> ServiceModel:
        """Load (once per process) botocore's model for `service_name`, e.g. "ecs"."""
        model = _models.get(service_name)
        if model is None:
            with _loader_lock:
                model = _models.get(service_name)
                if model is None:
                    data = _get_loader().load_service_model(service_name, "service-2")
                    model = cls(service_name, data)
                    _models[service_name] = model
        return model

    def operation_for_target(self, target: str) -> str | None:
        """Map an `X-Amz-Target` value (`Prefix.Operation`) to an operation name, or None."""
        prefix, dot, operation = target.partition(".")
        if not dot or prefix != self.target_prefix or operation not in self.operation_names:
            return None
        return operation

    def input_shape_name(self, operation: str) -> str | None:
        """Name of the operation's input shape (None if it takes no input)."""
        ref = self._operation(operation).get("input")
        return ref["shape"] if ref else None

    def shape(self, name: str) -> dict[str, Any]:
        """Raw model definition of one shape."""
        shape: dict[str, Any] = self._shapes[name]
        return shape

    def validate_input(self, operation: str, params: Any) -> None:
        """Raise `ApiError` unless `params` (a decoded JSON body) is valid input for `operation`."""
        validator = self._validators.get(operation)
        if validator is None:
            validator = self._compile(operation)
        if not isinstance(params, dict):
            if isinstance(params, list):
                raise _serialization_error(params, "structure")
            raise ApiError("SerializationException", "Expected null")
        errors: list[str] = []
        validator(params, "", errors)
        if errors:
            raise ApiError(self.validation_error_code, _summary(errors))

    def _operation(self, operation: str) -> dict[str, Any]:
        op = self._operations.get(operation)
        if op is None:
            raise ApiError(
                "UnknownOperationException", f"Unknown operation {self.target_prefix}.{operation}"
            )
        found: dict[str, Any] = op
        return found

    def _compile(self, operation: str) -> Check:
        op = self._operation(operation)
        with self._lock:
            validator = self._validators.get(operation)
            if validator is None:
                ref = op.get("input")
                validator = self._compiler.shape(ref["shape"]) if ref else _accept_anything
                self._validators[operation] = validator
        return validator

    def compile_all(self, operations: Iterable[str] | None = None) -> None:
        """Eagerly compile validators (e.g. at startup) for `operations` (default: all)."""
        for operation in self.operation_names if operations is None else operations:
            if operation not in self._validators:
                self._compile(operation)


def load(service_name: str) -> ServiceModel:
    """Shorthand for `ServiceModel.load(service_name)`."""
    return ServiceModel.load(service_name)
