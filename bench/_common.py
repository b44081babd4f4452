"""Shared pieces of the Galley benchmarks: the Galley subprocess, statistics, tables, cleanup.

Nothing here is a benchmark by itself; `run_task_latency.py` and `api_throughput.py` import it
(they run as `python3 bench/<name>.py`, so this directory is on sys.path).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from galley_process import (  # noqa: E402  (needs the path above)
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    GalleyProcess,
    free_port,
)

__all__ = [
    "ACCESS_KEY", "REGION", "SECRET_KEY", "GalleyProcess", "free_port", "BUSYBOX",
    "percentile", "summary", "print_table", "emit_json", "machine_load", "load_note", "galley_process", "terminate_on_signals",
]

BUSYBOX = "galley-test/busybox:latest"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else math.nan,
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "min": min(values) if values else math.nan,
    }


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def machine_load() -> dict[str, float]:
    """CPUs and load average: other work on the host skews every figure here, so say it."""
    one, five, _ = os.getloadavg()
    return {"cpus": os.cpu_count() or 1, "load1": one, "load5": five}


def load_note(load: dict[str, float]) -> str:
    busy = "  (busy host: figures are noisy)" if load["load1"] > load["cpus"] else ""
    return f"host: {load['cpus']:.0f} CPUs, load average {load['load1']:.2f} / {load['load5']:.2f}{busy}"


def emit_json(doc: dict[str, Any]) -> None:
    print("JSON " + json.dumps(doc, sort_keys=True, default=str))


def terminate_on_signals() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so every `finally:` cleanup still runs."""

    def raise_interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)
    # Started in the background by a non-interactive shell, SIGINT arrives ignored: restore it.
    signal.signal(signal.SIGINT, signal.default_int_handler)


class galley_process:  # noqa: N801 - used as a context manager, reads like a function
    """A fresh Galley on a temporary data directory; on exit it is stopped, every container of
    its installation is removed (`galley cleanup`) and the directory is deleted."""

    def __init__(self, **env: str) -> None:
        self.env = env
        self.tmp = Path(tempfile.mkdtemp(prefix="galley-bench-"))
        self.proc = GalleyProcess(self.tmp, **env)

    def __enter__(self) -> GalleyProcess:
        try:
            return self.proc.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *_exc: Any) -> None:
        # A second Ctrl-C during cleanup must not leave containers behind: shield it.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            try:
                self.proc.stop()
            except Exception:
                self.proc.stop(kill=True)
            result = self.proc.galley("cleanup", "--data-dir", str(self.tmp))
            if result.returncode != 0:
                print(f"warning: galley cleanup failed: {result.stderr[-2000:]}", file=sys.stderr)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            signal.signal(signal.SIGINT, old)
