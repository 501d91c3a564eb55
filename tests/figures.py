"""Figures a test measures, kept for `benchmarks/cuts.py` when it runs the test.

A test that times a recovery (a database restart, a network cut) asserts its promise and also
calls `record`; with FLEET_FIGURES set to a file, the figures are appended there as JSON
lines, so the benchmark reports what the tests measured without a second harness.
"""

from __future__ import annotations

import json
import os


def record(what: str, seconds: list[float]) -> None:
    """Append one measured series (seconds) under its description, if figures are wanted."""
    target = os.environ.get("FLEET_FIGURES")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps({"what": what, "seconds": seconds}) + "\n")
