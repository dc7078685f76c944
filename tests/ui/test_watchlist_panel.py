"""The Watchlist dock's panel, offscreen: it paints the view's rows, updates them in place (the trader's selection and
the rows stay), colours changes with the theme, and a click or Enter on a row asks for that symbol."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from PySide6 import QtCore, QtGui

from app.market.instruments import Instrument, Instruments
from app.market.state import MarketData
from app.models import Quote, Side, Trade
from app.ui import theme
from app.ui.watchlist import COLUMNS, WatchlistPanel
from app.view.watchlist import PriceMemory, Watchlist, watchlist

SYMBOLS = ["BTCUSDT", "XRPUSDT", "ETHUSDT"]
INSTRUMENTS = Instruments.of(Instrument.from_steps("BTCUSDT", Decimal("0.01"), Decimal("0.00001")),
                             Instrument.from_steps("XRPUSDT", Decimal("0.0001"), Decimal("0.1")),
                             Instrument.from_steps("ETHUSDT", Decimal("0.01"), Decimal("0.0001")))


def snapshot(prices: dict[str, float], memory: PriceMemory, pending=()) -> Watchlist:
    market = MarketData(list(prices), capacity=10)
    for i, (s, p) in enumerate(prices.items()):
        market.apply([Trade(s, p, 1.0, Side.BUY, i, 1_700_000_000_000, 0), Quote(s, p, 1.0, p * 1.0001, 1.0, 1, 0, 0)])
    return watchlist(market, INSTRUMENTS, memory=memory, pending_symbols=pending, now_ns=0)


def col(title: str) -> int:
    return [c.title for c in COLUMNS].index(title)


def text(panel: WatchlistPanel, row: int, title: str) -> str:
    m = panel.model
    return m.data(m.index(row, col(title)))


def test_renders_every_row_with_its_numbers_right_aligned_and_coloured(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    memory = PriceMemory()
    snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory)
    panel.render(snapshot({"BTCUSDT": 61_200.0, "XRPUSDT": 0.594, "ETHUSDT": 3000.0}, memory, pending={"XRPUSDT"}))
    m = panel.model
    assert m.rowCount() == 3
    assert [text(panel, r, "Symbol") for r in range(3)] == SYMBOLS
    assert text(panel, 0, "Last") == "61,200.00" and text(panel, 1, "Last") == "0.5940"
    assert text(panel, 0, "Session") == "+2.00 %" and text(panel, 1, "Session") == "-1.00 %"
    idx = m.index(0, col("Last"))
    assert m.data(idx, QtCore.Qt.ItemDataRole.TextAlignmentRole) & QtCore.Qt.AlignmentFlag.AlignRight
    up = m.data(m.index(0, col("Session")), QtCore.Qt.ItemDataRole.ForegroundRole)
    down = m.data(m.index(1, col("Session")), QtCore.Qt.ItemDataRole.ForegroundRole)
    assert isinstance(up, QtGui.QBrush) and up.color() == QtGui.QColor(theme.current().up)
    assert down.color() == QtGui.QColor(theme.current().down)
    assert text(panel, 1, "") == "●" and text(panel, 0, "") == "", "the pending proposal's marker"
    assert "proposal" in m.data(m.index(1, col("")), QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "first trade" in m.data(m.index(0, col("Session")), QtCore.Qt.ItemDataRole.ToolTipRole)


def test_a_keyed_update_changes_cells_in_place_and_keeps_the_selection(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    memory = PriceMemory()
    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory))
    panel.show()
    panel.view.selectRow(1)
    resets, changed = [], []
    panel.model.modelReset.connect(lambda: resets.append(1))
    panel.model.dataChanged.connect(
        lambda tl, br, _roles=(): changed.extend((r, c) for r in range(tl.row(), br.row() + 1)
                                                 for c in range(tl.column(), br.column() + 1)))

    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.61, "ETHUSDT": 3000.0}, memory))

    assert resets == [], "the same symbols: no rebuild"
    assert {r for r, _ in changed} == {1}, "only XRP's row changed"
    cols = {c for _, c in changed}
    assert {col("Last"), col("Session")} <= cols, "its price and change are repainted"
    assert col("Symbol") not in cols and col("") not in cols, "not the cells that read the same"
    assert text(panel, 1, "Last") == "0.6100"
    assert [i.row() for i in panel.view.selectionModel().selectedRows()] == [1]
    # Other symbols: the rows are rebuilt
    panel.render(snapshot({"BTCUSDT": 60_000.0, "SOLUSDT": 150.0}, memory))
    assert resets == [1] and panel.model.rowCount() == 2 and text(panel, 1, "Symbol") == "SOLUSDT"


def test_a_click_or_enter_on_a_row_chooses_its_symbol_and_the_current_one_is_highlighted(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, PriceMemory()))
    panel.resize(520, 200)
    panel.show()
    qtbot.waitExposed(panel)
    chosen: list[str] = []
    panel.symbol_chosen.connect(chosen.append)

    rect = panel.view.visualRect(panel.model.index(1, col("Last")))
    qtbot.mouseClick(panel.view.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    assert chosen == ["XRPUSDT"]

    panel.view.setFocus()
    panel.view.setCurrentIndex(panel.model.index(2, 0))
    qtbot.keyClick(panel.view, QtCore.Qt.Key.Key_Return)
    assert chosen == ["XRPUSDT", "ETHUSDT"]

    panel.set_current("BTCUSDT")
    m = panel.model
    font = m.data(m.index(0, col("Symbol")), QtCore.Qt.ItemDataRole.FontRole)
    assert isinstance(font, QtGui.QFont) and font.bold()
    assert m.data(m.index(1, col("Symbol")), QtCore.Qt.ItemDataRole.FontRole) is None
    assert m.data(m.index(0, col("Symbol")), QtCore.Qt.ItemDataRole.BackgroundRole) is not None
    # The highlight survives a refresh, and is on no row for a symbol the list does not hold
    panel.render(snapshot({"BTCUSDT": 60_100.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, PriceMemory()))
    assert m.data(m.index(0, col("Symbol")), QtCore.Qt.ItemDataRole.FontRole).bold()
    panel.set_current("DOGEUSDT")
    assert all(m.data(m.index(r, col("Symbol")), QtCore.Qt.ItemDataRole.FontRole) is None for r in range(3))


def test_a_stale_symbol_is_muted_and_says_so(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    snap = snapshot({"BTCUSDT": 60_000.0}, PriceMemory())
    row = dataclasses.replace(snap.rows[0], stale=True, tooltip="stale: no trade for 3 min")
    panel.render(Watchlist((row,)))
    m = panel.model
    brush = m.data(m.index(0, col("Last")), QtCore.Qt.ItemDataRole.ForegroundRole)
    assert brush.color() == QtGui.QColor(theme.current().muted)
    assert "stale" in m.data(m.index(0, col("Symbol")), QtCore.Qt.ItemDataRole.ToolTipRole)


def _snapshot_with_spread(memory: PriceMemory) -> Watchlist:
    return snapshot({"BTCUSDT": 61_837.62, "XRPUSDT": 0.6159, "ETHUSDT": 3_021.55}, memory)


def test_one_spread_column_in_basis_points_with_the_price_spread_in_its_tooltip(qtbot):
    titles = [c.title for c in COLUMNS]
    assert titles.count("Spread") == 1 and "bps" not in titles
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    panel.render(_snapshot_with_spread(PriceMemory()))
    m = panel.model
    assert text(panel, 0, "Spread") == "1.0"  # bps, one decimal
    assert "bps" in m.headerData(col("Spread"), QtCore.Qt.Orientation.Horizontal, QtCore.Qt.ItemDataRole.ToolTipRole)
    assert "spread 6.18 USDT" in m.data(m.index(0, col("Spread")), QtCore.Qt.ItemDataRole.ToolTipRole)


def _fit(panel: WatchlistPanel, width: int, qtbot) -> dict[str, bool]:
    panel.resize(width, 200)
    panel.show()
    qtbot.waitExposed(panel)
    panel.render(_snapshot_with_spread(PriceMemory()))
    QtCore.QCoreApplication.processEvents()
    view = panel.view
    shown = {c.title: not view.isColumnHidden(i) for i, c in enumerate(COLUMNS)}
    used = sum(view.columnWidth(i) for i in range(len(COLUMNS)) if not view.isColumnHidden(i))
    assert used <= view.viewport().width(), (width, used, view.viewport().width())  # nothing behind a scrollbar
    assert not view.horizontalScrollBar().isVisible()
    for title in ("Symbol", "Last"):  # never cut: each at least as wide as its widest text
        i = col(title)
        assert view.columnWidth(i) >= view.sizeHintForColumn(i), title
    return shown


def test_the_watchlist_fits_its_dock_without_a_horizontal_scrollbar_hiding_whole_columns(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    wide = _fit(panel, 420, qtbot)
    assert all(wide.values())
    mid = _fit(panel, 260, qtbot)
    assert mid["Symbol"] and mid["Last"] and mid["Session"]
    # the least important go first, whole: Spread before 24 h
    assert not mid["Spread"] or mid["24 h"]
    narrow = _fit(panel, 150, qtbot)
    assert narrow["Symbol"] and narrow["Last"] and not narrow["Spread"] and not narrow["24 h"]
    back = _fit(panel, 420, qtbot)  # wider again: the columns come back
    assert all(back.values())


def test_the_panel_asks_for_the_height_its_rows_need_not_more(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    panel.render(_snapshot_with_spread(PriceMemory()))
    view = panel.view
    rows_h = view.horizontalHeader().sizeHint().height() + 3 * view.verticalHeader().defaultSectionSize()
    assert rows_h <= panel.sizeHint().height() <= rows_h + 12
    assert panel.sizeHint().width() <= 330


def test_a_refresh_measures_the_columns_again_only_when_a_text_gets_wider_or_narrower(qtbot):
    panel = WatchlistPanel()
    qtbot.addWidget(panel)
    panel.resize(420, 200)
    panel.show()
    memory = PriceMemory()
    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory))
    measured = []
    real = panel.needed_widths
    panel.needed_widths = lambda: measured.append(1) or real()  # type: ignore[method-assign]

    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory))
    assert measured == [], "nothing changed: nothing measured"
    panel.render(snapshot({"BTCUSDT": 60_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory))
    assert measured == []

    panel.render(snapshot({"BTCUSDT": 160_000.0, "XRPUSDT": 0.6, "ETHUSDT": 3000.0}, memory))
    assert measured == [1], "a price with one more digit: the columns are measured again"
    view = panel.view
    i = col("Last")
    assert view.columnWidth(i) >= view.sizeHintForColumn(i), "the wider price is not cut"
