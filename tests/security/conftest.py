"""Security sweep fixtures: the shared live server, users per role, Chromium and a log tap."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from tests.api.conftest import api, live_server  # noqa: F401 - shared server fixtures

# The server runs in this process (tests/api/conftest.py), so its log records reach handlers
# here. fleet's logger does not propagate (api/logs.py), so each logger gets the tap itself.
TAPPED = ("", "bokeh", "tornado", "panel", "fleet", "uvicorn.error", "asyncio")


class LogTap(logging.Handler):
    """Every log record the server emits while the tap is on, once each."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            if id(record) not in self._seen:
                self._seen.add(id(record))
                self.records.append(record)

    def tracebacks(self) -> list[str]:
        """Return each ERROR-or-worse record that carries an exception, formatted."""
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [fmt.format(r) for r in self.records if r.levelno >= logging.ERROR and r.exc_info]


@pytest.fixture
def log_tap() -> Iterator[LogTap]:
    tap = LogTap()
    loggers = [logging.getLogger(name) for name in TAPPED]
    for logger in loggers:
        logger.addHandler(tap)
    try:
        yield tap
    finally:
        for logger in loggers:
            logger.removeHandler(tap)
