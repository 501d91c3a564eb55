"""Running a coroutine from a test, wherever the test runs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on its own loop in a worker thread.

    Playwright's sync API keeps an event loop running in the main thread once a browser test
    has run in this process (and with the suite spread over workers, any test may come after
    one), so `asyncio.run` there would refuse.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
