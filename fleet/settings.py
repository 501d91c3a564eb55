"""The one settings object: everything configurable is read from the environment here."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Fleet configuration, from FLEET_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; when unset an embedded PostgreSQL is started.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".data",
        description="Where the embedded database keeps its files between runs.",
    )
    test_database_url: str | None = Field(
        default=None,
        description="Server the test suite uses instead of a fresh embedded one.",
    )
    overdue_thresholds_minutes: list[int] = Field(
        default=[0, 120, 360, 1440],
        description="Minutes past expected return at which escalation levels 1, 2, 3, ... begin.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs session cookies and CSRF tokens; when unset a random key is kept"
        " in FLEET_DATA_DIR/secret_key (set it explicitly when running several machines).",
    )
    log_format: str = Field(default="text", description="'text' or 'json' log lines.")
    log_level: str = Field(default="INFO")
    session_hours: float = Field(default=12.0, description="Browser session lifetime.")
    token_days: float = Field(default=90.0, description="API token lifetime.")
    cookie_secure: bool = Field(
        default=False, description="Send cookies only over HTTPS (set behind TLS)."
    )
    rate_limit_per_minute: int = Field(
        default=600, description="Requests per user per minute before 429."
    )
    login_attempts_per_minute: int = Field(
        default=10, description="Sign-in attempts per username per minute before 429."
    )
    max_concurrent_requests: int = Field(
        default=64, description="Requests in flight per process before 503 (load shedding)."
    )
    stream_queue_size: int = Field(
        default=1000, description="Events buffered per stream client before it must reload."
    )
    heartbeat_seconds: float = Field(default=15.0, description="Stream heartbeat interval.")
    db_pool_size: int = Field(
        default=20, description="Database connections kept open per server process."
    )


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
