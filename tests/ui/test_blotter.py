"""The Orders dock (offscreen, real widgets): it renders BlotterView snapshots with keyed rows that keep the trader's
selection; headers sit over their cells; every number fits at the dock's default width; order ids are whole where
it matters (tooltip, copy); a working order can be modified or cancelled from it; history survives a restart."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from app.market.instruments import Instrument
from app.models import Fill, Liquidity, Order, OrderRequest, OrderStatus, OrderType, Side
from app.trading.journal import HistoryRecords, Journal
from app.trading.restore import restore
from app.ui.blotter import Blotter, DeclaredTableModel, fill_row_columns, table_view, working_columns
from app.view.blotter import BlotterView, DeskBlotter, TradeHistory, blotter_view, fill_row, order_row
from tests.conftest import wait_until
from tests.test_view_blotter import INSTRUMENTS, NOW, trade_at, xrp_desk

UTC = dt.UTC
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"))
LONG_ID = "x-AITT-1723111200000-BTCUSDT-000042-entry"


def order(oid: str, price: str = "60000", status: OrderStatus = OrderStatus.NEW, ms: int = NOW) -> Order:
    req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.01"), limit_price=D(price))
    return Order(oid, req, status, created_ms=ms)


def rows(*orders: Order):
    return [order_row(o, BTC, NOW, UTC) for o in orders]


def ids(model: DeclaredTableModel) -> list[str]:
    return [model.row(i).key for i in range(model.rowCount())]


def selected_key(view) -> str | None:
    sel = view.selectionModel().selectedRows()
    return view.model().row(sel[0].row()).key if sel else None


def cell(model: DeclaredTableModel, row: int, title: str) -> str:
    return model.data(model.index(row, [c.title for c in model.columns].index(title)))


class Signals:
    def __init__(self, model: QtCore.QAbstractItemModel) -> None:
        self.resets = self.inserted = self.removed = 0
        self.changed: list[int] = []
        model.modelReset.connect(lambda: setattr(self, "resets", self.resets + 1))
        model.rowsInserted.connect(lambda _p, a, b: setattr(self, "inserted", self.inserted + b - a + 1))
        model.rowsRemoved.connect(lambda _p, a, b: setattr(self, "removed", self.removed + b - a + 1))
        model.dataChanged.connect(lambda tl, _br, _roles=(): self.changed.append(tl.row()))


def snapshot(working=(), orders=(), fills=(), history: TradeHistory | None = None) -> BlotterView:
    return blotter_view(working=working, orders=orders, fills=fills, positions=(), mark=lambda s: None,
                        instruments=INSTRUMENTS, now_ms=NOW, history=history, tz=UTC)


def coin_fill(fid: str = "F1", oid: str = "P1796533689487-4") -> Fill:
    return Fill(fid, oid, "BTCUSDT", Side.BUY, D("0.00123"), D("61234.56"), D("0.00001"), Liquidity.TAKER, NOW,
                fee_asset="BTC")


# ----- keyed rows -------------------------------------------------------------------------------------------------
def test_a_selected_order_stays_selected_when_a_row_changes_and_one_is_added(qtbot):
    model = DeclaredTableModel(working_columns())
    view = table_view(model)
    qtbot.addWidget(view)
    a, b, c = order("A"), order("B", "61000"), order("C", "62000")
    model.set_rows(rows(c, b, a))  # newest first, as the blotter shows them
    view.show()
    view.selectRow(1)
    assert selected_key(view) == "B"
    signals = Signals(model)

    b.status, b.filled_qty = OrderStatus.PARTIALLY_FILLED, D("0.004")
    model.set_rows(rows(order("D", "63000"), c, b, a))

    assert ids(model) == ["D", "C", "B", "A"]
    assert selected_key(view) == "B", "the trader's selection followed its order"
    assert signals.resets == 0 and signals.inserted == 1 and signals.removed == 0
    assert signals.changed == [2], "only the changed row is redrawn"
    assert cell(model, 2, "Status") == "PARTIAL" and cell(model, 2, "Filled") == "0.00400"


def test_rows_that_leave_are_removed_and_the_selection_stays_on_its_row(qtbot):
    model = DeclaredTableModel(working_columns())
    view = table_view(model)
    qtbot.addWidget(view)
    r = rows(*(order(x) for x in "EDCBA"))
    model.set_rows(r)
    view.show()
    view.selectRow(2)  # C
    signals = Signals(model)
    model.set_rows([r[0], r[2], r[4]])  # D and B were filled or cancelled and left the working list
    assert ids(model) == ["E", "C", "A"] and selected_key(view) == "C"
    assert signals.resets == 0 and signals.removed == 2 and signals.changed == []
    model.set_rows([r[4], r[2], r[0]])  # a re-sort moves rows; the selection follows
    assert ids(model) == ["A", "C", "E"] and selected_key(view) == "C"
    model.set_rows([r[4], r[4], r[0]])  # a key twice is one row
    assert ids(model) == ["A", "E"]


# ----- columns ----------------------------------------------------------------------------------------------------
def test_every_header_is_aligned_as_its_cells(qtbot):
    # The defect: headers were centred and cells right- or left-aligned, so in Fills "TAKER" (left-aligned at the
    # start of the wide last column) sat under the centred "Fee" title of the column before it.
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.render(snapshot(working=[order("W1")], orders=[order("W1")], fills=[coin_fill()]))
    for model in (blotter.working, blotter.orders, blotter.fills, blotter.positions, blotter.closed, blotter.days):
        for n, col in enumerate(model.columns):
            head = model.headerData(n, QtCore.Qt.Orientation.Horizontal, QtCore.Qt.ItemDataRole.TextAlignmentRole)
            assert head is not None, f"{col.title}: header centred"
            if model.rowCount():
                cell_align = model.data(model.index(0, n), QtCore.Qt.ItemDataRole.TextAlignmentRole)
                assert head == cell_align, col.title
    titles = [c.title for c in blotter.fills.columns]
    assert titles.index("Liq.") == titles.index("Fee") + 1
    assert cell(blotter.fills, 0, "Liq.") == "TAKER" and cell(blotter.fills, 0, "Fee") == "0.00001 BTC"


def test_every_fill_number_fits_at_the_default_orders_dock_width(qtbot):
    # The default Orders dock is about 700 px wide: a coin fee ("0.00001 BTC") was past its right edge.
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.resize(700, 230)
    blotter.show()
    blotter.render(snapshot(fills=[coin_fill()]))
    blotter.setCurrentWidget(blotter.fills_view)
    qtbot.waitExposed(blotter)
    view = blotter.fills_view
    header, fm = view.horizontalHeader(), view.fontMetrics()
    width = view.viewport().width()
    for n, col in enumerate(blotter.fills.columns):
        if col.is_id:
            continue  # the id column takes what is left (elided in the middle, whole in its tooltip)
        right = header.sectionViewportPosition(n) + header.sectionSize(n)
        assert right <= width, f"{col.title} ends at {right} px, past the {width} px table"
        text = cell(blotter.fills, 0, col.title)
        assert fm.horizontalAdvance(text) + 6 <= header.sectionSize(n), f"{col.title} {text!r} is cut"
    assert header.sectionResizeMode(0) is QtWidgets.QHeaderView.ResizeMode.Interactive  # the trader can resize


def test_an_order_id_is_whole_in_its_tooltip_and_copied_whole(qtbot):
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.resize(500, 200)
    blotter.show()
    blotter.render(snapshot(working=[order(LONG_ID)], orders=[order(LONG_ID)], fills=[coin_fill(oid=LONG_ID)]))
    for model, view in ((blotter.working, blotter.working_view), (blotter.fills, blotter.fills_view)):
        n = next(i for i, c in enumerate(model.columns) if c.title == "Order id")
        index = model.index(0, n)
        assert model.data(index) == LONG_ID  # the text is whole; the view elides it in the middle if narrow
        assert LONG_ID in model.data(index, QtCore.Qt.ItemDataRole.ToolTipRole)
        assert view.textElideMode() is QtCore.Qt.TextElideMode.ElideMiddle
    blotter.setCurrentWidget(blotter.fills_view)
    blotter.fills_view.setFocus()
    blotter.fills_view.selectRow(0)
    QtWidgets.QApplication.clipboard().clear()
    qtbot.keyClick(blotter.fills_view, QtCore.Qt.Key.Key_C, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert QtWidgets.QApplication.clipboard().text() == LONG_ID


# ----- what the trader asks ---------------------------------------------------------------------------------------
def test_a_working_order_is_modified_by_double_click_or_menu_and_cancelled_by_menu_or_delete(qtbot):
    blotter = Blotter()
    qtbot.addWidget(blotter)
    blotter.show()
    blotter.render(snapshot(working=[order("W2", ms=NOW), order("W1", ms=NOW - 5)]))
    modify, cancel = [], []
    blotter.modify_requested.connect(modify.append)
    blotter.cancel_requested.connect(cancel.append)
    view = blotter.working_view
    rect = view.visualRect(blotter.working.index(1, 0))
    qtbot.mouseClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())  # a double click's press
    qtbot.mouseDClick(view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert modify == ["W1"]
    assert blotter.selected_working_order().id == "W1" and blotter.selected_working_order_id() == "W1"
    menu = blotter.menu_for(view, blotter.working.row(0))
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert list(actions)[:2] == ["Modify…", "Cancel order"]
    actions["Modify…"].trigger()
    actions["Cancel order"].trigger()
    assert modify == ["W1", "W2"] and cancel == ["W2"]
    view.setFocus()
    view.selectRow(1)
    qtbot.keyClick(view, QtCore.Qt.Key.Key_Delete)  # the selected working order
    assert cancel == ["W2", "W1"]
    done = order_row(order("D1", status=OrderStatus.FILLED), BTC, NOW, UTC)
    assert "Modify…" not in [a.text() for a in blotter.menu_for(blotter.orders_view, done).actions()]


def test_the_blotter_renders_snapshots_and_shows_closed_positions_in_history(qtbot):
    h = TradeHistory.from_records(HistoryRecords(NOW - 86_400_000, {}, [
        Fill("F1", "O1", "BTCUSDT", Side.BUY, D("0.1"), D("60000"), D("0"), Liquidity.TAKER, NOW - 2000),
        Fill("F2", "O2", "BTCUSDT", Side.SELL, D("0.1"), D("60500"), D("0"), Liquidity.TAKER, NOW - 1000)], []))
    blotter = Blotter(source=lambda: snapshot(history=h))
    qtbot.addWidget(blotter)
    blotter.refresh()
    assert [blotter.tabText(i) for i in range(blotter.count())] == ["Working", "Orders", "Fills", "Positions",
                                                                     "History"]
    assert blotter.positions.rowCount() == 0 and blotter.closed.rowCount() == 1
    assert cell(blotter.closed, 0, "Realised") == "+50.00" and cell(blotter.closed, 0, "Side") == "LONG"
    assert cell(blotter.days, 0, "Realised") == "+50.00 USDT" and cell(blotter.symbols, 0, "Symbol") == "BTCUSDT"
    assert "+50.00 USDT" in blotter.history_line.text()


@pytest.mark.asyncio
async def test_after_a_restart_the_orders_dock_shows_the_journals_orders_fills_and_closed_position(qtbot,
                                                                                                  tmp_path: Path):
    path = tmp_path / "journal.sqlite3"
    desk = xrp_desk(path, NOW)
    try:
        trade_at(desk, 0.6, 1, NOW)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("100")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("100"), what="the buy filled")
        trade_at(desk, 0.62, 2, NOW + 1000)
        assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.SELL, OrderType.MARKET, D("100")))).ok
        await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the sell filled")
        ids_before = [o.id for o in reversed(desk.broker.orders)]
    finally:
        desk.close()
        desk.journal.close()
    with Journal(path) as j:
        restored = restore(j, starting_cash=D("1000"), symbols=["XRPUSDT"], daily_loss_limit=D("500"),
                           now_ms=NOW + 60_000)
    again = xrp_desk(path, NOW + 60_000)
    try:
        again.resume_from(restored)
        blotter = Blotter(source=DeskBlotter.load(again, tz=UTC).snapshot)  # as Blotter(desk), in UTC
        qtbot.addWidget(blotter)
        blotter.refresh()
    finally:
        again.journal.close()
    assert again.broker.orders == []  # nothing this run: all of it is the journal's
    assert ids(blotter.orders) == ids_before
    assert blotter.closed.rowCount() == 1 and cell(blotter.closed, 0, "Symbol") == "XRPUSDT"
    assert cell(blotter.closed, 0, "Entry") == "0.6000" and cell(blotter.closed, 0, "Qty") == "100.0"
    assert blotter.days.rowCount() == 1


def test_fill_columns_name_the_symbol_and_the_fee_asset():
    f = fill_row(Fill("F2", "O1", "ETHUSDT", Side.SELL, D("0.5"), D("3000"), D("1.5"), Liquidity.TAKER, NOW),
                 INSTRUMENTS.get("ETHUSDT"), NOW, "USDT", UTC)
    values = {c.title: c.value(f) for c in fill_row_columns()}
    assert values["Symbol"] == "ETHUSDT" and values["Fee"].endswith(" USDT") and values["Liq."] == "TAKER"


def test_the_history_tab_says_it_is_loading_until_the_journal_is_read(qtbot, tmp_path: Path, monkeypatch):
    import threading

    import app.view.blotter as blotter_module

    gate = threading.Event()
    real = blotter_module.read_history
    monkeypatch.setattr(blotter_module, "read_history", lambda *a, **k: gate.wait(10) and real(*a, **k))
    desk = xrp_desk(tmp_path / "journal.sqlite3", NOW)
    try:
        blotter = Blotter(desk)
        qtbot.addWidget(blotter)
        blotter.refresh()
        tab = blotter.indexOf(blotter.history)
        assert blotter.tabText(tab) == "History (loading…)"
        assert blotter.history_line.text() == "loading history…"
        gate.set()
        qtbot.waitUntil(lambda: (blotter.refresh(), blotter.tabText(tab) == "History")[1], timeout=10_000)
        assert blotter.history_line.text().startswith("realised since")
    finally:
        desk.journal.close()
