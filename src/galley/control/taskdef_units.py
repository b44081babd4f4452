"""Task-level cpu/memory units and the Fargate size table (pure, no I/O).

ECS accepts task `cpu` as CPU units ("1024") or vCPUs ("1 vCPU", "0.5 vcpu") and task
`memory` as MiB ("2048") or GB ("2GB", "2 GB"). It stores both as integer strings, so
"1 vCPU" is described back as "1024" and "1GB" as "1024".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from galley.errors import client_error

CPU_UNITS_PER_VCPU = 1024
MIB_PER_GIB = 1024
# [M RegisterTaskDefinition.cpu]: EC2/EXTERNAL task cpu is 128 (0.125 vCPU) to 196608 (192 vCPU).
MIN_TASK_CPU = 128
MAX_TASK_CPU = 196608

INVALID_TASK_CPU = "Invalid 'cpu' setting for task."
INVALID_TASK_MEMORY = "Invalid 'memory' setting for task."

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_CPU_RE = re.compile(rf"^\s*{_NUMBER}\s*(vcpu)?\s*$", re.IGNORECASE)
# ECS documents "GB"; GiB/MB/MiB are accepted too because they are unambiguous here.
_MEMORY_RE = re.compile(rf"^\s*{_NUMBER}\s*(gb|gib|mb|mib)?\s*$", re.IGNORECASE)


def _steps(first: int, last: int, step: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1, step))


# Valid Fargate (task cpu units -> task memory MiB) pairs [M RegisterTaskDefinition.memory].
# 8192 and 16384 need Linux platform 1.4.0+, which is the only platform Galley offers.
FARGATE_SIZES: Mapping[int, tuple[int, ...]] = MappingProxyType(
    {
        256: (512, 1024, 2048),
        512: _steps(1024, 4096, 1024),
        1024: _steps(2048, 8192, 1024),
        2048: _steps(4096, 16384, 1024),
        4096: _steps(8192, 30720, 1024),
        8192: _steps(16384, 61440, 4096),
        16384: _steps(32768, 122880, 8192),
    }
)


def is_fargate_size(cpu: int, memory: int) -> bool:
    """True when (cpu units, memory MiB) is one of Fargate's task sizes."""
    return memory in FARGATE_SIZES.get(cpu, ())


def _scaled(number: str, factor: int) -> int | None:
    """`number * factor` when it is a whole number, else None (e.g. 0.3 GB is not whole MiB)."""
    try:
        value = Decimal(number) * factor
    except InvalidOperation:
        return None
    if value != value.to_integral_value():
        return None
    return int(value)


def parse_task_cpu(value: str) -> int:
    """Task cpu ("256", "1 vCPU", "0.5 vcpu") as CPU units; bad values raise ClientException."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _CPU_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise client_error(INVALID_TASK_CPU)
    number, unit = match.groups()
    if unit is None and not number.isdigit():
        # Bare CPU units are whole numbers; only vCPU values may be fractional.
        raise client_error(INVALID_TASK_CPU)
    units = _scaled(number, CPU_UNITS_PER_VCPU if unit else 1)
    if units is None or not MIN_TASK_CPU <= units <= MAX_TASK_CPU:
        raise client_error(INVALID_TASK_CPU)
    return units


def parse_task_memory(value: str) -> int:
    """Task memory ("512", "1GB", "1 GB", "512 MiB") in MiB; bad values raise ClientException."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _MEMORY_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise client_error(INVALID_TASK_MEMORY)
    number, unit = match.groups()
    in_gib = unit is not None and unit.lower() in ("gb", "gib")
    if not in_gib and not number.isdigit():
        raise client_error(INVALID_TASK_MEMORY)
    mib = _scaled(number, MIB_PER_GIB if in_gib else 1)
    if mib is None or mib <= 0:
        raise client_error(INVALID_TASK_MEMORY)
    return mib
