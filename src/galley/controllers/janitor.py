"""Housekeeping: forgets STOPPED tasks past the retention period and marks silent agents
disconnected."""

from __future__ import annotations

import logging
import threading
import time

from galley.app import Galley
from galley.control import agent_channel, tasks

log = logging.getLogger("galley.janitor")


def run(app: Galley, stop: threading.Event, period: float | None = None) -> None:
    period = period or min(60.0, app.settings.agent_timeout_seconds / 3)
    while not stop.wait(period):
        try:
            tasks.purge_stopped(app, time.time() - app.settings.stopped_task_retention)
            agent_channel.mark_disconnected(app, time.time() - app.settings.agent_timeout_seconds)
        except Exception:
            log.exception("housekeeping failed")
