"""Forgets STOPPED tasks once they are older than the retention period."""

from __future__ import annotations

import logging
import threading
import time

from galley.app import Galley
from galley.control import tasks

log = logging.getLogger("galley.janitor")


def run(app: Galley, stop: threading.Event, period: float = 60.0) -> None:
    while not stop.wait(period):
        try:
            tasks.purge_stopped(app, time.time() - app.settings.stopped_task_retention)
        except Exception:
            log.exception("purging stopped tasks failed")
