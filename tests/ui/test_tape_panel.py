"""The Trades dock offscreen: time and sales newest on top, the aggressor's side in its colour, big prints standing
out, rows updated in place by key (an unchanged tape touches nothing), real trades from the Binance capture."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6 import QtCore

from app.market.state import MarketData
from app.models import Side
from app.ui import theme
from app.ui.tape import TapePanel
from app.view.book import tape
from tests.market.test_state_tape import real_trades
from tests.test_view_book import BTC, UTC, trade


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
