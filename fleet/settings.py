"""The one settings object: everything configurable is read from the environment here."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from db.push import PUSH_SERVICES

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
    login_attempts_per_address_per_minute: int = Field(
        default=30,
        description="Sign-in attempts per client address per minute (any usernames) before 429.",
    )
    db_lock_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a flow or a CLI command waits for a lock before it fails, saying"
        " so (its retry then finds the lock free once a dead client's session is gone).",
    )
    db_statement_timeout_seconds: float = Field(
        default=900.0,
        gt=0,
        description="A flow's longest statement (the COPY of a big feed file): a statement"
        " stuck longer, e.g. waiting for a client that died, is cancelled.",
    )
    db_idle_in_transaction_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A session left idle inside a transaction (its client hung or died) is"
        " ended after this, with its locks.",
    )
    credential_check_seconds: float = Field(
        default=2.0,
        description="How often each server process checks that the sessions and tokens of its"
        " open pages and streams are still valid (revoked, expired, deactivated).",
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
    # The pipeline (feeds, materialized tables, notifications, archive).
    inbox: str | None = Field(
        default=None,
        description="Where feed files arrive: a folder (default FLEET_DATA_DIR/inbox) or any"
        " URL polars/fsspec can list and read (s3://bucket/feeds, ...).",
    )
    feed_days_back: int = Field(
        default=730,
        ge=1,
        description="Feed times more than this many days before now are quarantined as"
        " implausible (a typo such as 1900-01-01).",
    )
    feed_days_ahead: int = Field(
        default=730,
        ge=1,
        description="Feed times more than this many days after now are quarantined as"
        " implausible (a typo such as 9999-12-31).",
    )
    archive_dir: Path | None = Field(
        default=None,
        description="Where history older than the retention moves as Parquet"
        " (default FLEET_DATA_DIR/archive).",
    )
    history_retention_days: int = Field(
        default=90, description="Days of status history kept in PostgreSQL before archiving."
    )
    materialize_days: int = Field(
        default=30, description="Days ahead the availability table covers, per vehicle."
    )
    notify_webhook_urls: list[str] = Field(
        default=[], description="Webhook URLs that receive alert notifications as JSON POSTs."
    )
    notify_email_to: list[str] = Field(
        default=[], description="E-mail addresses that receive alert notifications."
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay for e-mail alerts.")
    smtp_port: int = Field(default=25)
    smtp_username: str | None = Field(default=None)
    smtp_password: str | None = Field(default=None)
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection to TLS.")
    smtp_from: str = Field(default="fleet@localhost", description="Sender of e-mail alerts.")
    notify_max_attempts: int = Field(
        default=8, description="Delivery attempts per notification before it is marked failed."
    )
    # Web Push to the counter app (VAPID).
    vapid_private_key: str | None = Field(
        default=None,
        description="The server's VAPID signing key for Web Push (P-256, base64url of the raw"
        " 32 bytes or PEM); when unset one is kept in FLEET_DATA_DIR/vapid_private_key. Set"
        " it explicitly when running several machines: browsers subscribe to one key.",
    )
    vapid_subject: str | None = Field(
        default=None,
        description="Contact the push services see in VAPID claims (mailto: or https: URL);"
        " default mailto:FLEET_SMTP_FROM.",
    )
    push_services: list[str] = Field(
        default=list(PUSH_SERVICES),
        description="Origins of the push services a subscription may point at (https://host,"
        " '*.' wildcards allowed); the browsers' own services by default.",
    )
    push_ttl_seconds: int = Field(
        default=6 * 3600,
        description="How long a push service keeps a message for a device that is offline.",
    )
    prefect_port: int = Field(default=4200, description="Port of the local Prefect server.")
    # The dashboard.
    map_tiles: str = Field(
        default="OpenStreetMap.Mapnik",
        description="xyzservices provider drawn under the fleet map (OpenTopoMap,"
        " Esri.WorldStreetMap, ...); '' or 'none', a provider that needs an API key, or an"
        " unreachable tile server draws plain longitude/latitude axes instead.",
    )

    @property
    def inbox_location(self) -> str:
        """The feed inbox as a folder path or URL."""
        return self.inbox or str(self.data_dir / "inbox")

    @property
    def archive_location(self) -> Path:
        """The Parquet history archive folder."""
        return self.archive_dir or self.data_dir / "archive"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings."""
    return Settings()
