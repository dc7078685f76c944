"""Order safety of the desk's commands (review of issue 16): a replace never buys again what filled during its
cancel, nor sends while the kill switch is on; order commands on a symbol run one at a time; cancel all keeps the
stops and targets of open positions; a moved stop that cannot be put back is said (NO STOP); a blotter replace of one
leg moves that leg only; SL / TP typed as prices land where typed, whatever the fill. Paper through a real
PaperBroker and SQLite journal; live through the LiveBroker against the built-in exchange on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal as D

import pytest

from app.market.sim.order_api import OrderApi
from app.models import OrderOrigin, OrderRequest, OrderStatus, OrderType, Quote, Side, Trade
from app.trading.broker import LegMove
from app.trading.risk import RiskState
from tests.conftest import wait_until
from tests.trading import test_desk_commands as commands
from tests.trading.live_support import KEY, SYM, stream_caught_up, until
from tests.trading.test_desk_commands import live_desk, long_with_bracket, market, working_limit

desk = commands.desk  # the fixtures: a paper desk, and a journal for the live one
live_journal = commands.live_journal


def during_cancel(desk, action) -> None:
    """The broker's cancel runs ``action`` first: what lands while a cancel is on its way to the exchange."""
    real = desk.broker.cancel

    async def cancel(order_id: str) -> bool:
        await action()
        return await real(order_id)

    desk.broker.cancel = cancel


# ----- 1. a replace never buys again what filled during the cancel --------------------------------------------

@pytest.mark.asyncio
async def test_a_partial_fill_during_the_cancel_is_not_bought_again_by_the_replacement(desk):
    old = await working_limit(desk, qty="20", price="0.5900")

    async def eight_fill() -> None:  # a trade of 8 through the resting 20
        batch = [Trade("XRPUSDT", 0.5899, 8.0, Side.SELL, 900_001, 0, 0),
                 Quote("XRPUSDT", 0.5899, 1e6, 0.5901, 1e6, 900_001, 0, 0)]
        desk.on_market(batch)
        desk.broker.on_market(batch)

    during_cancel(desk, eight_fill)
    result = await desk.replace_order(old, price=D("0.5950"))
    assert result.ok, result.message
    assert desk.broker.get(old).filled_qty == D("8")
    new = desk.broker.get(result.order_id)
    assert new.request.qty == D("12.0"), "the replacement must be for what is left after the cancel, not 20"
    assert "BUY 12.0 XRPUSDT limit @ 0.5950" in result.message


@pytest.mark.asyncio
async def test_an_order_that_filled_during_the_cancel_is_not_replaced_and_the_trader_is_told(desk):
    old = await working_limit(desk, qty="20", price="0.5900")

    async def all_fills() -> None:
        market(desk, "XRPUSDT", 0.5899)

    during_cancel(desk, all_fills)
    result = await desk.replace_order(old, price=D("0.5950"))
    assert not result.ok
    assert "filled" in result.message and "nothing left to replace" in result.message
    assert desk.broker.open_orders("XRPUSDT") == []
    assert desk.portfolio.position("XRPUSDT").qty == D("20")


# ----- 2. the kill switch and other commands during a replace ---------------------------------------------------

@pytest.mark.asyncio
async def test_a_kill_switch_pressed_during_the_cancel_stops_the_replacement(desk):
    old = await working_limit(desk)
    kill: list[asyncio.Task] = []

    async def press_kill() -> None:
        kill.append(asyncio.ensure_future(desk.kill_switch()))
        await asyncio.sleep(0)  # the kill switch halts at once

    during_cancel(desk, press_kill)
    result = await desk.replace_order(old, price=D("0.5950"))
    assert not result.ok and "HALTED" in result.message.upper()
    await kill[0]
    assert desk.risk.state is RiskState.HALTED
    assert desk.broker.open_orders() == [], "nothing may be sent while halted"
    assert len(desk.broker.orders) == 1  # the old limit only: no replacement ever sent


@pytest.mark.asyncio
async def test_a_flatten_pressed_during_a_replace_waits_and_leaves_no_order_working(desk):
    assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("100")))).ok
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("100"), what="the buy")
    old = await working_limit(desk)

    async def slow() -> None:
        await asyncio.sleep(0.02)  # the cancel's round trip

    during_cancel(desk, slow)
    replaced, flattened = await asyncio.gather(desk.replace_order(old, price=D("0.5950")), desk.flatten("XRPUSDT"))
    assert replaced.ok and flattened.ok, (replaced.message, flattened.message)
    await wait_until(lambda: not desk.broker._pending, what="the flatten")
    assert desk.broker.open_orders("XRPUSDT") == [], "flatten ran after the replace and canceled its new order"
    assert desk.portfolio.position("XRPUSDT").qty == 0


# ----- 3. cancel all keeps the brackets of open positions ----------------------------------------------------

@pytest.mark.asyncio
async def test_cancel_all_keeps_the_stop_loss_and_take_profit_of_an_open_position(desk):
    stop_id, tp_id = await long_with_bracket(desk)
    limit = await working_limit(desk)
    result = await desk.cancel_all()
    assert result.ok, result.message
    assert result.message == ("PAPER cancel all (every symbol): 1 order canceled; stops and targets of open "
                              "positions kept")
    assert desk.broker.get(limit).status is OrderStatus.CANCELED
    assert {o.id for o in desk.broker.open_orders()} == {stop_id, tp_id}


# ----- 4. a moved stop: the put-back checked; paper like live ---------------------------------------------------

@pytest.mark.asyncio
async def test_paper_a_refused_new_leg_puts_the_old_one_back_linked_to_its_sibling(desk):
    stop_id, _tp_id = await long_with_bracket(desk)
    old = desk.broker.get(stop_id)
    move = await desk.broker.replace_leg(stop_id, dataclasses.replace(old.request, stop_price=D("0")))
    assert isinstance(move, LegMove) and not move.moved and not move.unprotected
    assert move.new is not None and move.new.status is OrderStatus.REJECTED
    assert move.kept is not None and move.kept.status is OrderStatus.NEW
    assert move.kept.request.stop_price == D("0.5881") and move.kept.request.qty == D("100")
    assert desk.bracket_levels("XRPUSDT") == (D("0.5881"), D("0.6181"))
    market(desk, "XRPUSDT", 0.6190)  # the take-profit fills: the put-back stop is its OCO sibling, canceled
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the take-profit")
    assert move.kept.status is OrderStatus.CANCELED and desk.broker.open_orders() == []


@pytest.mark.asyncio
async def test_a_stop_that_filled_during_its_move_is_not_said_to_stay(desk):
    await long_with_bracket(desk)
    real = desk.broker.replace_leg

    async def replace_leg(order_id, req):
        market(desk, "XRPUSDT", 0.5870)  # through the stop: it sells before the move reaches it
        return await real(order_id, req)

    desk.broker.replace_leg = replace_leg
    result = await desk.move_bracket("XRPUSDT", stop_loss=D("0.5950"))
    assert not result.ok
    assert "stays" not in result.message and "filled" in result.message, result.message


@pytest.mark.asyncio
async def test_live_a_stop_the_exchange_refuses_twice_is_said_as_no_stop(api: OrderApi, live_journal,
                                                                          monkeypatch):
    desk = await live_desk(api, live_journal)
    try:
        entry = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.MARKET, D("0.5"),
                                                      stop_loss_pct=D(2), take_profit_pct=D(3)))
        assert entry.ok, entry.message
        await until(lambda: len(desk.broker.open_orders(SYM)) == 2, "the legs")
        await stream_caught_up(desk.broker, api)
        await until(lambda: desk.portfolio.position(SYM).qty > 0, "the position")
        stop = next(o for o in desk.broker.open_orders(SYM) if o.request.type is OrderType.STOP_MARKET)
        real = desk.broker.submit

        async def refuse_stops(req: OrderRequest):
            if req.type is OrderType.STOP_MARKET:  # the exchange refuses the new stop and the put-back
                req = dataclasses.replace(req, qty=D("0"))
            return await real(req)

        monkeypatch.setattr(desk.broker, "submit", refuse_stops)
        result = await desk.move_bracket(SYM, stop_loss=D("98.5"))
        assert not result.ok
        assert "NO STOP" in result.message and "stays" not in result.message, result.message
        assert api.engine.get(KEY, SYM, client_id=stop.id).status == "CANCELED"
        assert any(level == "error" and "NO STOP" in text for _ms, level, text in desk.messages)
    finally:
        await desk.broker.aclose()


# ----- 5. one leg moved, not every leg of the symbol; live add_leg honours its sibling ---------------------------

@pytest.mark.asyncio
async def test_a_blotter_replace_of_one_stop_moves_that_stop_only(desk):
    first_stop, _ = await long_with_bracket(desk)
    assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("50"),
                                                  stop_loss_pct=D(5)))).ok
    await wait_until(lambda: len(desk.broker.open_orders("XRPUSDT")) == 3, what="the second stop")
    second = next(o for o in desk.broker.open_orders("XRPUSDT")
                  if o.request.type is OrderType.STOP_MARKET and o.id != first_stop)
    was = second.request.stop_price
    result = await desk.replace_order(first_stop, price=D("0.5900"))
    assert result.ok, result.message
    assert second.status is OrderStatus.NEW and second.request.stop_price == was, "the other stop was moved too"
    stops = sorted(o.request.stop_price for o in desk.broker.open_orders("XRPUSDT")
                   if o.request.type is OrderType.STOP_MARKET)
    assert stops == sorted([was, D("0.5900")])


@pytest.mark.asyncio
async def test_live_add_leg_links_the_take_profit_to_the_given_stop(api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        assert (await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.MARKET, D("0.5")))).ok
        await stream_caught_up(desk.broker, api)
        await until(lambda: desk.portfolio.position(SYM).qty > 0, "the position")
        qty = desk.portfolio.position(SYM).qty
        stop = await desk.broker.add_leg(OrderRequest(SYM, Side.SELL, OrderType.STOP_MARKET, qty, stop_price=D("98"),
                                                      origin=OrderOrigin.BRACKET, parent_id="A"))
        tp = await desk.broker.add_leg(OrderRequest(SYM, Side.SELL, OrderType.LIMIT, qty, limit_price=D("103"),
                                                    origin=OrderOrigin.BRACKET, parent_id="B"), stop.id)
        assert tp is not None and tp.request.parent_id == stop.request.parent_id
    finally:
        await desk.broker.aclose()


@pytest.mark.asyncio
async def test_live_a_partial_fill_during_the_cancel_is_not_bought_again(api: OrderApi, live_journal):
    """The built-in exchange fills 0.08 of a resting 0.2 while the cancel is on its way: the replacement is 0.12."""
    desk = await live_desk(api, live_journal)
    try:
        sent = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.LIMIT, D("0.2"), limit_price=D("97")))
        assert sent.ok, sent.message
        real = desk.broker._cancel_at_exchange

        async def cancel_at_exchange(symbol, exchange_id, client_id):
            api.engine.on_trade(SYM, D("96.9"), D("0.08"))  # trades through the limit before the cancel arrives
            return await real(symbol, exchange_id, client_id)

        desk.broker._cancel_at_exchange = cancel_at_exchange
        result = await desk.replace_order(sent.order_id, price=D("97.5"))
        assert result.ok, result.message
        assert desk.broker.get(sent.order_id).filled_qty == D("0.08")
        new = api.engine.get(KEY, SYM, client_id=result.order_id)
        assert new.qty == D("0.12"), "the replacement must be for what was left after the cancel, not 0.2"
    finally:
        await desk.broker.aclose()
