"""The Account · Ticket dock (offscreen, real widgets, a real paper desk and journal): each account figure sits under
a header saying what it covers; the ticket reads back symbol, bid / ask, order value and % of equity; bid / ask and the
ladder put a price in it; stop-loss / take-profit typed as prices reach the order; STOP orders; Modify replaces a
working order; the hotkeys buy at the ask; and Send is visible without scrolling in the dock's size at 1280x720."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from PySide6 import QtCore

from app.market.instruments import Instruments
from app.models import OrderOrigin, OrderStatus, OrderType, Side, Trade
from app.trading.broker import PaperBroker
from app.trading.desk import ActionResult
from app.trading.journal import Journal
from app.ui.trading_panel import TradingPanel
from tests.conftest import wait_until
from tests.trading.test_desk_commands import BTC, NOW, XRP, make_desk, market

TOUCH = {"XRPUSDT": (D("0.5999"), D("0.6001")), "BTCUSDT": (D("59999.99"), D("60000.01"))}


@pytest.fixture
def desk(tmp_path: Path):
    instruments = Instruments.of(XRP, BTC)
    journal = Journal(tmp_path / "journal.sqlite3")
    d = make_desk(PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: NOW), journal,
                  instruments, ["XRPUSDT", "BTCUSDT"])
    market(d, "XRPUSDT", 0.6000)
    market(d, "BTCUSDT", 60_000.0)
    yield d
    journal.close()


@pytest.fixture
def panel(qtbot, desk) -> TradingPanel:
    p = TradingPanel(desk, "XRPUSDT", touch=lambda s: TOUCH[s])
    qtbot.addWidget(p)
    p.resize(340, 420)
    p.show()
    return p


async def settled(panel: TradingPanel) -> None:
    await wait_until(lambda: panel.last_result is not None, what="the desk's answer")
    await wait_until(lambda: not panel.desk.broker._pending, what="the order to arrive")


def test_each_account_figure_sits_under_a_header_saying_what_it_covers(panel, desk):
    grid = panel.account_grid

    def at(row: int, col: int) -> str:
        item = grid.itemAtPosition(row, col)
        return item.widget().text() if item is not None else ""

    assert (at(0, 1), at(0, 2)) == ("Account", "XRPUSDT")
    lines = {at(r, 0): (at(r, 1), at(r, 2)) for r in range(1, grid.rowCount())}
    assert lines["Equity"] == ("10,000.00 USDT", "")
    assert lines["Day PnL"] == ("+0.00 USDT", "")
    assert lines["Unrealised"] == ("+0.00 USDT", "+0.00 USDT")  # the account's and the symbol's, side by side
    assert lines["Position"][0] == "flat"  # spans both columns, right-aligned under the symbol
    assert lines["Risk"] == ("ACTIVE", "")
    assert panel.unrealized.toolTip().startswith("Unrealised · XRPUSDT")
    panel.symbol = "BTCUSDT"
    panel.refresh()
    assert at(0, 2) == "BTCUSDT" and panel.unrealized.toolTip().startswith("Unrealised · BTCUSDT")


def test_the_ticket_reads_back_symbol_bid_ask_value_and_share_of_equity_and_a_click_on_the_ask_prices_it(panel):
    panel.qty.setText("1000")
    assert panel.symbol_label.text() == "XRPUSDT"
    assert (panel.bid_button.text(), panel.ask_button.text()) == ("Bid 0.5999", "Ask 0.6001")
    assert panel.readback_text == "600.10 USDT · 6.0 % of equity"  # a market buy takes the ask
    panel.bid_button.click()
    assert panel.type.currentText() == "LIMIT" and panel.price.text() == "0.5999"
    assert panel.readback_text == "599.90 USDT · 6.0 % of equity"
    panel.set_price(D("0.61234"))  # a click on the ladder: on the tick
    assert panel.price.text() == "0.6123"


@pytest.mark.asyncio
async def test_stop_loss_and_take_profit_typed_as_prices_reach_the_order_and_both_legs_are_placed(panel, desk):
    panel.type.setCurrentText("LIMIT")
    panel.price.setText("0.6010")  # marketable: takes the ask, 0.6001
    panel.qty.setText("100")
    panel.stop_loss.setText("0.5890")
    panel.take_profit.setText("2%")
    # measured from where it will fill (the ask it takes), so the legs land where they were typed
    assert panel.readback_text == "60.01 USDT · 0.6 % of equity · SL −1.85 % · TP 0.6121"  # what was not typed
    assert "SL 0.5890 (−1.85 %)\nTP 0.6121 (+2.00 %)" in panel.readback.toolTip()
    panel.submit.click()
    await settled(panel)
    assert panel.last_result.ok, panel.last_result.message
    assert panel.last_result.message.startswith("PAPER BUY 100.0 XRPUSDT limit @ 0.6010 sent · order")
    entry = desk.broker.get(panel.last_result.order_id)
    # the stop-loss typed as a price goes as that price; the take-profit typed as a percent as that percent
    assert (entry.request.stop_loss_price, entry.request.stop_loss_pct) == (D("0.5890"), None)
    assert (entry.request.take_profit_price, entry.request.take_profit_pct) == (None, D("2"))
    await wait_until(lambda: len(desk.broker.open_orders("XRPUSDT")) == 2, what="the legs")
    assert entry.avg_price == D("0.6001") and desk.bracket_levels("XRPUSDT") == (D("0.5890"), D("0.6121"))


@pytest.mark.asyncio
async def test_a_stop_loss_typed_as_a_price_lands_there_when_the_fill_is_not_the_touch_the_ticket_saw(qtbot, desk):
    """The ticket saw an ask of 0.6050 (it moved since): the buy fills at 0.6001, the legs still go where typed."""
    p = TradingPanel(desk, "XRPUSDT", touch=lambda s: (D("0.6048"), D("0.6050")))
    qtbot.addWidget(p)
    p.qty.setText("100")
    p.stop_loss.setText("0.5890")
    p.take_profit.setText("0.6200")
    p.submit.click()
    await settled(p)
    assert p.last_result.ok, p.last_result.message
    entry = desk.broker.get(p.last_result.order_id)
    assert (entry.request.stop_loss_price, entry.request.take_profit_price) == (D("0.5890"), D("0.6200"))
    await wait_until(lambda: len(desk.broker.open_orders("XRPUSDT")) == 2, what="the legs")
    assert entry.avg_price == D("0.6001") and desk.bracket_levels("XRPUSDT") == (D("0.5890"), D("0.6200"))


@pytest.mark.asyncio
async def test_a_stop_order_from_the_ticket_and_a_wrong_side_stop_refused(panel, desk):
    panel.type.setCurrentText("STOP")
    assert panel.price.isEnabled() and panel.price.placeholderText() == "stop price, tick 0.0001"
    panel.qty.setText("20")
    panel.price.setText("0.5900")
    panel.submit.click()
    await wait_until(lambda: panel.last_result is not None, what="the refusal")
    assert not panel.last_result.ok and "not above the market 0.6000" in panel.message.text()
    panel.last_result = None
    panel.price.setText("0.6100")
    panel.submit.click()
    await settled(panel)
    order = desk.broker.get(panel.last_result.order_id)
    assert (order.request.type, order.request.stop_price, order.status) == (OrderType.STOP_MARKET, D("0.6100"),
                                                                           OrderStatus.NEW)


@pytest.mark.asyncio
async def test_modify_loads_a_working_order_and_replace_sends_the_new_price(panel, desk):
    panel.type.setCurrentText("LIMIT")
    panel.qty.setText("20")
    panel.price.setText("0.5900")
    panel.submit.click()
    await settled(panel)
    old = panel.last_result.order_id
    assert panel.load_order(old)
    assert panel.submit.text() == "Replace PAPER order" and panel.leave_modify.isVisible()
    assert (panel.qty.text(), panel.price.text(), panel.side.isEnabled()) == ("20.0", "0.5900", False)
    assert panel.readback.toolTip().splitlines()[0] == f"BUY 20.0 XRPUSDT limit @ 0.5900 (replaces {old})"
    panel.price.setText("0.5950")
    panel.last_result = None
    panel.submit.click()
    await settled(panel)
    assert panel.last_result.ok and f"replaces order {old}" in panel.last_result.message
    assert desk.broker.get(old).status is OrderStatus.CANCELED
    (new,) = desk.broker.open_orders("XRPUSDT")
    assert new.request.limit_price == D("0.5950")
    await wait_until(lambda: panel.submit.text() == "Send PAPER order", what="the ticket back to new orders")
    assert not panel.load_order("P999") and "not a working" in panel.message.text()


@pytest.mark.asyncio
async def test_replace_after_a_partial_fill_sends_what_is_left_not_the_quantity_loaded(panel, desk):
    """Modify loaded 20; 8 fill before Replace is pressed: the replacement is for the 12 left, never 20 again."""
    panel.type.setCurrentText("LIMIT")
    panel.qty.setText("20")
    panel.price.setText("0.5900")
    panel.submit.click()
    await settled(panel)
    old = panel.last_result.order_id
    assert panel.load_order(old) and panel.qty.text() == "20.0"
    batch = [Trade("XRPUSDT", 0.5899, 8.0, Side.SELL, 800_001, NOW, 0)]  # 8 trade through the resting limit
    desk.on_market(batch)
    desk.broker.on_market(batch)
    assert desk.broker.get(old).filled_qty == D("8")
    panel.price.setText("0.5950")
    panel.last_result = None
    panel.submit.click()
    await settled(panel)
    assert panel.last_result.ok, panel.last_result.message
    (new,) = desk.broker.open_orders("XRPUSDT")
    assert new.request.qty == D("12.0") and new.request.limit_price == D("0.5950")
    assert desk.portfolio.position("XRPUSDT").qty == D("8")


@pytest.mark.asyncio
async def test_a_quantity_the_trader_edits_in_modify_is_sent_as_typed(panel, desk):
    panel.type.setCurrentText("LIMIT")
    panel.qty.setText("20")
    panel.price.setText("0.5900")
    panel.submit.click()
    await settled(panel)
    assert panel.load_order(panel.last_result.order_id)
    panel.qty.setText("30")
    panel.last_result = None
    panel.submit.click()
    await settled(panel)
    assert panel.last_result.ok, panel.last_result.message
    (new,) = desk.broker.open_orders("XRPUSDT")
    assert new.request.qty == D("30.0")


@pytest.mark.asyncio
async def test_buy_at_the_ask_sends_the_tickets_quantity_as_a_limit_at_the_touch(panel, desk):
    assert panel.send_at_touch(Side.BUY) is None and "type a quantity" in panel.message.text()
    panel.qty.setText("50")
    panel.last_result = None
    panel.send_at_touch(Side.BUY)
    await settled(panel)
    assert panel.last_result.ok
    assert panel.last_result.message.startswith("PAPER BUY 50.0 XRPUSDT limit @ 0.6001 sent")
    order = desk.broker.get(panel.last_result.order_id)
    assert order.request.origin is OrderOrigin.MANUAL


def test_send_is_visible_without_scrolling_in_the_docks_size_at_1280x720(qtbot, desk):
    panel = TradingPanel(desk, "BTCUSDT", touch=lambda s: TOUCH[s])
    qtbot.addWidget(panel)
    panel.resize(284, 218)  # what the bottom dock gives it in a 1280x720 window (less the dock title bar)
    panel.show()
    qtbot.waitUntil(panel.isVisible)
    panel.qty.setText("0.01")
    panel.stop_loss.setText("58800")  # the read-back line stays one line (elided), whatever it holds
    panel.take_profit.setText("3%")
    assert panel.minimumSizeHint().height() <= 218  # never forces the window taller
    view = panel.scroll.viewport()
    for button in (panel.submit, panel.kill_button, panel.flatten_button):
        rect = QtCore.QRect(button.mapTo(view, QtCore.QPoint(0, 0)), button.size())
        assert view.rect().contains(rect), button.text()
        assert button.fontMetrics().horizontalAdvance(button.text()) <= button.width()  # the words not cut
    # A refusal is never left unread below the fold: the short dock scrolls to it.
    panel.show_result(ActionResult(False, "risk: order value 6,000.00 is over the limit 5,000 for BTCUSDT"))
    qtbot.waitUntil(lambda: view.rect().contains(
        QtCore.QRect(panel.message.mapTo(view, QtCore.QPoint(0, 0)), panel.message.size())), timeout=2000)


def test_a_wide_dock_shows_the_account_beside_the_ticket_without_scrolling(qtbot, desk):
    panel = TradingPanel(desk, "BTCUSDT", touch=lambda s: TOUCH[s])
    qtbot.addWidget(panel)
    panel.resize(600, 218)
    panel.show()
    qtbot.waitUntil(panel.isVisible)
    view = panel.scroll.viewport()
    for widget in (panel.submit, panel.kill_button, panel.equity, panel.unrealized, panel.risk_state):
        assert view.rect().contains(QtCore.QRect(widget.mapTo(view, QtCore.QPoint(0, 0)), widget.size()))
    assert panel.equity.mapTo(panel, QtCore.QPoint(0, 0)).x() > panel.submit.mapTo(panel, QtCore.QPoint(0, 0)).x()
