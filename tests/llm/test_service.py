"""DecisionService on real parts: candles fed with trades, the offline rules, and the OpenAI-style dev server."""

from __future__ import annotations

import asyncio

import pytest

from app.llm.cache import DecisionCache
from app.llm.providers import OfflineProvider, OpenAIProvider, ProviderError
from app.llm.schema import CacheStatus
from app.llm.service import DecisionService, ModelState
from app.market.state import MarketData
from app.models import Side, Trade
from tests.conftest import wait_until
from tests.llm.dev_server import load as load_dev_server

SYMBOL = "BTCUSDT"
T0 = 1_700_000_000_000


def market_with_bars(seconds: int = 90) -> MarketData:
    """A market with ``seconds`` 1-second bars of a gently rising price (two trades per bar)."""
    market = MarketData([SYMBOL], capacity=10_000)
    trades = []
    for i in range(seconds):
        for j, bump in enumerate((0.0, 3.0)):
            price = 60_000.0 + i * 2.0 + bump - (5.0 if i % 7 == 0 else 0.0)
            trades.append(Trade(SYMBOL, price, 0.01 + j * 0.02, Side.BUY, len(trades), T0 + i * 1000 + j * 400, 0))
    market.apply(trades)
    return market


def add_bar(market: MarketData, second: int) -> None:
    """A trade half-way into ``second``'s bar: the market clock (the newest trade) is past the boundary's grace."""
    market.apply([Trade(SYMBOL, 60_500.0, 0.01, Side.SELL, 10_000 + second, T0 + second * 1000 + 500, 0)])


@pytest.fixture
def dev_server_factory():
    servers = []

    def start(**options):
        server = load_dev_server().start_server(**options)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.mark.asyncio
async def test_offline_ask_now_gives_an_offline_decision_with_no_cache():
    svc = DecisionService(OfflineProvider(), market_with_bars(), timeframe="1s")
    task = svc.ask_now(SYMBOL)
    await task
    assert svc.recorded == 1
    d = svc.decisions[-1]
    assert d.meta.cache_status is CacheStatus.OFFLINE and d.body is not None
    assert d.symbol == SYMBOL and d.timeframe == "1s"
    assert svc.model_state is ModelState.READY


@pytest.mark.asyncio
async def test_the_decisions_loop_asks_at_once_and_again_when_a_bar_closes():
    market = market_with_bars()
    svc = DecisionService(OfflineProvider(), market, timeframe="1s", interval_s=3600.0, poll_s=0.005)
    runner = asyncio.create_task(svc.run())
    try:
        await wait_until(lambda: svc.stats.requests == 1, timeout=2, what="the first decision, asked at once")
        add_bar(market, 95)  # the market clock (the newest trade) crosses bar boundaries
        await wait_until(lambda: svc.stats.requests == 2, timeout=2, what="a decision after the bar closed")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


@pytest.mark.asyncio
async def test_no_bars_means_no_request():
    svc = DecisionService(OfflineProvider(), MarketData([SYMBOL]), timeframe="1s")
    assert svc.ask_now(SYMBOL) is None
    assert svc.stats.skipped_no_data == 1 and svc.recorded == 0


@pytest.mark.asyncio
async def test_asks_while_a_request_is_in_flight_wait_for_it_and_become_one_follow_up(dev_server_factory):
    server = dev_server_factory(latency_ms=(300.0, 300.0))
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s")
    try:
        first = svc.ask_now(SYMBOL)
        await wait_until(lambda: server.stats.completions == 1, what="the first request at the server")
        assert svc.ask_now(SYMBOL) is first and svc.ask_now(SYMBOL) is first  # coalesced, nothing cancelled
        await first
        assert not first.cancelled()
        assert svc.stats.coalesced == 2
        assert server.stats.completions == 2, "two asks in flight make one follow-up request, not two"
        assert svc.stats.by_badge == {CacheStatus.MISS: 2}
    finally:
        await provider.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["timeout", "500"])
async def test_a_failing_model_at_a_short_cadence_shows_errors_and_opens_the_breaker(dev_server_factory, fault):
    """Bars close far faster than the model fails (timeout, or a slow HTTP 500): every failure must still finish
    as an ERROR card and count toward the breaker, and the endpoint must not be flooded with requests."""
    server = dev_server_factory(fault=fault, fault_rate=1.0, latency_ms=(200.0, 200.0), timeout_sleep_s=30.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    market = market_with_bars()
    svc = DecisionService(provider, market, timeframe="1s", timeout_s=0.5, poll_s=0.005, breaker_threshold=3,
                          breaker_cooldown_s=60)
    runner = asyncio.create_task(svc.run())
    try:
        second = 100
        while svc.model_state is not ModelState.UNAVAILABLE and second < 400:
            add_bar(market, second)  # a bar closes every ~20 ms: a new ask each time
            second += 1
            await asyncio.sleep(0.02)
        assert svc.model_state is ModelState.UNAVAILABLE, "the breaker never opened"
        errors = [d for d in svc.decisions if d.meta.cache_status is CacheStatus.ERROR]
        reason = "timeout" if fault == "timeout" else "500"
        # Three failures: the first in the history, its repeats counted (the history keeps earlier decisions).
        assert sum(reason in d.meta.error for d in errors) == 1, [d.meta.error for d in errors]
        assert svc.stats.errors_folded >= 2
        assert svc.stats.breaker_trips == 1
        assert server.stats.completions == 3, "at most one request in flight, none after the breaker opened"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await provider.aclose()


@pytest.mark.asyncio
async def test_repeated_failures_open_the_breaker_and_no_failure_becomes_a_proposal(dev_server_factory):
    server = dev_server_factory(fault="500", fault_rate=1.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", breaker_threshold=2, breaker_cooldown_s=60)
    try:
        for _ in range(2):
            await svc.ask_now(SYMBOL)
        assert svc.model_state is ModelState.UNAVAILABLE
        calls = server.stats.completions
        await svc.ask_now(SYMBOL)
        assert server.stats.completions == calls, "an open breaker must not call the model"
        # The second HTTP 500 repeats the first: counted, not recorded; circuit_open is another reason.
        assert [d.meta.cache_status for d in svc.decisions] == [CacheStatus.ERROR] * 2
        assert svc.error_repeats[SYMBOL] == 0 and svc.stats.errors_folded == 1
        assert all(d.body is None for d in svc.decisions)
        assert "circuit_open" in svc.decisions[-1].meta.error
        assert svc.stats.breaker_trips == 1
    finally:
        await provider.aclose()


@pytest.mark.asyncio
async def test_breaker_closes_after_cooldown_when_the_model_answers_again(dev_server_factory):
    now = [0.0]
    server = dev_server_factory(fault="500", fault_count=2)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", breaker_threshold=2, breaker_cooldown_s=30,
                          clock=lambda: now[0])
    try:
        await svc.ask_now(SYMBOL)
        await svc.ask_now(SYMBOL)
        assert svc.model_state is ModelState.UNAVAILABLE
        now[0] += 31
        await svc.ask_now(SYMBOL)
        assert svc.decisions[-1].meta.cache_status is CacheStatus.MISS
        assert svc.model_state is ModelState.READY
    finally:
        await provider.aclose()


@pytest.mark.asyncio
async def test_service_timeout_is_an_error_card(dev_server_factory):
    server = dev_server_factory(latency_ms=(2000.0, 2000.0))
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=10, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", timeout_s=0.2)
    try:
        await svc.ask_now(SYMBOL)
        d = svc.decisions[-1]
        assert d.meta.cache_status is CacheStatus.ERROR and d.body is None and "timeout" in d.meta.error
    finally:
        await provider.aclose()


@pytest.mark.asyncio
async def test_same_market_twice_is_served_from_the_cache(dev_server_factory):
    server = dev_server_factory()
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", cache=DecisionCache())
    try:
        await svc.ask_now(SYMBOL)
        await svc.ask_now(SYMBOL)
        assert [d.meta.cache_status for d in svc.decisions] == [CacheStatus.MISS]  # a confirmation is no news
        current = svc.current[SYMBOL]
        assert current.decision.meta.cache_status is CacheStatus.HIT and current.confirmations == 1
        assert server.stats.completions == 1
        assert current.decision.body == svc.decisions[0].body
    finally:
        await svc.aclose()
        await provider.aclose()


@pytest.mark.asyncio
async def test_a_key_entered_after_start_is_used_at_once_even_in_memory_only(tmp_path, monkeypatch):
    """No keyring (the suite's default) and no OPENAI_API_KEY: the settings dialog keeps the key in memory, and
    the running session must use it from then on, not only after a restart that would lose it."""
    from app.config import Settings
    from app.secrets import Secrets, forget_memory
    from app.session import Session
    from tests.llm.test_providers import state as market_state

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    forget_memory()
    key = "tt-test-key-entered-in-the-dialog-7f3a"
    with load_dev_server().start_server(api_key=key) as server:
        session = Session(Settings(llm_url=server.url, llm_model="dev-model", journal_path=tmp_path / "j.sqlite3",
                                   history_bars=0))
        try:
            assert not session.apply_model_key()  # nothing changed yet
            with pytest.raises(ProviderError):  # the server answers 401 without its key
                await session.provider.decide(market_state())
            assert Secrets().set("llm_api_key", key) == "memory"
            old = session.provider
            assert session.apply_model_key()
            assert session.decisions.provider is session.provider is not old
            decision = await session.provider.decide(market_state())
            assert decision.body.action in ("BUY", "SELL", "HOLD")
            assert not session.apply_model_key()  # same key again: the provider stays
            await old.aclose()
        finally:
            await session.provider.aclose()
            session.journal.close()
            forget_memory()


@pytest.mark.asyncio
async def test_a_listener_that_raises_is_reported_as_a_task_fault_not_lost():
    svc = DecisionService(OfflineProvider(), market_with_bars(), timeframe="1s")
    faults = []
    svc.on_task_fault = lambda name, exc: faults.append((name, type(exc).__name__))

    def broken_listener(event):
        raise ValueError("the desk could not take this decision")

    svc.listeners.append(broken_listener)
    task = svc.ask_now(SYMBOL)
    with pytest.raises(ValueError):
        await task
    await wait_until(lambda: faults, what="the fault reported")  # done callbacks run on a later turn
    assert faults == [(f"decision {SYMBOL}", "ValueError")]
    assert svc.model_state is ModelState.READY  # the symbol is free for its next request


OTHER = "ETHUSDT"


def two_symbol_market(seconds: int = 90) -> MarketData:
    """SYMBOL and OTHER with the same rising bars (OTHER's price a tenth of SYMBOL's)."""
    market = MarketData([SYMBOL, OTHER], capacity=10_000)
    trades = []
    for i in range(seconds):
        for symbol, scale in ((SYMBOL, 1.0), (OTHER, 0.1)):
            price = (60_000.0 + i * 2.0 - (5.0 if i % 7 == 0 else 0.0)) * scale
            trades.append(Trade(symbol, price, 0.01, Side.BUY, len(trades), T0 + i * 1000, 0))
            trades.append(Trade(symbol, price + 3.0 * scale, 0.03, Side.BUY, len(trades), T0 + i * 1000 + 400, 0))
    market.apply(trades)
    return market


def bar_for(market: MarketData, symbol: str, second: int) -> None:
    market.apply([Trade(symbol, 60_500.0 if symbol == SYMBOL else 6_050.0, 0.01, Side.SELL, 10_000 + second,
                        T0 + second * 1000, 0)])


@pytest.mark.asyncio
async def test_cache_hits_do_not_hide_a_failing_endpoint_from_the_breaker(dev_server_factory):
    server = dev_server_factory()
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    market = two_symbol_market()
    # The market clock stays in OTHER's forming bar (SYMBOL's states are clamped to its newest bar's open).
    svc = DecisionService(provider, market, timeframe="1s", cache=DecisionCache(), breaker_threshold=2,
                          breaker_cooldown_s=60, market_ms=lambda: T0 + 89_500)
    try:
        await svc.ask_now(OTHER)  # the cache is warm for OTHER's unchanged market
        server.options.fault, server.options.fault_rate = "500", 1.0  # the endpoint starts failing
        for second in (100, 101):
            bar_for(market, SYMBOL, second)
            await svc.ask_now(SYMBOL)  # a fresh market: the model is asked and answers 500
            await svc.ask_now(OTHER)  # served from the cache
        statuses = [d.meta.cache_status for d in svc.decisions]  # the history: OTHER's HITs confirmed, no news
        assert statuses == [CacheStatus.MISS, CacheStatus.ERROR], "the second 500 is a repeat: counted only"
        assert svc.error_repeats[SYMBOL] == 1
        assert svc.model_state is ModelState.UNAVAILABLE and svc.stats.breaker_trips == 1
        # With the breaker open, OTHER's unchanged market is still answered from the cache, not with an error.
        assert svc.stats.by_badge[CacheStatus.HIT] == 2 and svc.stats.by_badge[CacheStatus.ERROR] == 2
        assert svc.current[OTHER].decision.meta.cache_status is CacheStatus.HIT
    finally:
        await svc.aclose()
        await provider.aclose()


@pytest.mark.asyncio
async def test_after_the_cooldown_exactly_one_trial_request_reaches_the_model(dev_server_factory):
    now = [0.0]
    server = dev_server_factory(fault="500", fault_rate=1.0, latency_ms=(100.0, 100.0))
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    market = two_symbol_market()
    svc = DecisionService(provider, market, timeframe="1s", breaker_threshold=2, breaker_cooldown_s=30,
                          clock=lambda: now[0])
    try:
        await svc.ask_now(SYMBOL)
        await svc.ask_now(OTHER)
        assert svc.model_state is ModelState.UNAVAILABLE and server.stats.completions == 2
        now[0] += 31  # the cooldown has passed: every symbol's next bar closes at once
        await asyncio.gather(svc.ask_now(SYMBOL), svc.ask_now(OTHER))
        assert server.stats.completions == 3, "one trial request, not one per symbol"
        errors = [d.meta.error for d in list(svc.decisions)[-2:]]
        assert sorted("trial request" in e for e in errors) == [False, True]  # one trial (HTTP 500), one waited
        assert svc.model_state is ModelState.UNAVAILABLE and svc.stats.breaker_trips == 2  # the trial failed
    finally:
        await provider.aclose()


@pytest.mark.asyncio
async def test_a_restart_of_the_decisions_loop_leaves_the_request_in_flight_to_report_its_failure(
        dev_server_factory):
    server = dev_server_factory(fault="500", fault_rate=1.0, latency_ms=(300.0, 300.0))
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s")
    try:
        loop_task = asyncio.get_running_loop().create_task(svc.run())
        request = svc.ask_now(SYMBOL)
        await wait_until(lambda: server.stats.completions == 1, what="the request to reach the model")
        loop_task.cancel()  # the supervisor restarts a failed loop by starting run() again
        with pytest.raises(asyncio.CancelledError):
            await loop_task
        await request
        assert not request.cancelled()
        assert svc.decisions[-1].meta.cache_status is CacheStatus.ERROR and svc.stats.errors == 1
    finally:
        await svc.aclose()
        await provider.aclose()
