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


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
