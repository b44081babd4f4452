"""The running control plane: settings, the store, and the agents it feeds."""

from __future__ import annotations

from galley.config import Settings
from galley.store.db import Store

# The built-in agent that supplies FARGATE capacity on the local Docker engine.
FARGATE_AGENT_ID = "fargate"


class Galley:
    """What every control operation gets: the settings and the store."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.db_url)
