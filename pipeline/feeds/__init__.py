"""Feed files from the systems around us: parse and validate with polars, reasons for rejects.

Each feed module has `parse(data, *, fmt, known_plates, known_locations, now=None)` returning
a `ParsedFeed` (typed good rows plus a `Reject` per bad row); `detect` tells from a file's name
which feed and format it is. Nothing here touches the database except `pipeline.feeds.demo`,
which is imported on its own.
"""

from __future__ import annotations

import re
from types import ModuleType

from pipeline.feeds import contracts, maintenance, returns, transfers
from pipeline.feeds.base import FeedFileError, ParsedFeed, Reject

__all__ = ["EXTENSIONS", "FEEDS", "FeedFileError", "ParsedFeed", "Reject", "detect"]

FEEDS: dict[str, ModuleType] = {
    "contracts": contracts,
    "maintenance": maintenance,
    "returns": returns,
    "transfers": transfers,
}
EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "jsonl": "ndjson"}


def detect(name: str) -> tuple[str, str]:
    """Return (feed, format) for a file name like `contracts-2026-11-25T0800.csv`.

    The name's start up to the first `-`, `_` or `.` names the feed; the extension gives the
    format (.csv; .ndjson or .jsonl). A folder or URL in front is ignored. Raises
    `ValueError` for any other name: such a file is not a feed and goes to quarantine.
    """
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    feed = re.split(r"[-_.]", base, maxsplit=1)[0].lower()
    extension = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    if feed not in FEEDS:
        raise ValueError(
            f"cannot tell the feed of {base!r}: the name must start with one of"
            f" {', '.join(FEEDS)} followed by -, _ or . (like contracts-2026-11-25T0800.csv)"
        )
    if extension not in EXTENSIONS:
        raise ValueError(
            f"cannot tell the format of {base!r}: the name must end in .csv, .ndjson or .jsonl"
        )
    return feed, EXTENSIONS[extension]
