"""The decision cadence on an explicit clock and a real MarketData: every symbol asked every interval and at each
bar boundary of the market clock, the cache absorbing what has not changed, a current decision per symbol, a
history of what is news, and the rolling numbers of the cache line."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.llm.cache import DecisionCache
from app.llm.providers import OfflineProvider, ProviderError
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.llm.service import BOUNDARY_GRACE_MS, DecisionEvent, DecisionService
from app.market.features import FEATURE_NAMES, MarketState
from app.market.state import MarketData
from app.models import Side, Trade

SYMBOL, OTHER = "BTCUSDT", "ETHUSDT"
MINUTE = 60_000
M0 = 28_333_333 * MINUTE  # a minute boundary
BARS = 30
FORMING = M0 + BARS * MINUTE  # the open of the bar forming after the history


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class MarketClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def market_with_minutes(*symbols: str) -> MarketData:
    """``BARS`` closed 1m bars of a gently rising, wobbling price per symbol, and a forming bar's first trade."""
    market = MarketData(list(symbols), capacity=10_000)
    trades = []
    for s, symbol in enumerate(symbols):
        for i in range(BARS + 1):
            for j, bump in enumerate((0.0, 6.0, -3.0) if i < BARS else (0.0,)):
                price = (100.0 + i * 0.3 + bump * 0.1 - (0.5 if i % 4 == 0 else 0.0)) * (s + 1)
                trades.append(Trade(symbol, price, 1.0 + j, Side.BUY, len(trades), M0 + i * MINUTE + j * 15_000, 0))
    market.apply(trades)
    return market


def trade(market: MarketData, symbol: str, price: float, at_ms: int) -> None:
    market.apply([Trade(symbol, price, 0.5, Side.SELL, 1_000_000 + at_ms // 1000, at_ms, 0)])


class CountingProvider:
    """A model stand-in that counts its calls; it says SELL above ``sell_above``, else BUY, and fails on demand."""

    name = "counting"
    model = "counting-model"
    prompt_version = "t1"

    def __init__(self, sell_above: float = math.inf) -> None:
        self.calls = 0
        self.sell_above = sell_above
        self.fail = False

    async def decide(self, state: MarketState) -> Decision:
        self.calls += 1
        if self.fail:
            raise ProviderError("server_error", "the endpoint answered 500")
        action = Action.SELL if state.last_price > self.sell_above else Action.BUY
        body = DecisionBody(action=action, size_pct=5, confidence=0.8, rationale=f"{action.value} at the price")
        return Decision.about(state, body, DecisionMeta(
            provider=self.name, model=self.model, prompt_version=self.prompt_version, latency_ms=2000.0,
            prompt_tokens=100, completion_tokens=20, cost_usd=0.001, cache_status=CacheStatus.MISS))

    async def aclose(self) -> None:
        return None


def tight_cache(clock: Clock) -> DecisionCache:
    """Every closed-bar feature loose, the live ones (the price within the bar) 0.05 %: a move of the live price
    of more than that is a new question; no ATR band, so only these tolerances decide."""
    tolerances = {name: 1.0 for name in FEATURE_NAMES}
    tolerances.update(rsi=5.0, vwap_dist_pct=0.05, move_pct=0.05, spread_bps=10.0, volume_ratio=5.0)
    return DecisionCache(tolerances, clock=clock, price_band_atr=math.inf, audit_rate=0.0)


def last_price(market: MarketData, symbol: str = SYMBOL) -> float:
    return market[symbol].last_trade.price


async def ask_due(svc: DecisionService) -> int:
    tasks = svc.ask_due()
    await asyncio.gather(*tasks)
    return len(tasks)


@pytest.mark.asyncio
async def test_a_5_s_cadence_asks_every_symbol_every_5_s_within_one_bar():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    svc = DecisionService(OfflineProvider(), market_with_minutes(SYMBOL, OTHER), timeframe="1m", interval_s=5.0,
                          clock=clock, market_ms=market_clock)
    asked = []
    for t in (0.0, 1.0, 4.9, 5.0, 7.0, 9.99, 10.0, 15.0):
        clock.t, market_clock.ms = t, FORMING + 1_000 + int(t * 1000)
        asked.append(await ask_due(svc))
    assert asked == [2, 0, 0, 2, 0, 0, 2, 2]
    assert svc.stats.requests == 8


@pytest.mark.asyncio
async def test_the_cache_absorbs_repeats_and_the_model_is_called_only_when_the_market_moved_out_of_tolerance():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    provider = CountingProvider()
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock)
    base = last_price(market)
    for k in range(8):  # 35 s of a price that barely moves: one question for the model
        clock.t, market_clock.ms = k * 5.0, FORMING + 1_000 + k * 5_000
        trade(market, SYMBOL, base * (1 + 0.00002 * (k % 3)), market_clock.ms - 500)
        assert await ask_due(svc) == 1
    assert provider.calls == 1
    assert svc.stats.by_badge[CacheStatus.MISS] == 1
    assert svc.stats.by_badge[CacheStatus.HIT] + svc.stats.by_badge[CacheStatus.SIMILAR] == 7
    clock.t, market_clock.ms = 40.0, FORMING + 41_000
    trade(market, SYMBOL, base * 1.003, market_clock.ms - 500)  # 0.3 %: out of tolerance
    await ask_due(svc)
    assert provider.calls == 2
    await svc.aclose()


@pytest.mark.asyncio
async def test_a_bar_boundary_of_the_market_clock_asks_at_once_whatever_the_interval():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    svc = DecisionService(OfflineProvider(), market_with_minutes(SYMBOL), timeframe="1m", interval_s=3600.0,
                          clock=clock, market_ms=market_clock)
    assert await ask_due(svc) == 1  # never asked: asked at once
    clock.t, market_clock.ms = 30.0, FORMING + 59_999
    assert await ask_due(svc) == 0
    clock.t, market_clock.ms = 31.0, FORMING + MINUTE + BOUNDARY_GRACE_MS  # the bar closed, no trade needed
    assert await ask_due(svc) == 1
    assert svc.current[SYMBOL].state.bar_close_ms == FORMING + MINUTE
    assert svc.current[SYMBOL].state.exchange_ms == FORMING + MINUTE + BOUNDARY_GRACE_MS


@pytest.mark.asyncio
async def test_the_boundary_ask_waits_a_grace_for_the_closed_bars_late_trades():
    """The boundary ask is the new bar's one model call: a trade stamped before the boundary that arrives just
    after it must be in that question, not left out of it for the whole bar."""
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    provider = CountingProvider()
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock)
    assert await ask_due(svc) == 1
    clock.t, market_clock.ms = 59.0, FORMING + MINUTE + 200  # just past the boundary; the interval is due too
    assert await ask_due(svc) == 0, "no ask within the grace after a boundary"
    late = last_price(market) * 1.01
    trade(market, SYMBOL, late, FORMING + MINUTE - 50)  # stamped in the closed bar, arrived late
    clock.t, market_clock.ms = 59.5, FORMING + MINUTE + BOUNDARY_GRACE_MS
    assert await ask_due(svc) == 1
    state = svc.current[SYMBOL].state
    assert state.bar_close_ms == FORMING + MINUTE and state.last_price == pytest.approx(late)
    assert provider.calls == 2
    await svc.aclose()


class Feed:
    """What the session tells the service: None while live, else the feed's state."""

    def __init__(self) -> None:
        self.state: str | None = None

    def __call__(self, _symbol: str) -> str | None:
        return self.state


@pytest.mark.asyncio
async def test_no_decision_is_made_while_the_feed_is_down_and_ask_now_says_why():
    """A dropped socket for 3 minutes must not read as 3 quiet minutes: flat bars at the last price, answers that
    flip and become proposals."""
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    provider = CountingProvider(sell_above=0.0)  # flat bars or not, it would SELL: any ask would be news
    feed = Feed()
    svc = DecisionService(provider, market, timeframe="1m", interval_s=5.0, clock=clock, market_ms=market_clock,
                          why_not_live=feed)
    events: list[DecisionEvent] = []
    svc.listeners.append(events.append)
    assert await ask_due(svc) == 1 and provider.calls == 1
    feed.state = "RECONNECTING"
    for k in range(1, 37):  # 3 minutes of a wall clock going on: bar boundaries and intervals, no trades
        clock.t, market_clock.ms = k * 5.0, FORMING + 1_000 + k * 5_000
        assert await ask_due(svc) == 0
    assert provider.calls == 1 and len(events) == 1
    assert svc.stats.skipped_not_live == 36
    assert svc.ask_now(SYMBOL) is None
    card = svc.decisions[-1]
    assert card.meta.cache_status is CacheStatus.ERROR and card.body is None
    assert card.meta.error == "no_live_data: no live market data: RECONNECTING"
    assert provider.calls == 1 and svc.current[SYMBOL].decision.body.action is Action.SELL
    feed.state = None  # back: asked at once, not after the interval
    clock.t += 0.2
    market_clock.ms += 200
    assert await ask_due(svc) == 1 and provider.calls == 2


@pytest.mark.asyncio
async def test_with_the_breaker_open_an_ask_the_cache_can_answer_is_served_and_repeated_errors_are_counted():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL, OTHER)
    provider = CountingProvider()
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock, breaker_threshold=2, breaker_cooldown_s=3600.0)
    assert await ask_due(svc) == 2 and provider.calls == 2  # both answered, stored in the cache
    provider.fail = True
    for k in (1, 2):  # SYMBOL's market moves: new questions, the model fails twice, the breaker opens
        clock.t, market_clock.ms = k * 5.0, FORMING + 1_000 + k * 5_000
        trade(market, SYMBOL, last_price(market) * 1.003, market_clock.ms - 100)
        await svc.ask_now(SYMBOL)
    assert svc.stats.breaker_trips == 1
    for k in range(3, 15):  # an outage asked every 5 s, within the bar and the stored answers' lifetime
        clock.t, market_clock.ms = k * 5.0, FORMING + 12_000 + k * 100
        await ask_due(svc)
    assert provider.calls == 4, "no model call while the breaker is open"
    assert svc.current[OTHER].decision.meta.cache_status in (CacheStatus.HIT, CacheStatus.SIMILAR), \
        "OTHER's unchanged market is answered from the cache"
    history = [(d.symbol, d.meta.cache_status, (d.meta.error or "").split(":")[0]) for d in svc.decisions]
    assert history == [(SYMBOL, CacheStatus.MISS, ""), (OTHER, CacheStatus.MISS, ""),
                       (SYMBOL, CacheStatus.ERROR, "server_error"), (SYMBOL, CacheStatus.ERROR, "circuit_open")]
    assert svc.error_repeats[SYMBOL] == 11 and svc.error_repeats[OTHER] == 0
    await svc.aclose()


@pytest.mark.asyncio
async def test_a_quiet_symbol_is_still_asked_on_the_market_clock():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL, OTHER)
    svc = DecisionService(OfflineProvider(), market, timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock)
    for k in range(1, 4):  # only SYMBOL trades; OTHER's last trade stays where it was
        clock.t, market_clock.ms = k * 5.0, FORMING + 1_000 + k * 5_000
        trade(market, SYMBOL, last_price(market), market_clock.ms)
        await ask_due(svc)
        quiet = svc.current[OTHER]
        assert quiet.updated_at == clock.t, "the quiet symbol's decision is as current as the busy one's"
        assert quiet.state.exchange_ms == market_clock.ms


@pytest.mark.asyncio
async def test_history_records_changes_fresh_answers_and_errors_and_counts_confirmations():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    base = last_price(market)
    provider = CountingProvider(sell_above=base * 1.002)
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", interval_s=5.0, clock=clock,
                          market_ms=market_clock)
    events: list[DecisionEvent] = []
    svc.listeners.append(events.append)

    async def ask_at(t: float, price: float | None = None) -> None:
        clock.t, market_clock.ms = t, FORMING + 1_000 + int(t * 1000)
        if price is not None:
            trade(market, SYMBOL, price, market_clock.ms)
        await svc.ask_now(SYMBOL)

    for t in (0.0, 5.0, 10.0):  # one model call, two confirmations from the cache
        await ask_at(t)
    now = svc.current[SYMBOL]
    assert [d.meta.cache_status for d in svc.decisions] == [CacheStatus.MISS]
    assert now.confirmations == 2 and not now.fresh and now.action_since == 0.0 and now.updated_at == 10.0
    assert now.decision.meta.cache_status in (CacheStatus.HIT, CacheStatus.SIMILAR)

    provider.fail = True
    await ask_at(15.0, base * 1.001)  # a new question, and the model fails: an error in the history
    assert svc.decisions[-1].meta.cache_status is CacheStatus.ERROR
    assert svc.current[SYMBOL].decision.body.action is Action.BUY, "an error leaves the current decision"

    provider.fail = False
    await ask_at(20.0, base * 1.001)  # fresh, same action
    await ask_at(25.0, base * 1.004)  # fresh, the action changes
    now = svc.current[SYMBOL]
    assert now.decision.body.action is Action.SELL and now.action_since == 25.0 and now.confirmations == 0
    assert [(e.decision.meta.cache_status, e.changed, e.fresh) for e in events] == [
        (CacheStatus.MISS, True, True), (CacheStatus.ERROR, False, False), (CacheStatus.MISS, False, True),
        (CacheStatus.MISS, True, True)]
    assert [e.decision for e in events] == list(svc.decisions)
    await svc.aclose()


@pytest.mark.asyncio
async def test_without_a_cache_only_a_newer_closed_bar_makes_an_answer_fresh():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    svc = DecisionService(OfflineProvider(), market_with_minutes(SYMBOL), timeframe="1m", interval_s=5.0,
                          clock=clock, market_ms=market_clock)
    for t in (0.0, 5.0, 10.0):  # the rules answer every ask, from the same closed bars
        clock.t, market_clock.ms = t, FORMING + 1_000 + int(t * 1000)
        await ask_due(svc)
    assert len(svc.decisions) == 1 and svc.stats.by_badge[CacheStatus.OFFLINE] == 3
    assert svc.current[SYMBOL].confirmations == 2
    clock.t, market_clock.ms = 60.0, FORMING + MINUTE + 1_000  # a bar closed
    await ask_due(svc)
    # Fresh, but a HOLD repeating a HOLD is no news: the symbol's line is refreshed, the history (one line per symbol
    # per bar otherwise) is not.
    assert svc.current[SYMBOL].fresh and svc.current[SYMBOL].decision.body.action is Action.HOLD
    assert len(svc.decisions) == 1


@pytest.mark.asyncio
async def test_recent_counts_asks_by_what_answered_them_and_forgets_them_after_the_window():
    clock, market_clock = Clock(), MarketClock(FORMING + 1_000)
    market = market_with_minutes(SYMBOL)
    provider = CountingProvider()
    svc = DecisionService(provider, market, cache=tight_cache(clock), timeframe="1m", clock=clock,
                          market_ms=market_clock)
    for t in (0.0, 5.0, 10.0):
        clock.t = t
        await svc.ask_now(SYMBOL)
    provider.fail = True
    clock.t = 15.0
    trade(market, SYMBOL, last_price(market) * 1.01, FORMING + 2_000)
    await svc.ask_now(SYMBOL)
    w = svc.recent()
    assert (w.asks, w.served, w.model_calls, w.errors) == (4, 2, 1, 1)
    assert w.saved_latency_s == pytest.approx(4.0) and w.saved_cost_usd == pytest.approx(0.002)
    assert w.window_s == 3600.0
    clock.t = 1800.0
    assert svc.recent().asks == 4
    clock.t = 3600.0 + 60.0
    assert svc.recent().asks == 0, "an hour later the cache line has forgotten them"
    assert svc.recent(window_s=7200.0).asks == 4
    await svc.aclose()
