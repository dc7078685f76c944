"""The desk listens to the decision service: a stream of answers every few seconds becomes a proposal only when it
is news, superseded proposals are journaled with their reason, and auto-approve acts on new proposals only. Real
parts: the service on an explicit clock with a real cache, the paper broker, an SQLite journal."""

from __future__ import annotations

import sqlite3
from decimal import Decimal as D

import pytest

from app.llm.service import DecisionService
from app.trading.broker import PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import Journal
from app.trading.portfolio import Portfolio
from app.trading.proposals import AutoApproveLimits, ProposalBook, ProposalStatus
from app.trading.risk import RiskLimits, RiskManager
from tests.conftest import wait_until
from tests.llm.test_service_cadence import (
    FORMING,
    SYMBOL,
    Clock,
    CountingProvider,
    MarketClock,
    last_price,
    market_with_minutes,
    tight_cache,
    trade,
)


def wired(tmp_path, *, auto_approve: bool = False, sell_above: float = float("inf"), why_not_live=None):
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    provider = CountingProvider(sell_above=sell_above)
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock)
    journal = Journal(tmp_path / "journal.sqlite3")
    proposals = ProposalBook(expiry_s=30.0, auto_approve=auto_approve, clock=clock,
                             auto_limits=AutoApproveLimits(min_confidence=0.75, max_order_value=D("200")))
    desk = TradingDesk(broker=PaperBroker(submit_latency_s=0.001), risk=RiskManager(RiskLimits()),
                       portfolio=Portfolio(starting_cash=D("10000")), journal=journal, proposals=proposals,
                       symbols=[SYMBOL], why_not_live=why_not_live)
    desk.on_market([market[SYMBOL].last_trade])
    svc.listeners.append(desk.on_decision_event)
    return svc, desk, provider, clock, market_clock, market


async def every_5_s(svc, clock, market_clock, seconds: range) -> None:
    for t in seconds:
        clock.t, market_clock.ms = float(t), FORMING + 1_000 + t * 1000
        for task in svc.ask_due():
            await task


def reviews(desk: TradingDesk) -> list[tuple]:
    with sqlite3.connect(desk.journal.path) as conn:
        return conn.execute("SELECT proposal_id, kind, reason FROM reviews ORDER BY id").fetchall()


@pytest.mark.asyncio
async def test_a_buy_the_cache_confirms_every_5_s_is_proposed_once(tmp_path):
    svc, desk, _, clock, market_clock, _ = wired(tmp_path)
    try:
        await every_5_s(svc, clock, market_clock, range(0, 26, 5))
        assert svc.stats.by_badge["MISS"] == 1 and svc.current[SYMBOL].confirmations == 5
        assert len(desk.proposals.proposals) == 1
        with sqlite3.connect(desk.journal.path) as conn:
            assert conn.execute("SELECT count(*) FROM proposals").fetchone() == (1,)
    finally:
        await svc.aclose()
        desk.journal.close()


@pytest.mark.asyncio
async def test_a_changed_action_supersedes_the_pending_proposal_in_the_journal_too(tmp_path):
    svc, desk, provider, clock, market_clock, market = wired(tmp_path)
    provider.sell_above = last_price(market) * 1.002
    try:
        await every_5_s(svc, clock, market_clock, range(0, 6, 5))
        buy = desk.proposals.pending_for(SYMBOL)
        trade(market, SYMBOL, last_price(market) * 1.005, FORMING + 9_000)
        await every_5_s(svc, clock, market_clock, range(10, 11))
        sell = desk.proposals.pending_for(SYMBOL)
        assert sell is not buy and sell.action.value == "SELL"
        assert buy.status is ProposalStatus.EXPIRED
        assert reviews(desk) == [(buy.id, "EXPIRED", "superseded by SELL")]
    finally:
        await svc.aclose()
        desk.journal.close()


@pytest.mark.asyncio
async def test_after_the_trader_rejects_fresh_answers_of_the_same_action_are_not_proposed_again(tmp_path):
    svc, desk, provider, clock, market_clock, market = wired(tmp_path)
    try:
        await every_5_s(svc, clock, market_clock, range(0, 1))
        assert desk.reject(desk.proposals.pending_for(SYMBOL).id).ok
        for k in range(1, 6):  # the price walks out of tolerance each time: fresh BUYs from the model
            trade(market, SYMBOL, last_price(market) * 1.003, FORMING + 1_000 + k * 5_000 - 100)
            await every_5_s(svc, clock, market_clock, range(k * 5, k * 5 + 1))
        assert provider.calls == 6
        assert desk.proposals.pending() == [] and len(desk.proposals.proposals) == 1
    finally:
        await svc.aclose()
        desk.journal.close()


@pytest.mark.asyncio
async def test_auto_approve_acts_once_on_the_new_proposal_not_on_each_confirmation(tmp_path):
    svc, desk, _, clock, market_clock, _ = wired(tmp_path, auto_approve=True)
    try:
        await every_5_s(svc, clock, market_clock, range(0, 31, 5))
        await wait_until(lambda: desk.auto_approved + desk.auto_refused >= 1, what="auto-approve to decide")
        assert desk.auto_approved + desk.auto_refused == 1
        assert len(desk.proposals.proposals) == 1
    finally:
        await svc.aclose()
        desk.journal.close()


@pytest.mark.asyncio
async def test_a_held_buy_released_after_the_model_turned_sell_is_journaled_superseded(tmp_path):
    svc, desk, provider, clock, market_clock, market = wired(tmp_path)
    provider.sell_above = last_price(market) * 1.002
    try:
        await every_5_s(svc, clock, market_clock, range(0, 1))
        buy = desk.proposals.pending_for(SYMBOL)
        desk.proposals.hold(buy)  # the trader opens Modify on the BUY
        trade(market, SYMBOL, last_price(market) * 1.005, FORMING + 4_000)
        await every_5_s(svc, clock, market_clock, range(5, 6))
        sell = desk.proposals.pending_for(SYMBOL)
        assert sell.action.value == "SELL" and buy.status is ProposalStatus.PENDING
        desk.proposals.release(buy)  # ... and cancels the dialog
        assert buy.status is ProposalStatus.EXPIRED and desk.proposals.pending() == [sell]
        assert reviews(desk) == [(buy.id, "EXPIRED", "superseded by SELL")]
    finally:
        await svc.aclose()
        desk.journal.close()


@pytest.mark.asyncio
async def test_a_proposal_is_not_approved_while_the_feed_is_down(tmp_path):
    # The drift check compares the model's price with the last price; with the feed down that price has stopped
    # moving, so the check would pass whatever the market did meanwhile. The proposal waits for the feed.
    feed = {"state": "RECONNECTING"}
    svc, desk, _, clock, market_clock, _ = wired(
        tmp_path, why_not_live=lambda _symbol: None if feed["state"] == "LIVE" else feed["state"])
    try:
        await every_5_s(svc, clock, market_clock, range(0, 1))
        (p,) = desk.proposals.pending()
        result = await desk.approve(p.id)
        assert not result.ok and "no live market data (RECONNECTING)" in result.message
        assert p.status is ProposalStatus.PENDING and not desk.broker.orders
        feed["state"] = "LIVE"  # back: the approval goes through to the broker (this one has no book to fill from)
        result = await desk.approve(p.id)
        assert "no live market data" not in result.message and p.status is ProposalStatus.APPROVED
    finally:
        await svc.aclose()
        desk.close()
