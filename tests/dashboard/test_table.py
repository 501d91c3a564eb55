"""LiveTable: the server keeps every row, sends a page, then only the cells that changed."""

from __future__ import annotations

from dashboard.components.table import LiveTable, squeeze


def _table(n: int = 7, **params) -> tuple[LiveTable, list[dict]]:
    table = LiveTable(columns=[["plate", "plate"], ["status", "status"]], **params)
    sent: list[dict] = []
    table._send_msg = sent.append  # what would travel to the browser
    table.load((i, {"plate": f"B X {i}", "status": "available"}) for i in range(1, n + 1))
    return table, sent


def test_pages_hold_page_size_rows_and_a_late_page_is_clamped():
    table, _ = _table(7, page_size=3, filter_field="plate")
    assert table.shown() == [1, 2, 3] and table.pages == 3 and table.total == 7
    table.page = 3
    assert table.shown() == [7]
    table.filter_text = "x 1"  # one match: page 3 no longer exists
    assert table.page == 1 and table.shown() == [1] and table.total == 1


def test_a_change_sends_only_the_changed_cells_of_shown_rows():
    table, sent = _table(7, page_size=3)
    changed = table.update(
        [
            (2, {"plate": "B X 2", "status": "cleaning"}),  # shown: one cell travels
            (5, {"plate": "B X 5", "status": "rented"}),  # stored, not on this page
            (3, {"plate": "B X 3", "status": "available"}),  # nothing changed
        ]
    )
    assert changed == [2, 5]
    assert sent == [{"patch": [[2, {"status": "cleaning"}]]}]
    table.page = 2  # the stored change shows when its page is opened
    assert dict(table.rows)[5]["status"] == "rented"


def test_rows_keep_their_places_when_a_change_would_sort_them_elsewhere():
    table, _ = _table(3, sort="status")
    table.update([(1, {"plate": "B X 1", "status": "rented"})])
    assert table.shown() == [1, 2, 3]
    table.descending = True  # sorting again does move it
    assert table.shown()[0] == 1


def test_new_rows_are_appended_and_removed_rows_leave():
    table, sent = _table(2)
    table.update([(9, {"plate": "B X 9", "status": "available"})])
    assert table.shown() == [1, 2, 9] and table.total == 3 and sent == []
    table.remove([1, 42])
    assert table.shown() == [2, 9]


def test_filter_ignores_spaces_dashes_and_case():
    table, _ = _table(12)
    table.filter_field = "plate"
    table.filter_text = "bx1"
    assert table.shown() == [1, 10, 11, 12]
    assert squeeze("B-XS 85") == "bxs85"


def test_a_sort_key_orders_a_column_by_its_value_not_its_text():
    order = {1: 3.0, 2: 1.0, 3: 2.0}
    table, _ = _table(3, sort_keys={"status": order.__getitem__})
    table.sort = "status"
    assert table.shown() == [2, 3, 1]
