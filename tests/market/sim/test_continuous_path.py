"""The built-in exchange continues its own path across restarts: the market is a function of the wall clock and the
seed, so an exchange started later serves the same bars for the time both have seen, and its live trades carry on
from the last bar. A replay is not a synthetic market and is untouched."""

from __future__ import annotations

import asyncio
import math

import httpx
import numpy as np

from app.market.adapters import binance
from app.market.sim.markets import MultiMarket, market_for
from app.market.sim.process import ExchangeProcess
from app.market.sim.replay import ReplaySource
from app.market.sim.synthetic import SyntheticMarket
from app.models import Candle, Trade

T1 = 1_700_000_012_345  # 2023-11-14 22:13:32 UTC: the first exchange starts
T2 = T1 + 25 * 60_000 + 4_321  # the restart, 25 minutes later (the same day)
WANTED = {"btcusdt@trade", "btcusdt@kline_1m"}


def run(market: SyntheticMarket, start_ms: int, until_ms: int, wanted: set[str] = WANTED, step_ms: int = 100) -> list:
    out = []
    for now in range(start_ms + step_ms, until_ms + 1, step_ms):
        for _, payload in market.advance(now, wanted):
            out += binance.parse(payload, 0)
    return out


def bars(market: SyntheticMarket, interval: str, limit: int, end_ms: int | None = None) -> dict[int, tuple]:
    rows = asyncio.run(market.klines(market.symbol, interval, limit, end_ms=end_ms))
    return {r[0]: (r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows}  # open time -> o h l c volume trades


def test_an_exchange_started_later_serves_the_same_bars_for_the_time_both_have_seen():
    first = SyntheticMarket(seed=5, trades_per_s=30, start_ms=T1)
    run(first, T1, T2)  # the first exchange runs live until the restart
    second = SyntheticMarket(seed=5, trades_per_s=30, start_ms=T2)
    closed_before_t2 = T2 // 60_000 * 60_000 - 60_000  # the last 1m bar both have closed
    for interval, limit in (("1s", 1000), ("1m", 600), ("5m", 300), ("15m", 200), ("1h", 100)):
        ms = {"1s": 1_000, "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}[interval]
        old = bars(first, interval, limit, end_ms=closed_before_t2)
        new = bars(second, interval, limit, end_ms=closed_before_t2)
        closed = [t for t in old if t in new and t + ms <= closed_before_t2 + 60_000 and t + ms <= T2 // 1000 * 1000]
        assert len(closed) >= min(limit, 20) // 2, interval
        # live bars of the first (after T1) and history bars of the second are the same bars, to the last digit
        assert [old[t] for t in closed] == [new[t] for t in closed], interval
    live_minutes = [t for t in bars(first, "1m", 30, end_ms=closed_before_t2) if t > T1]
    assert len(live_minutes) >= 20  # the comparison covered what the first exchange made live


def test_a_restart_continues_from_the_last_bar_without_a_jump():
    first = SyntheticMarket(seed=8, trades_per_s=40, start_ms=T1)
    before = run(first, T1, T2)
    last_trade = [e for e in before if isinstance(e, Trade)][-1]
    second = SyntheticMarket(seed=8, trades_per_s=40, start_ms=T2)
    history = asyncio.run(second.klines("BTCUSDT", "1s", 5))
    after = [e for e in run(second, T2, T2 + 5_000) if isinstance(e, Trade)]
    assert after, "the restarted exchange trades"
    first_live = after[0]
    last_bar_close = float(history[-2][4])  # the last closed 1 s bar served to the restarted terminal
    # within normal volatility: 60 % a year is ~0.01 % a second; 0.2 % is many seconds' worth
    assert abs(math.log(first_live.price / last_bar_close)) < 0.002
    assert abs(math.log(first_live.price / last_trade.price)) < 0.002


def test_an_exchange_restarted_a_second_later_starts_above_every_trade_id_the_one_before_sent():
    """The terminal drops a trade whose id is not above the last it saw (a repeat): a restart whose ids began below
    what the exchange before it had sent lost its first trades (scripts/chaos.py counted them)."""
    for seed in range(1, 13):
        for rate in (5, 20, 400):
            t0 = T1 + seed * 7_919  # busy and quiet seconds alike
            first = SyntheticMarket(seed=seed, trades_per_s=rate, start_ms=t0)
            sent = [e for e in run(first, t0, t0 + 1_500) if isinstance(e, Trade)]
            second = SyntheticMarket(seed=seed, trades_per_s=rate, start_ms=t0 + 1_600)  # back after a short restart
            after = [e for e in run(second, t0 + 1_600, t0 + 4_000) if isinstance(e, Trade)]
            if sent and after:
                assert after[0].trade_id > sent[-1].trade_id, (seed, rate)


def test_every_symbol_continues_and_history_meets_the_live_stream_at_every_timeframe():
    symbols = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    for restart in (T1, T2):
        # the default seed: the same market every run, as the terminal starts it
        multi = MultiMarket([market_for(s, 20.0, start_ms=restart) for s in symbols])
        streams = {f"{s.lower()}@kline_{i}" for s in symbols for i in ("1s", "1m", "5m", "15m", "1h")}
        for s in symbols:
            m = multi.markets[s]
            rest = {i: asyncio.run(m.klines(s, i, 3)) for i in ("1s", "1m", "5m", "15m", "1h")}
            got = [e for e in run(m, restart, restart + 1_500, streams & {f"{s.lower()}@kline_{i}" for i in rest})
                   if isinstance(e, Candle)]
            for interval, rows in rest.items():
                live = [c for c in got if c.timeframe == interval]
                assert live, (s, interval)
                forming = rows[-1]
                first = live[0]
                if first.open_ms == forming[0]:  # the bar in progress continues: its open and range carry on
                    assert first.open == float(forming[1]), (s, interval)
                    assert first.high >= float(forming[2]) and first.low <= float(forming[3]), (s, interval)
                    assert first.trades >= forming[8], (s, interval)


def test_symbols_with_one_seed_follow_their_own_paths_near_their_own_prices():
    btc, eth = market_for("BTCUSDT", 10.0), market_for("ETHUSDT", 10.0)
    closes = {m.symbol: np.array([float(r[4]) for r in asyncio.run(m.klines(m.symbol, "1h", 500))])
              for m in (btc, eth)}
    assert 0.8 < closes["BTCUSDT"].mean() / 60_000 < 1.25 and 0.8 < closes["ETHUSDT"].mean() / 3_000 < 1.25
    r_btc, r_eth = (np.diff(np.log(c)) for c in closes.values())
    assert abs(np.corrcoef(r_btc, r_eth)[0, 1]) < 0.3  # not one path scaled


def test_every_timeframe_serves_the_600_bars_the_terminal_asks_at_start():
    m = market_for("BTCUSDT", 25.0)
    for interval in ("1s", "1m", "5m", "15m", "1h"):
        rows = asyncio.run(m.klines("BTCUSDT", interval, 600))
        assert len(rows) == 600, interval
        opens = [r[0] for r in rows]
        assert opens == sorted(set(opens)), interval  # one bar per period, oldest first


def test_a_replay_serves_its_recording_not_the_synthetic_path(tmp_path):
    market = SyntheticMarket(seed=5, trades_per_s=30, start_ms=T1)
    lines = []
    for now in range(T1 + 100, T1 + 20_000, 100):
        for stream, payload in market.advance(now, {"btcusdt@trade"}):
            lines.append(b'%d {"stream":"%s","data":%s}' % (now * 1_000_000, stream.encode(), payload))
    tape = tmp_path / "btc.txt"
    tape.write_bytes(b"\n".join(lines) + b"\n")
    recorded = bars(market, "1s", 30)

    async def replay() -> dict[int, tuple]:
        source = ReplaySource(tape, speed=0)
        async for _ in source.batches({"btcusdt@trade"}):
            pass
        rows = await source.klines("BTCUSDT", "1s", 1000)
        return {r[0]: (r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows}

    replayed = asyncio.run(replay())
    wholly_recorded = [t for t in replayed if t >= T1 + 1_000 and t + 1_000 <= T1 + 19_000]
    assert len(wholly_recorded) >= 15
    # the recording's own seconds, at the recording's time (not the clock's), bar for bar what the market served
    assert [replayed[t][:4] + replayed[t][5:] for t in wholly_recorded] == [
        recorded[t][:4] + recorded[t][5:] for t in wholly_recorded]


async def _closed_minutes(exchange: ExchangeProcess, symbol: str) -> dict[int, list]:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{exchange.rest_url}/api/v3/klines",
                                params={"symbol": symbol, "interval": "1m", "limit": 120})
    rows = resp.json()
    return {r[0]: r[1:6] for r in rows[:-2]}  # the bar in progress (and one that may close meanwhile) left out


def test_the_terminal_s_exchange_process_serves_the_same_history_after_a_restart():
    """As the terminal starts it (no seed given): stopped and started again, the same bars."""

    async def one_run() -> dict[str, dict[int, list]]:
        exchange = ExchangeProcess(symbols=["BTCUSDT", "SOLUSDT"], trades_per_s=20.0)
        await exchange.start()
        try:
            return {s: await _closed_minutes(exchange, s) for s in ("BTCUSDT", "SOLUSDT")}
        finally:
            await exchange.stop()

    before = asyncio.run(one_run())
    after = asyncio.run(one_run())
    for symbol in ("BTCUSDT", "SOLUSDT"):
        shared = sorted(set(before[symbol]) & set(after[symbol]))
        assert len(shared) >= 100
        assert [before[symbol][t] for t in shared] == [after[symbol][t] for t in shared], symbol
