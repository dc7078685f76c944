"""The desk's commands the screen calls (issue 16): replace a working order, move a position's stop-loss and
take-profit, cancel all, flatten all, auto-approve on/off, manual stop orders and brackets. Paper through a real
PaperBroker and a real SQLite journal; live through the LiveBroker against the built-in exchange on loopback."""

from __future__ import annotations

import dataclasses
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest

from app.market.instruments import Instrument, Instruments
from app.market.sim.order_api import OrderApi
from app.models import OrderOrigin, OrderRequest, OrderStatus, OrderType, Quote, Side, Trade
from app.trading.broker import PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import Journal
from app.trading.live_broker import LiveBroker, LiveEndpoints
from app.trading.portfolio import Portfolio
from app.trading.proposals import ProposalBook
from app.trading.risk import RiskLimits, RiskManager, RiskState
from tests.conftest import wait_until
from tests.trading.live_support import KEY, SECRET, SYM, make_broker, started, stream_caught_up, until

NOW = 1_723_161_255_000
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"), min_notional=D("5"))


def make_desk(broker, journal: Journal, instruments: Instruments, symbols: list[str]) -> TradingDesk:
    return TradingDesk(broker=broker, risk=RiskManager(RiskLimits(), instruments=instruments),
                       portfolio=Portfolio(starting_cash=D("10000")), journal=journal,
                       proposals=ProposalBook(instruments=instruments, wall_ms=lambda: NOW),
                       symbols=symbols, wall_ms=lambda: NOW)


@pytest.fixture
def desk(tmp_path: Path):
    instruments = Instruments.of(XRP, BTC)
    journal = Journal(tmp_path / "journal.sqlite3")
    broker = PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: NOW)
    d = make_desk(broker, journal, instruments, ["XRPUSDT", "BTCUSDT"])
    market(d, "XRPUSDT", 0.6000)
    market(d, "BTCUSDT", 60_000.0)
    yield d
    journal.close()


_seq = iter(range(1, 1_000_000))


def market(desk: TradingDesk, symbol: str, price: float) -> None:
    """A trade at ``price`` and a quote one tick either side, as the session gives them to the desk and broker."""
    tick = float(desk.instruments.get(symbol).tick_size)
    n = next(_seq)
    batch = [Trade(symbol, price, 1e6, Side.BUY, n, NOW, 0), Quote(symbol, price - tick, 1e6, price + tick, 1e6, n,
                                                                   NOW, 0)]
    desk.on_market(batch)
    desk.broker.on_market(batch)


def journaled(desk: TradingDesk, order_id: str) -> tuple:
    with sqlite3.connect(desk.journal.path) as conn:
        return conn.execute("SELECT status, qty, limit_price, stop_price, reject_reason FROM orders WHERE id = ?",
                            (order_id,)).fetchone()


async def working_limit(desk: TradingDesk, qty: str = "20", price: str = "0.5900") -> str:
    result = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.LIMIT, D(qty), limit_price=D(price)))
    assert result.ok, result.message
    await wait_until(lambda: not desk.broker._pending, what="the order to arrive")
    return result.order_id


async def long_with_bracket(desk: TradingDesk) -> tuple[str, str]:
    """100 XRP bought at market (0.6001) with a 2 % stop-loss and a 3 % take-profit; returns (stop id, tp id)."""
    result = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("100"),
                                                   stop_loss_pct=D(2), take_profit_pct=D(3)))
    assert result.ok, result.message
    await wait_until(lambda: len(desk.broker.open_orders("XRPUSDT")) == 2, what="the bracket legs")
    legs = {o.request.type: o.id for o in desk.broker.open_orders("XRPUSDT")}
    return legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]


# ----- replace a working order --------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_replace_moves_a_working_limit_as_cancel_and_new_and_says_what_it_sent(desk):
    old = await working_limit(desk)
    result = await desk.replace_order(old, price=D("0.59037"), qty=D("30.07"))  # off the tick and the lot
    assert result.ok, result.message
    assert result.message == f"PAPER BUY 30.0 XRPUSDT limit @ 0.5903 replaces order {old} · order {result.order_id}"
    new = desk.broker.get(result.order_id)
    assert new.status is OrderStatus.NEW and (new.request.qty, new.request.limit_price) == (D("30.0"), D("0.5903"))
    assert desk.broker.get(old).status is OrderStatus.CANCELED
    assert [o.id for o in desk.broker.open_orders()] == [result.order_id]
    assert journaled(desk, old)[0] == "CANCELED"
    assert journaled(desk, result.order_id)[:3] == ("NEW", "30.0", "0.5903")


@pytest.mark.asyncio
async def test_a_replacement_risk_refuses_leaves_the_order_working(desk):
    old = await working_limit(desk)
    result = await desk.replace_order(old, price=D("0.5000"))  # beyond the 5 % price band
    assert not result.ok and result.message.startswith("risk:") and "band" in result.message
    assert desk.broker.get(old).status is OrderStatus.NEW
    refused = await desk.replace_order(old, price=D("0.5900"))
    assert not refused.ok and "nothing to change" in refused.message


@pytest.mark.asyncio
async def test_the_replaced_order_is_not_counted_against_the_open_order_limit(tmp_path):
    instruments = Instruments.of(XRP)
    with Journal(tmp_path / "j.sqlite3") as journal:
        d = TradingDesk(broker=PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: NOW),
                        risk=RiskManager(RiskLimits(max_open_orders=1), instruments=instruments),
                        portfolio=Portfolio(starting_cash=D("10000")), journal=journal,
                        proposals=ProposalBook(instruments=instruments, wall_ms=lambda: NOW), symbols=["XRPUSDT"],
                        wall_ms=lambda: NOW)
        market(d, "XRPUSDT", 0.6)
        old = await working_limit(d)
        result = await d.replace_order(old, price=D("0.5950"))
        assert result.ok, result.message


@pytest.mark.asyncio
async def test_a_filled_or_market_order_cannot_be_replaced(desk):
    assert not (await desk.replace_order("P999", price=D("1"))).ok
    await long_with_bracket(desk)
    entry = next(o for o in desk.broker.orders if o.request.type is OrderType.MARKET)
    refused = await desk.replace_order(entry.id, price=D("0.6"))
    assert not refused.ok and "not working" in refused.message


# ----- stop orders and brackets from the ticket ----------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_manual_stop_entry_waits_for_the_market_and_one_already_reached_is_refused_in_words(desk):
    refused = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.STOP_MARKET, D("20"),
                                                    stop_price=D("0.5990")))
    assert not refused.ok
    assert refused.message == ("BUY stop 0.5990 XRPUSDT is not above the market 0.6000: it would trigger at once; a "
                               "buy stop sits above the market (use a market or limit order to trade now)")
    result = await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.STOP_MARKET, D("20"),
                                                   stop_price=D("0.6100")))
    assert result.ok and result.message.startswith("PAPER BUY 20.0 XRPUSDT stop @ 0.6100 sent")
    await wait_until(lambda: not desk.broker._pending, what="the stop to arrive")
    assert desk.broker.get(result.order_id).status is OrderStatus.NEW  # resting
    moved = await desk.replace_order(result.order_id, stop_price=D("0.6050"))
    assert moved.ok and "stop @ 0.6050 replaces order" in moved.message
    market(desk, "XRPUSDT", 0.6060)  # through the stop: a market buy
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("20"), what="the stop's fill")


@pytest.mark.asyncio
async def test_a_manual_order_with_stop_loss_and_take_profit_gets_both_legs(desk):
    await long_with_bracket(desk)
    assert desk.bracket_levels("XRPUSDT") == (D("0.5881"), D("0.6181"))  # 0.6001 ∓ 2 % / ± 3 %, on the tick


# ----- move the bracket --------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_move_bracket_moves_both_legs_they_stay_linked_and_the_message_names_them(desk):
    stop_id, _tp_id = await long_with_bracket(desk)
    result = await desk.move_bracket("XRPUSDT", stop_loss=D("0.59504"), take_profit=D("0.6100"))
    assert result.ok, result.message
    assert result.message.startswith("PAPER XRPUSDT long: stop-loss 0.5881 -> 0.5950 (SELL 100.0 XRPUSDT) · order")
    assert "take-profit 0.6181 -> 0.6100 (SELL 100.0 XRPUSDT)" in result.message
    assert desk.bracket_levels("XRPUSDT") == (D("0.5950"), D("0.6100"))
    assert desk.broker.get(stop_id).status is OrderStatus.CANCELED and journaled(desk, stop_id)[0] == "CANCELED"
    new_stop = next(o for o in desk.broker.open_orders("XRPUSDT") if o.request.type is OrderType.STOP_MARKET)
    assert journaled(desk, new_stop.id)[:4] == ("NEW", "100", None, "0.5950")
    market(desk, "XRPUSDT", 0.6110)  # through the moved take-profit: it fills, the moved stop is canceled (OCO)
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the take-profit")
    assert desk.broker.open_orders("XRPUSDT") == []
    assert new_stop.status is OrderStatus.CANCELED


@pytest.mark.asyncio
async def test_a_stop_loss_on_the_wrong_side_of_the_market_is_refused_in_words(desk):
    await long_with_bracket(desk)
    refused = await desk.move_bracket("XRPUSDT", stop_loss=D("0.6050"))
    assert not refused.ok
    assert refused.message == ("stop-loss 0.6050 for the long XRPUSDT position is not below the market 0.6000: it "
                               "would sell at once; a stop-loss on a long sits below the market")
    refused = await desk.move_bracket("XRPUSDT", take_profit=D("0.5990"))
    assert not refused.ok and "take-profit 0.5990 for the long XRPUSDT position is not above the market" in \
        refused.message
    assert desk.bracket_levels("XRPUSDT") == (D("0.5881"), D("0.6181"))  # untouched
    assert not (await desk.move_bracket("BTCUSDT", stop_loss=D("59000"))).ok  # no position


@pytest.mark.asyncio
async def test_a_blotter_replace_of_a_bracket_leg_moves_the_bracket(desk):
    stop_id, _tp = await long_with_bracket(desk)
    result = await desk.replace_order(stop_id, price=D("0.5900"))
    assert result.ok and "stop-loss 0.5881 -> 0.5900" in result.message
    assert desk.bracket_levels("XRPUSDT")[0] == D("0.5900")


# ----- cancel all, flatten all, auto-approve -------------------------------------------------------------------

@pytest.mark.asyncio
async def test_cancel_all_cancels_every_working_order_without_flattening_or_halting(desk):
    await long_with_bracket(desk)
    await working_limit(desk)
    result = await desk.cancel_all()
    assert result.ok and result.message == ("PAPER cancel all (every symbol): 1 order canceled; stops and targets of "
                                            "open positions kept")
    assert len(desk.broker.open_orders()) == 2  # the position's stop-loss and take-profit
    assert desk.portfolio.position("XRPUSDT").qty == D("100") and desk.risk.state is RiskState.ACTIVE


@pytest.mark.asyncio
async def test_flatten_all_closes_every_position_and_trading_goes_on(desk):
    await long_with_bracket(desk)
    assert (await desk.submit_manual(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, D("0.01")))).ok
    await wait_until(lambda: desk.portfolio.position("BTCUSDT").qty == D("0.01"), what="the BTC buy")
    result = await desk.flatten_all()
    assert result.ok and result.message == "PAPER flatten all: 2 of 2 positions closing"
    await wait_until(lambda: all(desk.portfolio.position(s).qty == 0 for s in ("XRPUSDT", "BTCUSDT")),
                     what="both flat")
    assert desk.broker.open_orders() == [] and desk.risk.state is RiskState.ACTIVE
    assert not (await desk.flatten_all()).ok  # nothing left


def test_set_auto_approve_turns_it_on_and_off_and_says_so(desk):
    assert desk.set_auto_approve(True).message == "auto-approve ON" and desk.proposals.auto_approve
    assert desk.messages[-1][2] == "auto-approve ON (PAPER)"
    assert desk.set_auto_approve(False).ok and not desk.proposals.auto_approve


# ----- live: the built-in exchange on loopback ------------------------------------------------------------------

@pytest.fixture
def live_journal(tmp_path: Path):
    with Journal(tmp_path / "journal-live.sqlite3") as j:
        yield j


async def live_desk(api: OrderApi, journal: Journal) -> TradingDesk:
    instruments = Instruments()
    broker = LiveBroker(exchange="built-in", api_key=KEY, secret=SECRET, testnet=False, instruments=instruments,
                        endpoints=LiveEndpoints(api.rest_url, api.ws_api_url), id_prefix="T",
                        journal_hook=journal.record_reconciliation, symbols=[SYM])
    desk = make_desk(broker, journal, instruments, [SYM])  # the desk journals (its listener), as in the session
    await started(broker)
    desk.on_market([Trade(SYM, 100.0, 1.0, Side.BUY, 1, NOW, 0)])
    return desk


@pytest.mark.asyncio
async def test_live_replace_cancels_at_the_exchange_and_sends_the_new_order(api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        sent = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.LIMIT, D("0.1"), limit_price=D("97")))
        assert sent.ok, sent.message
        result = await desk.replace_order(sent.order_id, price=D("97.5"), qty=D("0.2"))
        assert result.ok, result.message
        assert result.message.startswith(f"LIVE BUY 0.20000 {SYM} limit @ 97.50") and sent.order_id in result.message
        old = api.engine.get(KEY, SYM, client_id=sent.order_id)
        new = api.engine.get(KEY, SYM, client_id=result.order_id)
        assert old.status == "CANCELED"
        assert (new.status, new.price, new.qty) == ("NEW", D("97.5"), D("0.2"))
        assert [o.id for o in desk.broker.open_orders(SYM)] == [result.order_id]
    finally:
        await desk.broker.aclose()


@pytest.mark.asyncio
async def test_live_move_bracket_moves_the_stop_at_the_exchange_and_the_held_take_profit(api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        entry = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.MARKET, D("0.5"),
                                                      stop_loss_pct=D(2), take_profit_pct=D(3)))
        assert entry.ok, entry.message
        await until(lambda: len(desk.broker.open_orders(SYM)) == 2, "the legs")
        await stream_caught_up(desk.broker, api)
        await until(lambda: desk.portfolio.position(SYM).qty > 0, "the position")
        legs = {o.request.type: o for o in desk.broker.open_orders(SYM)}
        stop, tp = legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]
        refused = await desk.move_bracket(SYM, stop_loss=D("100.5"))
        assert not refused.ok and "not below the market 100.00" in refused.message
        result = await desk.move_bracket(SYM, stop_loss=D("98.5"), take_profit=D("104"))
        assert result.ok, result.message
        assert "stop-loss 98.00 -> 98.50" in result.message and "take-profit 103.00 -> 104.00" in result.message
        assert api.engine.get(KEY, SYM, client_id=stop.id).status == "CANCELED"
        legs = {o.request.type: o for o in desk.broker.open_orders(SYM)}
        new_stop, new_tp = legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]
        ex = api.engine.get(KEY, SYM, client_id=new_stop.id)
        assert (ex.type, ex.side, ex.stop_price, ex.status) == ("STOP_LOSS", "SELL", D("98.5"), "NEW")
        assert (new_stop.request.parent_id, new_stop.request.origin) == (stop.request.parent_id, OrderOrigin.BRACKET)
        assert new_tp.id.endswith("-TP") and new_tp.request.limit_price == D("104")
        assert tp.status is OrderStatus.CANCELED
        assert desk.bracket_levels(SYM) == (D("98.5"), D("104"))
        assert len([o for o in api.engine.all_orders(KEY, SYM) if o.status == "NEW"]) == 1  # one stop, never two
    finally:
        await desk.broker.aclose()


@pytest.mark.asyncio
async def test_live_a_manual_stop_rests_at_the_exchange_and_is_replaced_there(api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        refused = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.STOP_MARKET, D("0.1"),
                                                        stop_price=D("99")))
        assert not refused.ok and "not above the market 100.00" in refused.message
        sent = await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.STOP_MARKET, D("0.1"),
                                                     stop_price=D("102")))
        assert sent.ok and sent.message.startswith(f"LIVE BUY 0.10000 {SYM} stop @ 102.00 sent"), sent.message
        ex = api.engine.get(KEY, SYM, client_id=sent.order_id)
        assert (ex.type, ex.side, ex.stop_price, ex.status) == ("STOP_LOSS", "BUY", D("102"), "NEW")
        moved = await desk.replace_order(sent.order_id, stop_price=D("101.5"))
        assert moved.ok, moved.message
        assert api.engine.get(KEY, SYM, client_id=sent.order_id).status == "CANCELED"
        ex = api.engine.get(KEY, SYM, client_id=moved.order_id)
        assert (ex.type, ex.side, ex.stop_price, ex.status) == ("STOP_LOSS", "BUY", D("101.5"), "NEW")
    finally:
        await desk.broker.aclose()


@pytest.mark.asyncio
async def test_a_position_without_a_bracket_gets_a_stop_loss_then_a_take_profit_linked_to_it(desk):
    assert (await desk.submit_manual(OrderRequest("XRPUSDT", Side.BUY, OrderType.MARKET, D("100")))).ok
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == D("100"), what="the buy")
    placed = await desk.move_bracket("XRPUSDT", stop_loss=D("0.5900"))
    assert placed.ok and "stop-loss placed at 0.5900 (SELL 100.0 XRPUSDT) · order" in placed.message
    (stop,) = desk.broker.open_orders("XRPUSDT")
    assert (stop.request.origin, stop.request.reduce_only, stop.request.parent_id) == \
        (OrderOrigin.BRACKET, True, "XRPUSDT:position")
    assert (await desk.move_bracket("XRPUSDT", take_profit=D("0.6100"))).ok
    assert desk.bracket_levels("XRPUSDT") == (D("0.5900"), D("0.6100"))
    market(desk, "XRPUSDT", 0.6110)  # the take-profit fills; its sibling, the stop, is canceled (OCO)
    await wait_until(lambda: desk.portfolio.position("XRPUSDT").qty == 0, what="the take-profit")
    assert stop.status is OrderStatus.CANCELED and desk.broker.open_orders() == []


@pytest.mark.asyncio
async def test_live_a_position_without_a_bracket_gets_a_stop_at_the_exchange_and_a_held_take_profit(
        api: OrderApi, live_journal):
    desk = await live_desk(api, live_journal)
    try:
        assert (await desk.submit_manual(OrderRequest(SYM, Side.BUY, OrderType.MARKET, D("0.5")))).ok
        await stream_caught_up(desk.broker, api)
        await until(lambda: desk.portfolio.position(SYM).qty > 0, "the position")
        placed = await desk.move_bracket(SYM, stop_loss=D("98"), take_profit=D("103"))
        assert placed.ok, placed.message
        legs = {o.request.type: o for o in desk.broker.open_orders(SYM)}
        stop, tp = legs[OrderType.STOP_MARKET], legs[OrderType.LIMIT]
        ex = api.engine.get(KEY, SYM, client_id=stop.id)
        assert (ex.type, ex.side, ex.stop_price, ex.status) == ("STOP_LOSS", "SELL", D("98"), "NEW")
        assert tp.id.endswith("-TP") and tp.request.parent_id == stop.request.parent_id == f"{SYM}:position"
        desk.broker.on_market([Trade(SYM, 103.0, 1.0, Side.BUY, 2, NOW, 0)])  # the take-profit is reached
        await until(lambda: api.engine.get(KEY, SYM, client_id=stop.id).status == "CANCELED", "the stop canceled")
        await until(lambda: not tp.status.is_open and desk.broker.open_orders(SYM) == [], "the exit")
        await stream_caught_up(desk.broker, api)
        await until(lambda: desk.portfolio.position(SYM).qty == 0, "flat")
    finally:
        await desk.broker.aclose()


@pytest.mark.asyncio
async def test_live_a_moved_stop_is_put_back_at_its_moved_price_by_the_restart_repair(api: OrderApi, live_journal):
    """The take-profit was reached (the moved stop canceled), the terminal died before the exit: the repair's new
    stop goes where the trader moved it, not back to the entry's percentage."""
    from tests.trading.test_live_brackets import bracketed_entry, held, restarted, start_report

    first = await started(make_broker(api, live_journal))
    try:
        entry, stop, _tp = await bracketed_entry(first)
        move = await first.replace_leg(stop.id, dataclasses.replace(stop.request, stop_price=D("98.5")))
        moved = move.new
        assert move.moved and moved is not None and moved.status is OrderStatus.NEW
    finally:
        await first.aclose()
    api.engine.cancel(KEY, SYM, client_id=moved.id)
    second = await restarted(api, live_journal, held(api, entry), price_of=lambda _s: D("102"))
    try:
        (repair,) = start_report(live_journal)["bracket_repairs"]
        assert repair["action"] == "stop placed"
        (again,) = [o for o in second.open_orders() if o.request.type is OrderType.STOP_MARKET]
        assert again.request.stop_price == D("98.5")
        assert api.engine.get(KEY, SYM, client_id=again.id).stop_price == D("98.5")
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_the_log_says_what_the_trader_did_in_words(desk, caplog):
    """The walkthrough's log: a cancel and a replace left no line; the kill switch was an ERROR with "1 positions"."""
    caplog.set_level("INFO", logger="app.trading.desk")
    oid = await working_limit(desk)
    replaced = await desk.replace_order(oid, price=D("0.5910"))
    assert replaced.ok, replaced.message
    assert any(f"order {oid} replaced by {replaced.order_id}" in r.getMessage() for r in caplog.records)
    assert (await desk.cancel(replaced.order_id)).ok
    assert any(f"cancel sent for order {replaced.order_id}" in r.getMessage() for r in caplog.records)
    await long_with_bracket(desk)
    caplog.clear()
    result = await desk.kill_switch()
    assert result.ok and "1 position flattened" in result.message, result.message
    kill = [r for r in caplog.records if "KILL SWITCH" in r.getMessage()]
    assert kill and all(r.levelname == "WARNING" for r in kill)  # asked for: a warning, not an error
