"""SL / TP typed as prices land where typed (review of issue 16): the ticket carried them as % from the expected fill
and the broker applied the % to the real average fill (slippage, stop entries). ``OrderRequest.stop_loss_price`` /
``take_profit_price`` are used by the paper and live brackets as given, journaled and restored."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.market.sim.order_api import OrderApi
from app.models import Order, OrderRequest, OrderStatus, OrderType, Quote, Side
from app.trading.journal import Journal
from tests.conftest import wait_until
from tests.trading import test_desk_commands as commands
from tests.trading.live_support import SYM, until
from tests.trading.test_desk_commands import live_desk

desk = commands.desk  # the fixtures: a paper desk, and a journal for the live one
live_journal = commands.live_journal


@pytest.mark.asyncio
async def test_a_market_buy_that_slips_gets_its_stop_loss_and_take_profit_at_the_typed_prices(desk):
    thin = [Quote("XRPUSDT", 0.5999, 10.0, 0.6001, 10.0, 900_100, 0, 0)]  # 10 at the ask: 100 slips
    desk.broker.on_market(thin)
    result = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("100"),
                                                   stop_loss_price=D("0.5800"), take_profit_price=D("0.6300")))
    assert result.ok, result.message
    await wait_until(lambda: len(desk.broker.open_orders("XRPUSDT")) == 2, what="the legs")
    assert desk.broker.get(result.order_id).avg_price > D("0.6001")  # it slipped
    assert desk.bracket_levels("XRPUSDT") == (D("0.5800"), D("0.6300"))


@pytest.mark.asyncio
async def test_live_typed_bracket_prices_are_placed_at_the_exchange_as_typed(api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        entry = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.MARKET, D("0.5"),
                                                      stop_loss_price=D("97.3"), take_profit_price=D("104.1")))
        assert entry.ok, entry.message
        await until(lambda: len(desk.broker.open_orders(SYM)) == 2, "the legs")
        assert desk.bracket_levels(SYM) == (D("97.3"), D("104.1"))
    finally:
        await desk.broker.aclose()


def test_typed_bracket_prices_are_journaled_and_restored(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as j:
        req = OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("10"), limit_price=D("0.59"),
                           stop_loss_price=D("0.5800"), take_profit_price=D("0.6300"))
        j.record_order(Order("P1", req, OrderStatus.NEW, 1, updated_ms=1))
        (back,) = j.open_orders()
        assert (back.request.stop_loss_price, back.request.take_profit_price) == (D("0.5800"), D("0.6300"))


@pytest.mark.asyncio
async def test_a_restart_keeps_the_typed_bracket_prices_of_a_resting_entry(tmp_path):
    """A limit buy resting with SL / TP typed as prices; the terminal restarts; it fills lower than its limit after:
    the legs still go where typed."""
    from app.trading.restore import restore
    from tests.trading.test_restore import trade_at, xrp_desk

    path = tmp_path / "j.sqlite3"
    first = xrp_desk(path, commands.NOW)
    try:
        trade_at(first, 0.6, 1)
        sent = await first.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D("100"),
                                                      limit_price=D("0.5900"), stop_loss_price=D("0.5700"),
                                                      take_profit_price=D("0.6200")))
        assert sent.ok, sent.message
        await wait_until(lambda: not first.broker._pending, what="the order to rest")
    finally:
        first.close()
        first.journal.close()
    with Journal(path) as j:
        restored = restore(j, starting_cash=D("1000"), symbols=["XRPUSDT"], daily_loss_limit=D("50"),
                           now_ms=commands.NOW)
    again = xrp_desk(path, commands.NOW)
    try:
        again.resume_from(restored)
        (entry,) = again.broker.open_orders("XRPUSDT")
        assert (entry.request.stop_loss_price, entry.request.take_profit_price) == (D("0.5700"), D("0.6200"))
        for seq in range(2, 14):  # trades through the limit until the 100 are filled
            trade_at(again, 0.5850, seq)
        await wait_until(lambda: len(again.broker.open_orders("XRPUSDT")) == 2, what="the legs")
        assert again.bracket_levels("XRPUSDT") == (D("0.5700"), D("0.6200"))
    finally:
        again.journal.close()
