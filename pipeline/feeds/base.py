"""What the four feeds share: reading CSV/NDJSON as text with line numbers, typing, rejects.

Every feed is checked the same way. The file is read with every value as text (so nothing is
guessed or silently coerced), each record keeps the line it starts on, and the checks are
polars expressions evaluated over the whole file at once: a row is either a typed good row or
a `Reject` carrying the first check it failed. Python objects are built only for bad rows, so
a file of a million good rows costs a few vectorised passes.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from db.lookup import plate_key

FORMATS = ("csv", "ndjson")
TIME_EXAMPLE = "2026-12-01T10:00+01:00"
MAX_EXTERNAL_ID = 100  # the width the contracts and feed_records tables accept
# Text fields' longest accepted values (docs/feeds.md): longer ones are pasted by mistake
# (a whole e-mail in a name field) and would be stored and shown everywhere.
MAX_LENGTHS = {
    "external_id": MAX_EXTERNAL_ID,
    "contract_id": MAX_EXTERNAL_ID,
    "plate": 16,
    "customer_name": 200,
    "customer_phone": 50,
    "customer_email": 254,
    "description": 1_000,
    "damage_notes": 4_000,
}
MAX_RAW_TEXT = 2_000  # an unreadable line is kept this long in its reject

# ISO 8601 / RFC 3339 with a mandatory offset; minutes-only and a space separator are common
# in exports, so both are accepted. [0-9], not \d: the regex engine's \d matches any script.
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME_RE = (
    rf"^{_DATE}[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\.[0-9]{{1,9}})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
)
_NAIVE_RE = rf"^{_DATE}[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\.[0-9]+)?)?$"
_UTC = pl.Datetime("us", "UTC")


EXPORT_HINT = "export it as CSV (comma-separated, UTF-8) or NDJSON"
# What a file that is no text at all starts with, and how to say what it is.
_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook is one)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "gzip-compressed",
}
# Control bytes no text export holds (tab, line ends and ESC aside).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13, 27))
_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}
NUL_REASON = (
    "{} contains a NUL character (byte 0), which cannot be stored: remove it from the export"
)


class FeedFileError(ValueError):
    """The file as a whole cannot be read (not a row problem): quarantine the file."""


class MissingColumns(FeedFileError):
    """A CSV header lacks columns the feed requires; `columns` is what the header names."""

    def __init__(self, message: str, columns: Sequence[str]) -> None:
        super().__init__(message)
        self.columns = tuple(columns)


@dataclass(frozen=True)
class TimeWindow:
    """How far before and after now a feed time may lie; beyond it the row is implausible.

    Times far off are typos (9999-12-31, 1900-01-01) and some cannot even be read back into
    Python once stored; the window keeps them out of the engine.
    """

    back: timedelta = timedelta(days=730)
    ahead: timedelta = timedelta(days=730)


@dataclass
class Reject:
    """A row that cannot be loaded: where it was, what it said, and why."""

    line: int
    raw: dict[str, str | None]
    reason: str


@dataclass
class ParsedFeed:
    """Typed good rows (with their line numbers) and the rejects, from one file.

    `note` says why a file gave no rows at all (empty, only a header, lines without values).
    """

    rows: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    note: str | None = None


@dataclass
class RawFeed:
    """A file read as text: one row per record with its `line`, every field a String column.

    `rejects` holds records that could not even be split into fields (broken JSON, too many
    CSV values, bytes that are not UTF-8); `absent` names the fields the CSV header lacks.
    """

    frame: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    absent: frozenset[str] = frozenset()
    note: str | None = None


# --- reading ----------------------------------------------------------------------------------


def read_raw(
    data: bytes | Path, fmt: str, fields: Sequence[str], required: Sequence[str] = ()
) -> RawFeed:
    """Read a CSV (with header) or NDJSON file with every value as text and its line number.

    `fields` are the feed's column names: each is present in the result (null where the file
    has no value); a CSV header lacking one of `required` refuses the file. UTF-8 (with or
    without BOM), UTF-16 with its BOM and CR-only line ends are read alike. Blank lines are
    skipped but still counted, so line numbers match what an editor shows. A value holding a
    NUL character rejects its row (PostgreSQL cannot store it). Raises `ValueError` for an
    unknown format and `FeedFileError` when the file cannot be read at all.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown feed format {fmt!r}: csv or ndjson")
    blob = decode(data.read_bytes() if isinstance(data, Path) else bytes(data))
    try:
        blob.decode("utf-8")
        lossy = False
    except UnicodeDecodeError:
        lossy = True
    if fmt == "csv":
        frame, rejects, absent = _read_csv(blob, fields, required, lossy)
    else:
        frame, rejects = _read_ndjson(blob, fields)
        absent = frozenset()
    values = [c for c in frame.columns if c != "line"]
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.String).alias(name) for name in fields if name not in frame.columns
    )
    # Only a file holding a NUL byte (or NDJSON's escape for it) pays for this pass.
    if b"\x00" in blob or b"\\u0000" in blob:
        nul = pl.coalesce(
            pl.when(pl.col(c).str.contains("\x00", literal=True)).then(pl.lit(NUL_REASON.format(c)))
            for c in fields
        )
        frame, found = _set_aside(frame, nul)
        rejects += found
    if lossy and values:
        broken = pl.any_horizontal(pl.col(c).str.contains("\ufffd", literal=True) for c in values)
        reason = pl.when(broken).then(pl.lit("the line is not UTF-8 text: save the file as UTF-8"))
        frame, found = _set_aside(frame, reason)
        rejects += found
    rejects.sort(key=lambda r: r.line)
    note = _why_empty(blob, fmt) if frame.height == 0 and not rejects else None
    return RawFeed(frame=frame, rejects=rejects, absent=absent, note=note)


def decode(blob: bytes) -> bytes:
    """Return a file's bytes as UTF-8 with `\\n` line ends, or say why it is no text file.

    UTF-16 with its byte-order mark is re-encoded; a UTF-8 BOM is dropped; CR-only line
    ends (Excel for Mac) become newlines. Bytes that are not UTF-8 are left for the lines
    holding them to be rejected one by one.
    """
    if blob.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FeedFileError("the file is UTF-32 text: save it as UTF-8")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if blob.startswith(bom):
            try:
                blob = blob[len(bom) :].decode(codec).encode("utf-8")
            except UnicodeDecodeError as e:
                raise FeedFileError(
                    f"the file starts as UTF-16 text but byte {e.start + len(bom)} is not"
                    " UTF-16: save it as UTF-8"
                ) from e
            break
    else:
        if blob.startswith(codecs.BOM_UTF8):  # spreadsheet exports often start with one
            blob = blob[len(codecs.BOM_UTF8) :]
        for magic, what in _MAGIC.items():
            if blob.startswith(magic):
                raise FeedFileError(f"the file is {what}, not text: {EXPORT_HINT}")
        head = blob[:4096]
        if head and head.count(0) * 4 > len(head):
            # Text with a stray NUL has few; UTF-16 of Latin text has one in every other byte.
            if max(head[0::2].count(0), head[1::2].count(0)) * 10 > len(head) * 4:
                raise FeedFileError(
                    "the file is UTF-16 text without a byte-order mark: save it as UTF-8"
                    " (or as UTF-16 with its byte-order mark)"
                )
            raise FeedFileError(f"the file is binary, not text: {EXPORT_HINT}")
        if (len(head) - len(head.translate(None, delete=_CONTROL))) * 10 > len(head):
            raise FeedFileError(f"the file is binary, not text: {EXPORT_HINT}")
    if b"\r" in blob and b"\n" not in blob:
        blob = blob.replace(b"\r", b"\n")
    return blob


def _set_aside(frame: pl.DataFrame, reason: pl.Expr) -> tuple[pl.DataFrame, list[Reject]]:
    """Split off the rows for which `reason` is not null, as rejects with that reason."""
    checked = frame.with_columns(reason.alias("__reason"))
    bad = checked["__reason"].is_not_null()
    if not bad.any():
        return frame, []
    reasons = checked["__reason"].filter(bad)
    rejects = [
        Reject(line=line, raw=raw, reason=why)
        for (line, raw), why in zip(
            _split_line(frame.filter(bad).iter_rows(named=True)), reasons, strict=True
        )
    ]
    return frame.filter(~bad), rejects


def _why_empty(blob: bytes, fmt: str) -> str:
    """Say why a file gave no row; refuse one whose text did not become a single record."""
    if not blob.strip():
        return "the file is empty"
    if fmt == "ndjson":  # a line that is no JSON object is a reject, so this is not reached
        raise FeedFileError("no record could be read from the file: each line must be one {...}")
    rest = blob.split(b"\n", 1)[1] if b"\n" in blob else b""
    if not rest.strip():
        return "the file has a header but no rows"
    if not rest.translate(None, delete=b' \t\r\n,"').strip():
        return "the lines after the header hold no values: there is nothing to load"
    raise FeedFileError(
        "the file has text after its header but no record could be read from it:"
        " check that it is comma-separated with one record per line"
    )


def _split_line(rows: Iterable[dict]) -> Iterable[tuple[int, dict[str, str | None]]]:
    for row in rows:
        line = row.pop("line")
        yield line, row


def _read_csv(
    blob: bytes, fields: Sequence[str], required: Sequence[str], lossy: bool
) -> tuple[pl.DataFrame, list[Reject], frozenset[str]]:
    if not blob.strip():
        return _empty(fields), [], frozenset()
    first = blob.lstrip(b"\n").split(b"\n", 1)[0]
    _check_header(first)
    # The CSV reader keeps one of two columns of the same name and renames the other aside,
    # so the file would load with one of them ignored: refuse it, naming the column.
    _check_names(next(csv.reader([first.decode("utf-8").rstrip("\r")]), []))
    try:
        frame = pl.read_csv(
            io.BytesIO(blob),
            infer_schema=False,
            encoding="utf8-lossy" if lossy else "utf8",
            raise_if_empty=False,
        )
        rejects: list[Reject] = []
        header_lines = 1 + sum(c.count("\n") for c in frame.columns)
        frame = _normalise_header(frame)
        lines = blob.count(b"\n") + (not blob.endswith(b"\n"))
        if lines == header_lines + frame.height:
            frame = frame.with_row_index("line", offset=header_lines + 1)
        else:
            # A quoted value spans lines: each record starts after the newlines before it.
            span = 1 + pl.sum_horizontal(
                pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in frame.columns
            )
            line = (span.cum_sum() - span + header_lines + 1).cast(pl.UInt32)
            frame = frame.with_columns(line.alias("line"))
        # A blank line reads as a record of nulls (or of one blank value); it is no record.
        first, *others = [c for c in frame.columns if c != "line"]
        blank = pl.col(first).is_null() | (pl.col(first).str.strip_chars() == "")
        frame = frame.filter(~pl.all_horizontal(blank, *(pl.col(c).is_null() for c in others)))
    except pl.exceptions.PolarsError:
        # Rows with more values than the header: the careful reader finds and rejects them.
        frame, rejects = _read_csv_slowly(blob.decode("utf-8", errors="replace"))
    absent = frozenset(name for name in fields if name not in frame.columns)
    lacking = [name for name in required if name in absent]
    if lacking:
        raise MissingColumns(
            f"the header has no {', '.join(lacking)} column{'s' if len(lacking) > 1 else ''}"
            f" (it names {', '.join(c for c in frame.columns if c != 'line')})",
            [c for c in frame.columns if c != "line"],
        )
    return frame, rejects, absent


def _check_header(first: bytes) -> None:
    """Refuse a file whose header shows it is not comma-separated UTF-8 text."""
    try:
        header = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FeedFileError(
            f"the header line is not UTF-8 text (byte {e.start + 1} is not): save the file as UTF-8"
        ) from e
    if "," not in header:
        for separator, name in _SEPARATORS.items():
            if separator in header:
                raise FeedFileError(
                    f"the file is separated by {name}, not by commas: export it"
                    " comma-separated (CSV)"
                )


def _check_names(header: Sequence[str]) -> list[str]:
    """Return the header's column names as matched (trimmed, lower case), each named once."""
    names = [c.strip().lower() for c in header]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise FeedFileError(f"the CSV header names {', '.join(twice)} more than once")
    return names


def _normalise_header(frame: pl.DataFrame) -> pl.DataFrame:
    names = _check_names(frame.columns)
    return frame.rename(dict(zip(frame.columns, names, strict=True)))


def _read_csv_slowly(text: str) -> tuple[pl.DataFrame, list[Reject]]:
    """Read CSV record by record (Python's csv module) to find the malformed records."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return _empty(()), []
        header = _check_names(header)
        width = len(header)
        columns: list[list[str | None]] = [[] for _ in header]
        lines: list[int] = []
        rejects: list[Reject] = []
        start = reader.line_num + 1
        for record in reader:
            if len(record) > width:
                rejects.append(
                    Reject(
                        line=start,
                        raw={"values": json.dumps(record, ensure_ascii=False)[:MAX_RAW_TEXT]},
                        reason=f"the line has {len(record)} values but the header names {width}"
                        " columns: quote values that contain commas",
                    )
                )
            elif any(value.strip() for value in record):  # blank lines are no records
                lines.append(start)
                for i, column in enumerate(columns):
                    column.append(record[i] if i < len(record) else None)
            start = reader.line_num + 1
    except csv.Error as e:
        raise FeedFileError(f"not a readable CSV file: {e} (near line {reader.line_num})") from e
    frame = pl.DataFrame(
        {"line": pl.Series(lines, dtype=pl.UInt32)}
        | {
            name: pl.Series(values, dtype=pl.String)
            for name, values in zip(header, columns, strict=True)
        }
    )
    return frame, rejects


def _read_ndjson(blob: bytes, fields: Sequence[str]) -> tuple[pl.DataFrame, list[Reject]]:
    # The schema makes every value text as written: 1 → "1", 55.5 → "55.5", {..} → its JSON.
    schema = dict.fromkeys(fields, pl.String)
    body = blob.rstrip()
    if not body:
        return _empty(fields), []
    try:
        # The common case: one record per line, numbered as they come (as many records as
        # lines means no blank line was skipped).
        frame = pl.read_ndjson(io.BytesIO(body), schema=schema)
        if frame.height == body.count(b"\n") + 1:
            return frame.with_row_index("line", offset=1), []
    except pl.exceptions.PolarsError:
        pass
    # Blank lines to skip or broken lines to find: look at each line.
    text = body.decode("utf-8", errors="replace")
    lines = pl.DataFrame({"text": text.split("\n")}).with_row_index("line", offset=1)
    lines = lines.filter(pl.col("text").str.strip_chars() != "")
    try:
        frame = _ndjson_lines(lines, schema)
        if frame.height == lines.height:
            return frame, []
    except pl.exceptions.PolarsError:
        pass
    good: list[int] = []
    rejects: list[Reject] = []
    for line, raw_text in lines.iter_rows():
        try:
            value = json.loads(raw_text)
        except json.JSONDecodeError as e:
            reason = f"the line is not valid JSON: {e.msg} at column {e.colno}"
        else:
            if isinstance(value, dict):
                good.append(line)
                continue
            reason = "the line is not a JSON object: each line must be one {...} record"
        rejects.append(Reject(line=line, raw={"text": raw_text[:MAX_RAW_TEXT]}, reason=reason))
    if not good:
        # Not one record: this is no NDJSON file (a CSV under the wrong name, say).
        first = rejects[0]
        raise FeedFileError(
            f"not an NDJSON file: no line is a JSON object (line {first.line}: {first.reason})"
        )
    return _ndjson_lines(lines.filter(pl.col("line").is_in(good)), schema), rejects


def _ndjson_lines(lines: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read the `text` of each row as one JSON record, keeping its `line`."""
    if lines.height == 0:
        return _empty(list(schema))
    body = "\n".join(lines["text"].to_list()).encode()
    return pl.read_ndjson(io.BytesIO(body), schema=schema).with_columns(lines["line"])


def _empty(fields: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(
        schema={"line": pl.UInt32} | dict.fromkeys(fields, pl.String),
    )


# --- typing -----------------------------------------------------------------------------------


def text(name: str) -> pl.Expr:
    """The value with surrounding spaces removed; an empty value is null."""
    value = pl.col(name).str.strip_chars()
    return pl.when(value == "").then(None).otherwise(value).alias(name)


def lowered(name: str) -> pl.Expr:
    """The value as text in lower case (event names)."""
    return text(name).str.to_lowercase().alias(name)


def code(name: str) -> pl.Expr:
    """A location code: upper case, no surrounding spaces."""
    return text(name).str.to_uppercase().alias(name)


def plate(name: str, known: Iterable[str] = ()) -> pl.Expr:
    """A plate as the fleet stores it: upper case, inner spaces collapsed to one.

    A plate written without its spaces or with hyphens (`BAB1234`, `B-AB-1234`) becomes the
    fleet's plate when, letters and digits alone, it is exactly one of the `known` plates.
    """
    spaced = text(name).str.replace_all(r"\s+", " ").str.to_uppercase()
    unique = {key: found[0] for key, found in _by_key(known, _compact).items() if len(found) == 1}
    if not unique:
        return spaced.alias(name)
    return (
        pl.when(spaced.is_in(sorted(known)))
        .then(spaced)
        .otherwise(_compact_expr(spaced).replace_strict(unique, default=spaced))
        .alias(name)
    )


def integer(name: str) -> pl.Expr:
    """The value as a whole number, or null when it is not one (`typed_name`)."""
    return text(name).cast(pl.Int64, strict=False).alias(typed_name(name))


def number(name: str) -> pl.Expr:
    """The value as a finite number, or null when it is not one (`typed_name`)."""
    value = text(name).cast(pl.Float64, strict=False)
    return pl.when(value.is_finite()).then(value).alias(typed_name(name))


def time(name: str) -> pl.Expr:
    """The value as a UTC time, or null unless it is ISO 8601 with its offset (`typed_name`).

    The format is fixed here rather than guessed per column: a guess taken from the first
    value would read a naive time as UTC and turn offset-bearing rows into errors.
    """
    value = text(name)
    parsed = pl.coalesce(
        value.str.to_datetime(f"%Y-%m-%d{sep}%H:%M{sec}%#z", strict=False, time_unit="us")
        for sep in ("T", " ")
        for sec in ("", ":%S%.f")
    )
    # The pattern decides what is a time; chrono alone would also take "2026-1-1T1:00+01".
    return (
        pl.when(value.str.contains(_TIME_RE))
        .then(parsed.dt.convert_time_zone("UTC"))
        .cast(_UTC)
        .alias(typed_name(name))
    )


def typed_name(name: str) -> str:
    """The column holding a field's typed value (the field's own column stays text)."""
    return f"{name}__typed"


# --- checks (each a polars expression giving a reason, or null when the row passes) ----------


def missing(names: Iterable[str], absent: frozenset[str] = frozenset()) -> list[pl.Expr]:
    """One check per required field: the value must be there."""
    return [
        pl.when(pl.col(c).is_null()).then(
            pl.lit(
                f"{c} is missing: the file has no {c} column" if c in absent else f"{c} is missing"
            )
        )
        for c in names
    ]


def too_long(names: Iterable[str]) -> list[pl.Expr]:
    """One check per text field: a value longer than its `MAX_LENGTHS` limit is refused."""
    return [
        pl.when(pl.col(name).str.len_chars() > MAX_LENGTHS[name]).then(
            pl.format(
                f"{name} is longer than {MAX_LENGTHS[name]:,} characters (it has {{}}): shorten it",
                pl.col(name).str.len_chars(),
            )
        )
        for name in names
    ]


def whole_number(name: str, minimum: int, what: str | None = None) -> pl.Expr:
    """A given value must be a whole number of at least `minimum`."""
    typed = pl.col(typed_name(name))
    return pl.when(pl.col(name).is_not_null() & (typed.is_null() | (typed < minimum))).then(
        pl.lit(what or f"{name} must be a whole number of at least {minimum}")
    )


def number_between(name: str, low: float, high: float) -> pl.Expr:
    """A given value must be a number from `low` to `high`."""
    typed = pl.col(typed_name(name))
    return pl.when(
        pl.col(name).is_not_null() & (typed.is_null() | (typed < low) | (typed > high))
    ).then(pl.lit(f"{name} must be a number from {low:g} to {high:g}"))


def one_of(name: str, values: Sequence[str]) -> pl.Expr:
    """A given value must be one of `values`."""
    return pl.when(pl.col(name).is_not_null() & ~pl.col(name).is_in(list(values))).then(
        pl.lit(f"{name} must be one of {', '.join(values)}")
    )


def valid_time(name: str) -> pl.Expr:
    """A given value must be a time with its offset; the reason says what is wrong with it."""
    given = pl.col(name)
    prefix = f"{name} must be an ISO 8601 time with its UTC offset, like {TIME_EXAMPLE}"
    return pl.when(given.is_not_null() & pl.col(typed_name(name)).is_null()).then(
        pl.when(given.str.contains(_NAIVE_RE))
        # The same wall clock is a different moment at each of our lots.
        .then(pl.lit(f"{prefix} (this one has no offset)"))
        .otherwise(pl.lit(f"{prefix} (this one is not a valid time)"))
    )


def plausible(
    names: Iterable[str], now: datetime | None, window: TimeWindow | None
) -> list[pl.Expr]:
    """One check per time: a given time must lie within `window` around `now` (default: now)."""
    window = window or TimeWindow()
    # In UTC like the parsed times: polars compares only times of the same zone.
    at = (now or datetime.now(UTC)).astimezone(UTC)
    low, high = at - window.back, at + window.ahead
    checks = []
    for name in names:
        typed = pl.col(typed_name(name))
        checks.append(
            pl.when(typed < low)
            .then(pl.format(f"{name} {{}} is more than {window.back.days} days before now: check"
                            " the year", pl.col(name)))
            .when(typed > high)
            .then(pl.format(f"{name} {{}} is more than {window.ahead.days} days after now: check"
                            " the year", pl.col(name)))
        )  # fmt: skip
    return checks


def known(name: str, values: set[str], what: str | None = None) -> pl.Expr:
    """A given value must be one of the fleet's (plates, location codes)."""
    return pl.when(pl.col(name).is_not_null() & ~pl.col(name).is_in(sorted(values))).then(
        pl.lit(what or f"unknown {name}")
    )


def known_plate(name: str, known: set[str]) -> pl.Expr:
    """A given plate must be the fleet's; the reason names it and any look-alike vehicle.

    Apply to the output of `plate(name, known)`: what is still unknown then is either a
    plate several vehicles fold to, or a misread one (0/O, 1/I, 8/B, ...) for which the
    engine's look-alike folding (`db.lookup.plate_key`) may name the car meant.
    """
    value = pl.col(name)
    compact = _compact_expr(value)
    shown = pl.format("'{}'", value)
    reason = pl.format("unknown plate {}", shown)
    several = {k: " or ".join(f"'{p}'" for p in v) for k, v in _by_key(known, _compact).items()}
    several = {k: v for k, v in several.items() if " or " in v}
    like = {k: " or ".join(f"'{p}'" for p in v[:3]) for k, v in _by_key(known, plate_key).items()}
    if like:
        folded = compact.str.replace_many(list(_LOOKALIKE), list(_LOOKALIKE.values()))
        meant = folded.replace_strict(like, default=None)
        reason = (
            pl.when(meant.is_not_null())
            .then(pl.format("unknown plate {}; did you mean {}?", shown, meant))
            .otherwise(reason)
        )
    if several:
        could = compact.replace_strict(several, default=None)
        reason = (
            pl.when(could.is_not_null())
            .then(pl.format("plate {} could be {}: write it with the fleet's spaces", shown, could))
            .otherwise(reason)
        )
    return pl.when(value.is_not_null() & ~value.is_in(sorted(known))).then(reason)


def _compact(plate_: str) -> str:
    """A plate's letters and digits alone, upper case: how spacing and hyphens are ignored."""
    return "".join(c for c in plate_.upper() if c.isascii() and c.isalnum())


def _compact_expr(value: pl.Expr) -> pl.Expr:
    return value.str.to_uppercase().str.replace_all(r"[^A-Z0-9]", "")


def _by_key(plates: Iterable[str], key: Callable[[str], str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for p in sorted(plates):
        found.setdefault(key(p), []).append(p)
    return found


# The characters the engine's plate folding replaces, derived from it so the two agree.
_LOOKALIKE = {c: plate_key(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if plate_key(c) != c}


def required_for(name: str, event: str) -> pl.Expr:
    """A field that only some events need."""
    return pl.when((pl.col("event") == event) & pl.col(name).is_null()).then(
        pl.lit(f"{name} is missing (needed when event is {event})")
    )


def later(name: str, than: str, reason: str, *, or_equal: bool = False) -> pl.Expr:
    """When both times are given, `name` must come after `than` (or at it, if allowed)."""
    a, b = pl.col(typed_name(name)), pl.col(typed_name(than))
    bad = a < b if or_equal else a <= b
    return pl.when(bad.fill_null(False)).then(pl.lit(reason))


def within(name: str, since: str, longest: timedelta, reason: str) -> pl.Expr:
    """When both times are given, `name` may come at most `longest` after `since`."""
    a, b = pl.col(typed_name(name)), pl.col(typed_name(since))
    return pl.when((a - b > longest).fill_null(False)).then(pl.lit(reason))


def require_aware(now: datetime | None, name: str = "now") -> datetime | None:
    """Refuse a naive `now`: the checks compare it with offset-bearing times."""
    if now is not None and (now.tzinfo is None or now.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware, e.g. datetime.now(UTC)")
    return now


# --- the result -------------------------------------------------------------------------------


def finish(
    raw: RawFeed,
    typed: pl.DataFrame,
    checks: Sequence[pl.Expr],
    output: Sequence[str | pl.Expr],
) -> ParsedFeed:
    """Split typed rows into good rows (`output` columns) and rejects with the first reason.

    `typed` must be `raw.frame` with columns added or replaced, row for row.
    """
    # The first failing check is the reason: it is the one to fix first.
    reason = pl.coalesce(checks) if checks else pl.lit(None, dtype=pl.String)
    checked = typed.with_columns(reason.alias("__reason"))
    bad = checked["__reason"].is_not_null()
    rejects = list(raw.rejects)
    if bad.any():
        reasons = checked["__reason"].filter(bad)
        bad_rows = raw.frame.filter(bad).iter_rows(named=True)
        rejects += [
            Reject(line=line, raw=values, reason=why)
            for (line, values), why in zip(_split_line(bad_rows), reasons, strict=True)
        ]
        rejects.sort(key=lambda r: r.line)
    rows = checked.filter(~bad).select(output)
    return ParsedFeed(rows=rows, rejects=rejects, note=raw.note)
