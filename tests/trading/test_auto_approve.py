"""Auto-approve, the only path that trades without a human, end to end through real parts: the offline rules'
decision -> a proposal -> an order auto-approve sends (scaled down to its value cap) -> a paper fill -> the SQLite
journal. Then one proposal refused by each of auto-approve's own limits, one refused by risk, and the drift
confirmation of a human approval (asked, named, confirmed, sent)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal as D

import pytest

from app.llm.providers import OfflineProvider
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import MarketState
from app.market.instruments import Instrument, Instruments
from app.models import OrderStatus, Quote, Side, Trade
from app.supervision import Supervisor
from app.trading.broker import PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import Journal
from app.trading.portfolio import Portfolio
from app.trading.proposals import AutoApproveLimits, ProposalBook, ProposalStatus
from app.trading.risk import RiskLimits, RiskManager
from tests.conftest import wait_until

NOW = 1_723_161_255_000
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"), min_notional=D("5"))
PRICES = {"XRPUSDT": 0.6012, "BTCUSDT": 61_400.0}


def state(symbol: str = "XRPUSDT", **overrides: float) -> MarketState:
    """A strong uptrend as the offline rules read it (trend and momentum well over their thresholds)."""
    p = PRICES[symbol]
    values = dict(symbol=symbol, timeframe="1m", exchange_ms=NOW, bar_close_ms=NOW, last_price=p, ema_fast=p,
                  ema_slow=p, vwap=p,
                  ret_1=0.05, ret_5=0.3, ret_15=1.6, ret_60=2.0, ema_spread_pct=0.4, rsi=62.0, atr_pct=0.1,
                  vwap_dist_pct=0.1, volume_ratio=1.5, spread_bps=1.0, move_pct=0.0)
    values.update(overrides)
    return MarketState(**values)  # type: ignore[arg-type]


def scripted(symbol: str, body: DecisionBody) -> Decision:
    meta = DecisionMeta(provider="scripted", model="scripted", prompt_version="t", latency_ms=1.0,
                        cache_status=CacheStatus.MISS)
    return Decision.about(state(symbol), body, meta)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def spawned() -> list[asyncio.Task]:
    return []


@pytest.fixture
def supervisor() -> Supervisor:
    return Supervisor(inject="")


@pytest.fixture
def desk(tmp_path, supervisor, spawned):
    def spawn(coro, name):  # the session's spawner: supervised; the test keeps a handle on each task
        spawned.append(task := supervisor.spawn(coro, name))
        return task

    instruments = Instruments.of(XRP, BTC)
    journal = Journal(tmp_path / "journal.sqlite3")
    broker = PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: NOW)
    proposals = ProposalBook(expiry_s=30.0, max_drift_pct=0.5, auto_approve=True, instruments=instruments,
                             auto_limits=AutoApproveLimits(min_confidence=0.75, max_order_value=D("200")),
                             clock=Clock(), wall_ms=lambda: NOW)
    desk = TradingDesk(broker=broker, risk=RiskManager(RiskLimits(), instruments=instruments),
                       portfolio=Portfolio(starting_cash=D("10000")), journal=journal, proposals=proposals,
                       symbols=["XRPUSDT", "BTCUSDT"], wall_ms=lambda: NOW, spawn=spawn)
    for i, (symbol, p) in enumerate(PRICES.items()):
        on_market(desk, [Trade(symbol, p, 10.0, Side.BUY, i + 1, NOW, 0),
                        Quote(symbol, p - float(desk.instruments.get(symbol).tick_size), 1e6, p, 1e6, i + 1, NOW, 0)])
    yield desk
    journal.close()


def on_market(desk: TradingDesk, batch: list) -> None:
    """Market data as the session gives it: to the desk (prices, marks) and to the paper broker (its fills)."""
    desk.on_market(batch)
    desk.broker.on_market(batch)


def journal_rows(desk: TradingDesk, sql: str) -> list[tuple]:
    with sqlite3.connect(desk.journal.path) as conn:
        return conn.execute(sql).fetchall()


async def settle(desk: TradingDesk, count: int) -> None:
    await wait_until(lambda: desk.auto_approved + desk.auto_refused >= count, what="auto-approve to decide")
    await wait_until(lambda: not desk.broker._pending, what="orders in flight to arrive")


@pytest.mark.asyncio
async def test_an_offline_rules_proposal_is_auto_approved_scaled_to_the_cap_and_filled_into_the_journal(desk):
    decision = await OfflineProvider().decide(state())
    body = decision.body
    assert body.action is Action.BUY and body.confidence >= 0.75 and body.size_pct >= 7.5  # as the rules size it
    p = desk.on_decision(decision, state())
    await settle(desk, 1)
    assert desk.auto_approved == 1 and p.status is ProposalStatus.APPROVED
    # 7.5 %+ of 10,000 USDT is over 1,200 XRP; auto-approve's cap of 200 USDT at 0.6012 is 332.6 XRP (lot 0.1)
    order = next(o for o in desk.broker.orders if o.id == p.order_id)
    assert order.request.qty == D("332.6") and order.status is OrderStatus.FILLED
    assert any("scaled down from" in text and "to 332.6 XRP" in text for _, _, text in desk.messages)
    assert journal_rows(desk, f"SELECT kind FROM reviews WHERE proposal_id = '{p.id}'") == [("AUTO_APPROVED",)]
    # The journal holds what was sent beside what the proposal implied: the scaled-down quantity.
    (original, edited), = journal_rows(desk, f"SELECT original, edited FROM reviews WHERE proposal_id = '{p.id}'")
    assert json.loads(edited)["qty"] == "332.6" and D(json.loads(original)["qty"]) > D("332.6")
    fills = desk.journal.all_fills()
    assert [(f.symbol, f.side, f.qty, f.price) for f in fills] == [("XRPUSDT", Side.BUY, D("332.6"), D("0.6012"))]
    assert desk.portfolio.position("XRPUSDT").qty == D("332.6")


@pytest.mark.parametrize(("body", "symbol", "why"), [
    (DecisionBody(action=Action.BUY, size_pct=5, confidence=0.74, rationale="t"), "XRPUSDT",
     "confidence 0.74 is below auto-approve's 0.75"),
    (DecisionBody(action=Action.CLOSE, size_pct=0, confidence=0.9, rationale="t"), "XRPUSDT",
     "closing a position is left to the trader"),
    # a tiny share of equity (4 USDT of BTC) is below the exchange's minimum value: auto-approve never rounds up
    (DecisionBody(action=Action.BUY, size_pct=0.04, confidence=0.9, rationale="t"), "BTCUSDT",
     "order value 3.68 USDT is below the minimum 5.00 USDT for BTCUSDT"),
])
@pytest.mark.asyncio
async def test_each_auto_approve_limit_leaves_the_proposal_to_the_trader_and_says_why(desk, body, symbol, why):
    p = desk.on_decision(scripted(symbol, body), state(symbol))
    await settle(desk, 1)
    assert desk.auto_refused == 1 and p.status is ProposalStatus.PENDING and not desk.broker.orders
    assert desk.messages[-1][2] == f"auto-approve left {body.action.value} {symbol} to the trader: {why}"
    assert journal_rows(desk, "SELECT COUNT(*) FROM reviews") == [(0,)]


@pytest.mark.asyncio
async def test_risk_still_vetoes_what_auto_approve_would_send(desk):
    desk.risk.limits = RiskLimits(position_value_by_symbol={"XRPUSDT": D("100")})
    p = desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.BUY, size_pct=9, confidence=0.9,
                                                         rationale="t")), state())
    await wait_until(lambda: desk.risk.vetoes, what="a risk veto")
    assert p.status is ProposalStatus.PENDING and not desk.broker.orders and desk.auto_approved == 0
    await settle(desk, 1)
    assert desk.auto_refused == 1  # a refusal whoever made it: left to the trader
    assert "auto-approve BUY XRPUSDT: risk: buy 332.6 XRP would take the position from 0 to 332.6 XRPUSDT, worth " \
           "199.96 USDT; the limit is 100.00 USDT per symbol" in desk.messages[-1][2]
    assert journal_rows(desk, "SELECT kind, code FROM risk_events") == [("VETO", "POSITION_LIMIT")]


@pytest.mark.asyncio
async def test_approving_after_the_price_drifted_asks_for_confirmation_naming_the_order_then_sends(desk):
    desk.proposals.auto_approve = False
    p = desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.SELL, size_pct=1, confidence=0.6,
                                                         rationale="t")), state())
    on_market(desk, [Trade("XRPUSDT", 0.6100, 10.0, Side.SELL, 9, NOW, 0),  # +1.46 %, beyond the 0.5 % bound
                    Quote("XRPUSDT", 0.6099, 1e6, 0.6100, 1e6, 9, NOW, 0)])
    asked = await desk.approve(p.id)
    assert not asked.ok and asked.needs_confirmation and not desk.broker.orders
    assert asked.message == ("SELL 163.9 XRPUSDT: price moved 1.46% since the proposal (0.6012 -> 0.6100); "
                             "the bound is 0.5%: confirm to send anyway")
    assert p.status is ProposalStatus.PENDING
    sent = await desk.approve(p.id, confirm_drift=True)
    assert sent.ok and p.status is ProposalStatus.APPROVED
    order = next(o for o in desk.broker.orders if o.id == sent.order_id)
    assert order.request.side is Side.SELL and order.request.qty == D("163.9")


@pytest.mark.asyncio
async def test_auto_approve_refuses_a_proposal_whose_price_drifted_and_counts_it(desk):
    on_market(desk, [Trade("XRPUSDT", 0.6100, 10.0, Side.SELL, 9, NOW, 0),  # +1.46 % since the model saw 0.6012
                    Quote("XRPUSDT", 0.6099, 1e6, 0.6100, 1e6, 9, NOW, 0)])
    p = desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.BUY, size_pct=1, confidence=0.9,
                                                         rationale="t")), state())
    await settle(desk, 1)
    assert desk.auto_refused == 1 and desk.auto_approved == 0 and not desk.broker.orders
    assert p.status is ProposalStatus.PENDING  # the trader may still confirm it
    assert "price moved 1.46% since the proposal" in desk.messages[-1][2]
    assert journal_rows(desk, "SELECT COUNT(*) FROM reviews") == [(0,)]


@pytest.mark.asyncio
async def test_an_auto_approval_that_raises_is_a_supervised_fault_not_a_lost_task(desk, supervisor, monkeypatch):
    def broken(*args, **kwargs):
        raise ArithmeticError("boom")

    monkeypatch.setattr(desk.proposals, "auto_decide", broken)
    p = desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.BUY, size_pct=1, confidence=0.9,
                                                         rationale="t")), state())
    await wait_until(lambda: supervisor.fault_count == 1, what="the fault to be counted")
    assert supervisor.faults[f"auto-approve {p.id}"].last_error == "ArithmeticError: boom"


@pytest.mark.asyncio
async def test_closing_the_desk_cancels_an_auto_approval_still_in_flight(desk, spawned):
    desk.broker.submit_latency_s = 60.0  # the order is still on its way when the terminal closes
    desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.BUY, size_pct=1, confidence=0.9,
                                                     rationale="t")), state())
    await wait_until(lambda: desk.broker._pending, what="the order to be in flight")
    desk.close()
    (task,) = spawned
    await wait_until(task.done, what="the auto-approval to end")
    assert task.cancelled()
