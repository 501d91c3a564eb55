"""A keyed table whose rows are patched cell by cell in the browser, for live views.

Why not Tabulator here: Panel's Tabulator answers every patch by handing Tabulator the whole
page of data again (`setData`), so each pushed change costs every open browser a full redraw
of the table. With twenty boards on one tablet rack's worth of hardware that drawing, not the
server, was the latency (docs/benchmarks.md). This table keeps every row on the server, sends
the browser only the page it shows, and then only the cells that changed, which the browser
writes into the existing cells and lights up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import param
from panel.custom import JSComponent

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_TAGS = re.compile(r"<[^>]+>")
_SQUEEZE = re.compile(r"[\s\-]+")

Row = dict[str, str]


def squeeze(text: str) -> str:
    """Text as staff type it into a filter: no spaces or dashes, any case ("bxs" = "B XS")."""
    return _SQUEEZE.sub("", text).casefold()


class LiveTable(JSComponent):
    """Rows keyed by id; `update` sends only the changed cells of rows the browser shows.

    Values are strings. Columns named in `html_columns` hold markup the server built from its
    own fixed pieces (status badges); every other cell is written as text, so a customer name
    can never become markup. Paging, sorting and the text filter run on the server.
    """

    columns = param.List(default=[], doc="[field, label] pairs, in display order.")
    html_columns = param.List(default=[], doc="Fields whose values are trusted markup.")
    numeric_columns = param.List(default=[], doc="Fields shown right-aligned (counts).")
    rows = param.List(default=[], doc="The shown page: [key, {field: value}] pairs.")
    page = param.Integer(default=1, bounds=(1, None))
    pages = param.Integer(default=1)
    total = param.Integer(default=0)
    page_size = param.Integer(default=0, doc="Rows per page; 0 shows every row.")
    noun = param.String(default="rows", doc="What a row is, for the pager: '120 vehicles'.")
    filter_field = param.String(default="", doc="The field with a filter box, or ''.")
    filter_text = param.String(default="")
    sort = param.String(default="", doc="The field sorted on, or '' for the given order.")
    descending = param.Boolean(default=False)

    _esm = ASSETS / "livetable.js"
    _stylesheets: ClassVar[list[str]] = [(ASSETS / "livetable.css").read_text()]

    def __init__(
        self,
        *,
        sort_keys: Mapping[str, Callable[[Hashable], Any]] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self._data: dict[Hashable, Row] = {}
        self._order: list[Hashable] = []
        self._shown: set[Hashable] = set()
        # A column whose text does not sort the way people read it (times) names its own key.
        self._sort_keys = dict(sort_keys or {})

    def load(self, rows: Iterable[tuple[Hashable, Row]]) -> None:
        """Replace every row (in the order given) and show the current page again."""
        self._data = dict(rows)
        self._order = list(self._data)
        self._refresh()

    def update(self, rows: Iterable[tuple[Hashable, Row]]) -> list[Hashable]:
        """Store new values; patch the shown rows' changed cells; return the keys changed.

        New keys are appended. Shown rows keep their places even when a change would sort
        them elsewhere: a row that jumps away under a finger is worse than a stale order.
        """
        patch: list[list[Any]] = []
        changed: list[Hashable] = []
        added = False
        for key, values in rows:
            old = self._data.get(key)
            if old is None:
                self._data[key] = dict(values)
                self._order.append(key)
                added = True
                continue
            cells = {f: v for f, v in values.items() if old.get(f) != v}
            if not cells:
                continue
            old.update(cells)
            changed.append(key)
            if key in self._shown:
                patch.append([key, cells])
        if patch:
            self._send_msg({"patch": patch})
        if added:
            self.pages, self.total = self._paging(len(self._view()))
            if len(self._shown) < (self.page_size or math.inf):
                self._refresh()
        return changed

    def remove(self, keys: Iterable[Hashable]) -> None:
        """Drop rows (a lot that no longer has any vehicle) and show the page again."""
        gone = set(keys) & set(self._data)
        if not gone:
            return
        for key in gone:
            del self._data[key]
        self._order = [k for k in self._order if k not in gone]
        self._refresh()

    def keys(self) -> list[Hashable]:
        """Every row's key, in the given order."""
        return list(self._order)

    def shown(self) -> list[Hashable]:
        """The keys of the rows on the current page, as shown."""
        return [key for key, _ in self.rows]

    def _view(self) -> list[Hashable]:
        keys = self._order
        if self.filter_field and self.filter_text.strip():
            wanted = squeeze(self.filter_text)
            field = self.filter_field
            keys = [k for k in keys if wanted in squeeze(self._data[k].get(field, ""))]
        if self.sort:
            keys = sorted(keys, key=self._sort_key(self.sort), reverse=self.descending)
        return keys

    def _sort_key(self, field: str) -> Callable[[Hashable], Any]:
        if field in self._sort_keys:
            return self._sort_keys[field]
        return lambda k: _TAGS.sub("", self._data[k].get(field, "")).casefold()

    def _paging(self, count: int) -> tuple[int, int]:
        return (max(1, math.ceil(count / self.page_size)) if self.page_size else 1), count

    @param.depends("page", "filter_text", "sort", "descending", watch=True)
    def _refresh(self) -> None:
        keys = self._view()
        pages, total = self._paging(len(keys))
        if self.page > pages:  # the filter left fewer pages: this watcher runs again
            self.page = pages
            return
        if self.page_size:
            keys = keys[(self.page - 1) * self.page_size : self.page * self.page_size]
        self._shown = set(keys)
        self.param.update(pages=pages, total=total)
        self.rows = [[key, dict(self._data[key])] for key in keys]
