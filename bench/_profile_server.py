"""Run `galley.cli` with a sampling profiler: where the control plane's CPU goes (`--profile`).

    python bench/_profile_server.py OUT_FILE [galley cli arguments ...]

Every 10 ms it takes every thread's Python stack and keeps those of the threads that used CPU
since the previous sample (per-thread CPU time from /proc/self/task/<tid>/stat), so threads
blocked in a socket read or a wait are not counted. Every 2 s (and at exit) it writes OUT_FILE:
total samples, then the top functions by self samples and by inclusive samples, then the top
stacks. The server exits with os._exit, so the file is rewritten periodically rather than at exit.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

INTERVAL = 0.010
WRITE_EVERY = 2.0


def _cpu_ticks(native_id: int) -> int:
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return -1


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("/galley/", "/sqlalchemy/", "/http/", "/socketserver", "/json/", "/sqlite3/"):
        if marker in path:
            path = path[path.index(marker) + 1:]
            break
    else:
        path = os.path.basename(path)
    return f"{path}:{code.co_name}"


class Sampler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.self_counts: Counter[str] = Counter()
        self.incl_counts: Counter[str] = Counter()
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self.threads: Counter[str] = Counter()
        self.samples = 0
        self.last: dict[int, int] = {}
        self.me = threading.get_ident()

    def run(self) -> None:
        next_write = time.monotonic() + WRITE_EVERY
        while True:
            time.sleep(INTERVAL)
            self.sample()
            if time.monotonic() >= next_write:
                self.write()
                next_write = time.monotonic() + WRITE_EVERY

    def sample(self) -> None:
        frames = sys._current_frames()
        by_ident = {t.ident: t for t in threading.enumerate()}
        for ident, frame in frames.items():
            if ident == self.me:
                continue
            thread = by_ident.get(ident)
            native = getattr(thread, "native_id", None)
            if native is None:
                continue
            ticks = _cpu_ticks(native)
            previous = self.last.get(native)
            self.last[native] = ticks
            if previous is None or ticks <= previous:
                continue
            stack = []
            f: FrameType | None = frame
            while f is not None:
                stack.append(_where(f))
                f = f.f_back
            stack.reverse()
            self.samples += 1
            name = thread.name if thread else "?"
            self.threads["http" if name.startswith("Thread-") else name] += 1
            self.self_counts[stack[-1]] += 1
            for fn in set(stack):
                self.incl_counts[fn] += 1
            self.stacks[tuple(stack[-8:])] += 1

    def write(self) -> None:
        n = max(self.samples, 1)
        lines = [f"samples (thread-ticks with CPU used): {self.samples}", "", "by thread:"]
        lines += [f"  {c / n:6.1%}  {t}" for t, c in self.threads.most_common()]
        lines += ["", "self:"]
        lines += [f"  {c / n:6.1%}  {fn}" for fn, c in self.self_counts.most_common(40)]
        lines += ["", "inclusive:"]
        lines += [f"  {c / n:6.1%}  {fn}" for fn, c in self.incl_counts.most_common(60)]
        lines += ["", "stacks (innermost 8 frames):"]
        for stack, c in self.stacks.most_common(25):
            lines.append(f"  {c / n:6.1%}  " + " > ".join(stack))
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.out)


def main() -> int:
    out = Path(sys.argv[1])
    sys.argv = ["galley", *sys.argv[2:]]
    threading.Thread(target=Sampler(out).run, name="sampler", daemon=True).start()
    from galley.cli import main as galley_main

    return galley_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
