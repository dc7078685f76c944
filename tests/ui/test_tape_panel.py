"""The Trades dock offscreen: time and sales newest on top, the aggressor's side in its colour, big prints standing
out, lines updated in place by key and painted by one widget only where they changed (an unchanged tape paints
nothing), real trades from the Binance capture."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.market.state import MarketData
from app.models import Side
from app.ui import theme
from app.ui.tape import TapePanel
from app.view.book import tape
from tests.market.test_state_tape import real_trades
from tests.test_view_book import BTC, UTC, trade
from tests.ui.test_order_book_panel import near


def panel(qtbot, rows: int = 30, size=(260, 600)) -> TapePanel:
    w = TapePanel(rows=rows)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


def shown(w: TapePanel) -> list[tuple[str, ...]]:
    return [r.texts for r in w.rows() if any(r.texts)]


def test_newest_on_top_in_the_aggressors_colour(qtbot):
    w = panel(qtbot)
    trades = [trade(1, 61837.63, 0.02, Side.BUY), trade(2, 61837.62, 0.048, Side.SELL)]
    w.render(tape(trades, BTC, limit=30, tz=UTC))
    assert shown(w) == [("00:00:01.505", "61,837.62", "0.04800"), ("00:00:01.255", "61,837.63", "0.02000")]
    top, second = w.rows()[:2]
    assert top.colors[1] == theme.current().down and second.colors[1] == theme.current().up  # sell red, buy green
    assert top.key == "2" and second.key == "1"
    assert w.rows()[0].geometry().top() < w.rows()[1].geometry().top()


def test_new_trades_push_the_tape_down_in_place_and_a_quiet_tick_touches_nothing(qtbot):
    w = panel(qtbot, rows=10)
    trades = [trade(i, 100.0 + i, 0.01, Side.BUY) for i in range(1, 6)]
    w.render(tape(trades, BTC, limit=10, tz=UTC))
    rows = w.rows()
    children = len(w.findChildren(QtCore.QObject))
    assert w.render(tape(trades, BTC, limit=10, tz=UTC)) == 0  # same keys: no row changed
    trades += [trade(6, 106.0, 0.02, Side.SELL), trade(7, 107.0, 0.03, Side.SELL)]
    changed = w.render(tape(trades, BTC, limit=10, tz=UTC))
    assert changed == 7  # every shown row moved down two; the two new ones on top
    assert w.rows() == rows and len(w.findChildren(QtCore.QObject)) == children
    assert [r.key for r in w.rows() if r.key] == ["7", "6", "5", "4", "3", "2", "1"]
    assert shown(w)[0] == ("00:00:02.755", "107.00", "0.03000")


def test_more_trades_than_rows_show_the_newest_and_a_short_dock_shows_what_fits(qtbot):
    w = panel(qtbot, rows=50, size=(260, 160))
    trades = [trade(i, 100.0, 0.01, Side.BUY) for i in range(200)]
    w.render(tape(trades, BTC, limit=50, tz=UTC))
    visible = [r for r in w.rows() if r.isVisible()]
    assert 2 <= len(visible) < 50
    assert visible[0].key == "199"
    assert w.minimumSizeHint().height() < 120 and w.minimumSizeHint().width() < 200


def test_big_prints_are_bold_and_tinted(qtbot):
    w = panel(qtbot)
    trades = [trade(i, 100.0, 0.01 * (1 + i % 10), Side.BUY) for i in range(100)]
    trades.append(trade(100, 99.0, 5.0, Side.SELL))
    t = tape(trades, BTC, limit=30, big_quantile=0.9)
    w.render(t)
    top = w.rows()[0]
    assert top.key == "100" and top.bold and top.tint == theme.current().down
    assert not any(r.bold or r.tint for r in w.rows()[1:])
    assert "percentile" in w.toolTip()


@pytest.mark.realdata
def test_real_trades_through_the_market_state(qtbot):
    market = MarketData(["BTCUSDT"], capacity=100)
    market.apply(real_trades(120))
    m = market["BTCUSDT"]
    w = panel(qtbot, rows=40)
    w.render(tape(m.recent, BTC, limit=40, first_seq=m.recent_first_seq))
    assert len(shown(w)) == 40
    assert w.rows()[0].key == str(m.last_trade.trade_id)
    local = dt.datetime.fromtimestamp(m.last_trade.exchange_ms / 1000)
    assert w.rows()[0].texts[0].startswith(local.strftime("%H:%M:%S."))
    assert {r.colors[1] for r in w.rows()} == {theme.current().up, theme.current().down}


def painted(w: TapePanel) -> list[str]:
    """The trade lines Qt has the tape paint now (their keys), top-down."""
    w.view.last_painted = []
    QtCore.QCoreApplication.processEvents()
    return [getattr(line, "key", "header") for line in w.view.last_painted]


def test_one_widget_paints_each_price_in_its_aggressors_colour_and_only_what_changed(qtbot):
    w = panel(qtbot, rows=10, size=(300, 400))
    trades = [trade(1, 100.0, 0.01, Side.BUY), trade(2, 99.5, 0.01, Side.SELL)]
    w.render(tape(trades, BTC, limit=10, tz=UTC))
    assert w.view.findChildren(QtWidgets.QWidget) == []  # no widget per trade
    image = w.view.grab().toImage()
    t = theme.current()
    sell, buy = w.rows()[:2]
    price_column = QtCore.QRect(int(w.view.width() * 0.40), 0, int(w.view.width() * 0.30), w.view.line_height)
    assert near(image, price_column.translated(0, sell.top), t.down) > 5
    assert near(image, price_column.translated(0, sell.top), t.up) == 0
    assert near(image, price_column.translated(0, buy.top), t.up) > 5
    assert near(image, price_column.translated(0, buy.top), t.down) == 0
    QtCore.QCoreApplication.processEvents()
    assert painted(w) == []
    w.render(tape(trades, BTC, limit=10, tz=UTC))  # a quiet tick: the same trades
    assert painted(w) == []
    trades.append(trade(3, 99.0, 0.01, Side.SELL))
    w.render(tape(trades, BTC, limit=10, tz=UTC))
    assert painted(w) == ["3"]  # the new trade; Qt moved the two below it down a line, the empty ones stay
    assert on_screen(w) == w.view.grab().toImage()  # the same pixels as the whole tape painted afresh


def on_screen(w: TapePanel) -> QtGui.QImage:
    """The tape's pixels as the window shows them (its backing store), not painted again."""
    image = w.screen().grabWindow(w.winId()).toImage()
    return image.copy(QtCore.QRect(w.view.mapTo(w, QtCore.QPoint(0, 0)), w.view.size())).convertToFormat(
        QtGui.QImage.Format.Format_RGB32)


def test_a_push_moves_the_tape_down_as_painted_with_the_mouse_over_it_and_big_prints_changing(qtbot):
    w = panel(qtbot, rows=30, size=(300, 400))
    trades = [trade(i, 100.0 + i % 7, 0.01 * (1 + i % 5), Side.BUY if i % 3 else Side.SELL) for i in range(40)]
    w.render(tape(trades, BTC, limit=30, tz=UTC, big_quantile=0.9))
    QtCore.QCoreApplication.processEvents()
    qtbot.mouseMove(w.view, w.rows()[4].geometry().center())  # the trader reads the fifth line
    QtCore.QCoreApplication.processEvents()
    for n in (3, 1, 6):
        i = len(trades)
        # bigger prints arrive: what counts as big moves, some older lines lose their emphasis
        trades += [trade(i + j, 100.0 + j, 0.05 * (1 + j), Side.SELL if j % 2 else Side.BUY) for j in range(n)]
        w.render(tape(trades, BTC, limit=30, tz=UTC, big_quantile=0.9))
        got = painted(w)
        assert set(got) >= {r.key for r in w.rows()[:n]} and len(got) < 25  # the new ones, not the whole tape
        assert on_screen(w) == w.view.grab().toImage()


def test_hovering_a_trade_shows_what_counts_as_big(qtbot):
    w = panel(qtbot)
    w.render(tape([trade(i, 100.0, 0.01 * (1 + i % 10), Side.BUY) for i in range(100)], BTC, limit=30))
    at = w.rows()[3].geometry().center()
    QtWidgets.QApplication.sendEvent(w.view, QtGui.QHelpEvent(QtCore.QEvent.Type.ToolTip, at,
                                                              w.view.mapToGlobal(at)))
    assert "percentile" in QtWidgets.QToolTip.text()
    QtWidgets.QToolTip.hideText()
    assert w.view.header.texts == ("Time", "Price", "Qty") and w.rows()[0].top == w.view.line_height


def test_a_narrow_tape_drops_the_hour_not_the_milliseconds(qtbot):
    w = panel(qtbot, rows=5, size=(230, 200))  # the Trades dock at 1280x720
    w.render(tape([trade(1, 61837.63, 0.02, Side.BUY)], BTC, limit=5, tz=UTC))
    top = w.rows()[0]
    assert top.texts[0] == "00:00:01.255"  # the full time is what the line holds
    assert top.drawn_texts() == ("00:01.255", "61,837.63", "0.02000")  # minutes, seconds, milliseconds: whole
    w.resize(400, 200)
    QtCore.QCoreApplication.processEvents()
    assert top.drawn_texts()[0] == "00:00:01.255"  # room enough: the hour too
