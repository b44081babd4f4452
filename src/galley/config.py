"""Server settings: where data lives, which account and key pair it serves, how fast loops turn."""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from galley.scheduler.service_step import Settings as ServiceSettings

DEFAULT_ACCOUNT_ID = "000000000000"


def default_data_dir() -> Path:
    return Path(os.environ.get("GALLEY_DATA_DIR") or Path.home() / ".galley")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    generated: bool = False


@dataclass
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    account_id: str = DEFAULT_ACCOUNT_ID
    store_url: str | None = None
    # How long STOPPED tasks stay describable (ECS keeps them at least an hour).
    stopped_task_retention: float = 3600.0
    # Safety resync period of reconcile loops; events wake them sooner.
    resync_seconds: float = 5.0
    # An agent that has not polled for this long is shown agentConnected false (agents long-poll
    # every 20 s).
    agent_timeout_seconds: float = 60.0
    credentials: Credentials | None = None
    service: ServiceSettings = field(default_factory=ServiceSettings)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'galley.db'}"


def account_id_from_env() -> str:
    value = os.environ.get("GALLEY_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    if not re.fullmatch(r"\d{12}", value):
        raise SystemExit(f"GALLEY_ACCOUNT_ID must be 12 digits, got {value!r}")
    return value


def load_credentials(data_dir: Path) -> Credentials:
    """The key pair from the environment, else the one kept in the data directory (made once)."""
    key = os.environ.get("GALLEY_ACCESS_KEY_ID")
    secret = os.environ.get("GALLEY_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret)
    path = data_dir / "credentials.json"
    if path.exists():
        doc = json.loads(path.read_text())
        return Credentials(doc["accessKeyId"], doc["secretAccessKey"])
    alphabet = string.ascii_uppercase + string.digits
    creds = Credentials(
        "AKGL" + "".join(secrets.choice(alphabet) for _ in range(16)),
        secrets.token_urlsafe(30)[:40],
        generated=True,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"accessKeyId": creds.access_key_id, "secretAccessKey": creds.secret_access_key}, f)
    return creds


def service_settings_from_env() -> ServiceSettings:
    """Service scheduler knobs: GALLEY_SERVICE_SETTLE_SECONDS (40), GALLEY_BREAKER_MINIMUM (3),
    GALLEY_LAUNCH_BACKOFF_SECONDS (10, doubling up to 900)."""
    defaults = ServiceSettings()
    return ServiceSettings(
        settle_seconds=float(os.environ.get("GALLEY_SERVICE_SETTLE_SECONDS",
                                            defaults.settle_seconds)),
        breaker_minimum=int(os.environ.get("GALLEY_BREAKER_MINIMUM", defaults.breaker_minimum)),
        backoff_base_seconds=float(os.environ.get("GALLEY_LAUNCH_BACKOFF_SECONDS",
                                                  defaults.backoff_base_seconds)),
        backoff_max_seconds=defaults.backoff_max_seconds,
    )
