"""A synthetic market: GARCH volatility, Poisson trades and a small order book, a deterministic function of
the wall clock and a seed, so that a restarted exchange continues the same market."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
import zlib
from collections.abc import AsyncIterator, Callable, Container
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from app.market.sim.source import (
    INTERVAL_MS,
    Bars,
    Frame,
    aggregate_bars,
    interval_ms_of,
    invalid_symbol,
    kline_payload,
    kline_rows,
    kline_window,
    units,
)

TICK_S_SYNTH = 0.025  # synthetic step: a batch takes well under a millisecond to generate at normal rates
ID_RATE_MARGIN = 10  # trade ids per expected trade, counted on the clock (see _init_history)
MAX_CATCHUP_MS = 1_000  # a longer silence (paused, starved loop) is skipped as quiet time, not burst out
_FINE_HISTORY_S = 3600  # history at 1 s resolution: 1000 1s bars and more (an hour of 1m bars)
_MAX_HISTORY_MIN = 60_000  # ~41.7 days: 1000 hourly bars; longer asks get fewer bars
DEFAULT_SEED = 16  # the market every run makes unless told otherwise: a restart continues it
_DAY_CHUNK = 4096  # daily levels are drawn in chunks of this many days from 1970 on
_LEVEL_MEMORY_DAYS = 2.0  # the daily level forgets its deviation from the start price in about this many days
_LEVEL_BOUND = 0.05  # and stays within this (log) of it
_SV_PERSISTENCE = 0.98  # 1 s volatility inside a minute: log-AR(1) persistence a second (half-life ~35 s)
_SV_SD = 0.5  # and its stationary standard deviation (log volatility)
_SECONDS_PER_YEAR = 365 * 86_400

# ---------------------------------------------------------------------------------------------------------
# The synthetic market


@dataclass(frozen=True, slots=True)
class _Garch:
    """GARCH(1,1) variance of log returns per step: v' = omega + alpha * r**2 + beta * v."""

    omega: float
    alpha: float
    beta: float

    @classmethod
    def with_mean(cls, variance: float, alpha: float, beta: float) -> _Garch:
        return cls(variance * (1 - alpha - beta), alpha, beta)

    @property
    def mean(self) -> float:
        return self.omega / (1 - self.alpha - self.beta)

    def next(self, variance: float, r: float) -> float:
        return self.omega + self.alpha * r * r + self.beta * variance

    def path(self, z: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray, float]:
        """Returns r = sqrt(v) * z, the variances v, and the variance after the last step.

        The recursion is sequential by nature, so it runs on Python floats (~0.3 µs a step); everything
        around it is vectorised."""
        returns, variances = [0.0] * len(z), [0.0] * len(z)
        for i, zi in enumerate(z.tolist()):
            variances[i] = variance
            returns[i] = r = math.sqrt(variance) * zi
            variance = self.omega + self.alpha * r * r + self.beta * variance
        return np.asarray(returns), np.asarray(variances), variance


class _BookSide:
    """One side of the simulated book: price ticks -> quantity lots; ``sign`` is +1 for asks, -1 for bids
    (so that ``(price - best) * sign`` is the distance from the touch)."""

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, int] = {}
        self.changed: dict[int, int] = {}  # since the last diff: price -> new quantity (0 = removed)

    def best(self) -> int:
        return min(self.levels) if self.sign > 0 else max(self.levels)


class _Book:
    """A small book around the mid, every change numbered like Binance's update ids."""

    DEPTH = 20
    MAX_GAP = 8  # ticks between neighbouring levels

    def __init__(self, first_update_id: int) -> None:
        self.bids = _BookSide(-1)
        self.asks = _BookSide(+1)
        self.update_id = first_update_id - 1
        self._diff_first = first_update_id

    def set(self, side: _BookSide, price: int, qty: int) -> None:
        if qty > 0:
            side.levels[price] = qty
        else:
            side.levels.pop(price, None)
        side.changed[price] = qty
        self.update_id += 1

    def top(self) -> tuple[int, int, int, int]:
        bid, ask = self.bids.best(), self.asks.best()
        return bid, self.bids.levels[bid], ask, self.asks.levels[ask]

    def hit(self, taker_buy: bool, lots: int, refill: Callable[[], int]) -> int:
        """A trade against the touch; an exhausted level is refilled (hidden size) to keep the book whole."""
        side = self.asks if taker_buy else self.bids
        price = side.best()
        left = side.levels[price] - lots
        self.set(side, price, left if left > 0 else refill())
        return price

    def reshape(
        self, side: _BookSide, best: int, draw_qty: Callable[[], int], draw_gap: Callable[[], int]
    ) -> None:
        """Make ``best`` the touch and keep DEPTH levels behind it without holes wider than MAX_GAP;
        levels already there keep their quantities, so a quiet book changes little."""
        s = side.sign
        for price in [p for p in side.levels if (p - best) * s < 0]:
            self.set(side, price, 0)
        if best not in side.levels:
            self.set(side, best, draw_qty())
        distances = sorted((p - best) * s for p in side.levels)
        i, last = 1, 0
        for _ in range(self.DEPTH - 1):
            if i < len(distances) and distances[i] - last <= self.MAX_GAP:
                last = distances[i]
                i += 1
            else:
                last += draw_gap()  # < the next level's distance, so always a new price
                self.set(side, best + s * last, draw_qty())
        for d in distances[i:]:
            self.set(side, best + s * d, 0)

    def take_diff(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]] | None:
        """(U, u, bids, asks) of everything changed since the last diff, or None if nothing did."""
        if self.update_id < self._diff_first:
            return None
        first, self._diff_first = self._diff_first, self.update_id + 1
        bids = sorted(self.bids.changed.items(), reverse=True)
        asks = sorted(self.asks.changed.items())
        self.bids.changed.clear()
        self.asks.changed.clear()
        return first, self.update_id, bids, asks

    def snapshot(self, limit: int, price_decimals: int, qty_decimals: int) -> dict[str, Any]:
        def levels(side: _BookSide, reverse: bool) -> list[list[str]]:
            prices = sorted(side.levels, reverse=reverse)[:limit]
            return [[units(p, price_decimals), units(side.levels[p], qty_decimals)] for p in prices]

        return {
            "lastUpdateId": self.update_id,
            "bids": levels(self.bids, True),
            "asks": levels(self.asks, False),
        }


class SyntheticMarket:
    """A generated market for one symbol: a deterministic function of the wall clock and the ``seed``, so an
    exchange started later (a restart, another process) serves the same bars for the time both have seen and its
    live trades continue the same path.

    The path, coarse to fine, each level keyed by absolute time (never by when the exchange started):

    - days: a mean-reverting log price around ``start_price`` (within a few % of it, so every symbol stays near its
      own price), one value per UTC day;
    - minutes: GARCH(1,1) variance of one-minute returns (volatility clustering), the log price bridged through
      hourly points between the days' values; one block per day;
    - seconds: Brownian steps with their minute's variance, bridged through the minute's prices; one block per
      hour. A second's row (open, high, low, close at the touch, trade count from a Poisson law leaning with the
      volatility, base volume and its taker-buy part) is fixed by its block;
    - trades: played live from their second's row (the row's open, high, low and close are trade prices, sizes
      from a heavy-tailed law add up to its volume), hitting the touch of a small book whose spread is a few ticks.

    History: the last hour as 1 s rows, the day before as 1 min rows aggregated from the same 1 s blocks (so any
    bar in the last day or more is the same, history or live, in any process), and older 1 min rows from the
    minute level itself (same prices at every minute's close, within the spread; highs, lows and volumes
    differ from what 1 s rows would add up to). Every kline, history or live, REST or stream, is aggregated from
    these rows. Trade ids, the book and the sizes of single trades belong to the process (they differ between two
    exchanges; the bars do not).
    """

    paced = True
    wait_for_subscriber = False

    def __init__(
        self,
        symbol: str = "BTCUSDT",
        start_price: float = 60_000.0,
        trades_per_s: float = 25.0,
        seed: int | None = None,
        *,
        volatility: float = 0.6,
        start_ms: int | None = None,
        price_decimals: int = 2,
        qty_decimals: int = 5,
        first_update_id: int | None = None,  # the book's first update id (default: drawn from the seed)
    ) -> None:
        if not (start_price > 0 and trades_per_s > 0 and volatility > 0):
            raise ValueError("start_price, trades_per_s and volatility must be positive")
        if not (1 <= price_decimals <= 8 and 1 <= qty_decimals <= 8):
            raise ValueError("price_decimals and qty_decimals must be between 1 and 8")
        self.symbol = symbol.upper()
        self.label = f"synthetic {self.symbol}"
        self.finished = asyncio.Event()  # a generated market never ends
        self.seed = DEFAULT_SEED if seed is None else seed
        self._key = zlib.crc32(self.symbol.encode())  # each symbol its own path under one seed
        self._pd, self._qd = price_decimals, qty_decimals
        self._px, self._lot = 10**price_decimals, 10**qty_decimals
        self._rate = trades_per_s
        self._log_level = math.log(start_price)
        # Sizes scale with the price: the smallest trade is worth ~6 quote units, levels ~12,000.
        self._size_min = 6.0 / start_price * self._lot
        self._size_max = 600_000.0 / start_price * self._lot
        self._lots_min = max(1, int(self._size_min))
        self._level_log_mean = math.log(12_000.0 / start_price * self._lot)
        self._var_s = volatility**2 / _SECONDS_PER_YEAR  # mean variance of a 1 s log return
        self._garch_minutes = _Garch.with_mean(self._var_s * 60, alpha=0.1, beta=0.88)
        s = symbol.lower()
        self._s_trade, self._s_agg, self._s_book, self._s_depth = (
            f"{s}@trade",
            f"{s}@aggTrade",
            f"{s}@bookTicker",
            f"{s}@depth@100ms",
        )
        self._s_klines = {interval: f"{s}@kline_{interval}" for interval in INTERVAL_MS}
        self._served = {self._s_trade, self._s_agg, self._s_book, self._s_depth, *self._s_klines.values()}
        self._first_update_id = first_update_id
        self._mean_lots_cache: float | None = None
        self._days = np.zeros(0)  # the daily level, from day 0 (1970-01-01) on
        self._day_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._hour_cache: dict[int, dict[str, np.ndarray]] = {}
        start = int(time.time() * 1000) if start_ms is None else int(start_ms)
        # The live part (trade ids, the book, single trades) belongs to this process: its own generator.
        self._rng = np.random.default_rng([self.seed, self._key, 9, start])
        self._init_history(start)
        self._init_live(start)

    # -- MarketSource ------------------------------------------------------------------------------------

    def serves(self, stream: str) -> bool:
        return stream in self._served

    async def batches(self, wanted: Container[str]) -> AsyncIterator[list[Frame]]:
        while True:
            await asyncio.sleep(TICK_S_SYNTH)
            frames = self.advance(time.time_ns() // 1_000_000, wanted)
            if frames:
                yield frames

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]:
        self._check_symbol(symbol)
        return self._book.snapshot(limit, self._pd, self._qd)

    async def klines(
        self, symbol: str, interval: str, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[Any]]:
        self._check_symbol(symbol)
        ms = interval_ms_of(interval)
        fine_start = self._seconds.start_ms
        earliest = fine_start if ms < 60_000 else fine_start - _MAX_HISTORY_MIN * 60_000
        earliest = -(-earliest // ms) * ms  # only whole bars: the market "existed" before its history
        window = kline_window(ms, limit, int(self._t_ms), start_ms, end_ms, earliest)
        if window is None:
            return []
        first, last = window
        while self._extend_history(first):
            await asyncio.sleep(0)  # a block takes a few ms; let the loop breathe between blocks
        bars = self._aggregate(ms, first, last + ms)
        await asyncio.sleep(0)  # aggregating and formatting 1000 long bars take ~3 ms each
        return kline_rows(bars, ms)

    # -- the live market ----------------------------------------------------------------------------------

    def advance(self, now_ms: int, wanted: Container[str] = ()) -> list[Frame]:
        """Runs the market up to ``now_ms`` (exchange time) and returns the frames of the ``wanted``
        streams, oldest first. The server calls it every tick; tests may call it with their own clock."""
        out: list[Frame] = []
        if now_ms - self._t_ms > MAX_CATCHUP_MS:
            self._go_quiet(now_ms - MAX_CATCHUP_MS)
        while True:
            t = min(self._next_second_ms, self._next_depth_ms, self._next_trade_ms)
            if t > now_ms:
                return out
            self._t_ms = t
            if t == self._next_second_ms:  # bar boundaries first, then book, then trades at the same time
                self._on_second(out, wanted)
            elif t == self._next_depth_ms:
                self._on_depth(out, wanted)
            else:
                self._on_trade(out, wanted)

    def _init_live(self, start_ms: int) -> None:
        self._t_ms = float(start_ms)
        self._next_second_ms = start_ms // 1000 * 1000 + 1000
        self._next_depth_ms = start_ms // 100 * 100 + 100
        self._trade_id = self._first_trade_id
        self._agg_offset = 700_000_000 + int(self._rng.integers(10**8)) - self._first_trade_id
        self._spread = 1
        drawn = 40_000_000_000 + int(self._rng.integers(10**9))  # drawn either way: the same seed, the same market
        self._book = _Book(first_update_id=drawn if self._first_update_id is None else self._first_update_id)
        self._last_top: tuple[int, int, int, int] | None = None
        self._last_price: int | None = None
        self._last_buy = True
        self._load_second(start_ms)
        self._requote()

    def _load_second(self, after_ms: float) -> None:
        """The trades of the second in progress (from its row), those after ``after_ms`` still to come."""
        second = self._next_second_ms - 1000
        row, i = self._second_row(second)
        self._row, self._row_i = row, i
        times, prices, lots, buys = self._live = tuple(a.tolist() for a in self._play(row, i, second))
        self._trade_i = bisect.bisect_right(times, after_ms)
        # What the second traded before (before the start, or in a silence) is in its bar, not sent.
        for j in range(self._trade_i):
            self._seconds.add_trade(prices[j] / self._px, lots[j] / self._lot, buys[j], self._trade_id)
        if self._trade_i:
            self._last_price = prices[self._trade_i - 1]
            self._last_buy = buys[self._trade_i - 1]
        self._next_trade_ms = times[self._trade_i] if self._trade_i < len(times) else math.inf

    def _efficient_logp(self, t: float) -> float:
        """The path's log price at ``t`` within the second in progress (between the row's open and close)."""
        row, i = self._row, self._row_i
        frac = min(max((t - (self._next_second_ms - 1000)) / 1000, 0.0), 1.0)
        return float(row["e_open"][i] + frac * (row["e"][i] - row["e_open"][i]))

    def skip_silence(self, until_ms: float) -> None:
        """Stand still until ``until_ms`` (a paused server, a starved loop), making no frames for that time."""
        if until_ms > self._t_ms:
            self._go_quiet(until_ms)

    def _go_quiet(self, until_ms: float) -> None:
        """Skips a silence (the server paused, the loop starved) rather than replaying it in a burst: no frames
        are made for that time; its seconds take their rows from the path (the market went on while nobody
        looked), and the trade ids that follow stay contiguous."""
        while self._next_second_ms <= until_ms:
            self._finish_second()
            self._next_second_ms += 1000
            self._seconds.open_flat(self._seconds.last_close())
        self._t_ms = until_ms
        self._next_depth_ms = int(until_ms) // 100 * 100 + 100
        self._load_second(until_ms)

    def _on_second(self, out: list[Frame], wanted: Container[str]) -> None:
        boundary = self._next_second_ms
        self._finish_second()
        for interval, ms in INTERVAL_MS.items():
            stream = self._s_klines[interval]
            if stream in wanted:
                bar_open = (boundary - 1000) // ms * ms
                bar = self._aggregate(ms, bar_open, boundary)
                closed = boundary % ms == 0
                out.append((stream, kline_payload(self.symbol, interval, bar, boundary, closed)))
        self._next_second_ms += 1000
        self._seconds.open_flat(self._seconds.last_close())
        self._load_second(boundary - 1)

    def _finish_second(self) -> None:
        """The second just ended takes its row from the path, exactly (the trades played added up to it; a part
        played before the start, or in a silence, is in it too); the trade ids are the ones sent."""
        row, i = self._second_row(self._next_second_ms - 1000)
        self._seconds.replace_last({k: row[k][i] for k in (*Bars.FLOATS, "n")})

    def _on_depth(self, out: list[Frame], wanted: Container[str]) -> None:
        t = self._next_depth_ms
        self._next_depth_ms += 100
        self._churn()
        if self._rng.random() < 0.1:
            self._spread = min(8, int(self._rng.geometric(0.55)))
        self._requote()
        self._emit_top(out, wanted)
        diff = self._book.take_diff()
        if diff is not None and self._s_depth in wanted:
            first, last, bids, asks = diff
            pd, qd = self._pd, self._qd
            payload = {
                "e": "depthUpdate",
                "E": t,
                "s": self.symbol,
                "U": first,
                "u": last,
                "b": [[units(p, pd), units(q, qd)] for p, q in bids],
                "a": [[units(p, pd), units(q, qd)] for p, q in asks],
            }
            out.append((self._s_depth, orjson.dumps(payload)))

    def _on_trade(self, out: list[Frame], wanted: Container[str]) -> None:
        times, prices, lots_of, buys = self._live
        j = self._trade_i
        t = self._next_trade_ms
        self._trade_i = j + 1
        self._next_trade_ms = times[j + 1] if j + 1 < len(times) else math.inf
        price, lots, taker_buy = prices[j], lots_of[j], buys[j]
        # The trade is at the touch: a buyer lifts the ask at its price, a seller hits the bid.
        if taker_buy:
            self._book.reshape(self._book.asks, price, self._level_qty, self._level_gap)
            self._book.reshape(self._book.bids, price - self._spread, self._level_qty, self._level_gap)
        else:
            self._book.reshape(self._book.bids, price, self._level_qty, self._level_gap)
            self._book.reshape(self._book.asks, price + self._spread, self._level_qty, self._level_gap)
        self._book.hit(taker_buy, lots, self._level_qty)
        self._last_price, self._last_buy = price, taker_buy
        trade_id, t_ms = self._trade_id, int(t)
        self._trade_id += 1
        self._seconds.add_trade(price / self._px, lots / self._lot, taker_buy, trade_id)
        p, q, maker = units(price, self._pd), units(lots, self._qd), not taker_buy
        if self._s_trade in wanted:
            trade = {
                "e": "trade",
                "E": t_ms,
                "s": self.symbol,
                "t": trade_id,
                "p": p,
                "q": q,
                "T": t_ms,
                "m": maker,
                "M": True,
            }
            out.append((self._s_trade, orjson.dumps(trade)))
        if self._s_agg in wanted:  # one fill per aggressor here, so an aggTrade is a single trade
            agg = {
                "e": "aggTrade",
                "E": t_ms,
                "s": self.symbol,
                "a": trade_id + self._agg_offset,
                "p": p,
                "q": q,
                "f": trade_id,
                "l": trade_id,
                "T": t_ms,
                "m": maker,
                "M": True,
            }
            out.append((self._s_agg, orjson.dumps(agg)))
        self._emit_top(out, wanted)

    def _play(self, row: dict[str, np.ndarray], i: int, second_ms: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A second's trades from its row: times, prices (ticks), sizes (lots), taker-buy flags. The first is
        at the row's open and the last at its close, one at its high and one at its low; the buyers are mostly
        the trades that moved the price up; sizes are heavy-tailed and add up to the row's volume and its
        taker-buy part."""
        n = int(row["n"][i])
        rng = self._rng
        if n == 0:
            empty = np.zeros(0)
            return empty, empty.astype(np.int64), empty.astype(np.int64), empty.astype(bool)
        o, h, lo, c = (int(row[k][i]) for k in ("to", "th", "tl", "tc"))
        times = second_ms + np.sort(rng.random(n)) * 1000
        if n == 1:
            prices = np.array([o], np.int64)
        else:
            # Through the open, the high and the low (in a random order) to the close, a tick or so of noise
            # on the way: consecutive trades a few ticks apart, as the touch moves.
            at, to = [0, n - 1], [o, c]
            inner = rng.permutation(np.arange(1, n - 1))
            k = 0
            for extreme, beyond in ((h, h > max(o, c)), (lo, lo < min(o, c))):
                if beyond:
                    at.append(int(inner[k]))
                    to.append(extreme)
                    k += 1
            order = np.argsort(at)
            walk = np.interp(np.arange(n), np.asarray(at)[order], np.asarray(to, float)[order])
            prices = np.clip(np.rint(walk + rng.normal(0, 0.6, n)), lo, h).astype(np.int64)
            prices[at] = to
        before = self._last_price if self._last_price is not None else o
        score = np.sign(np.diff(prices, prepend=before)) + rng.random(n) * 1.5
        buys = np.zeros(n, bool)
        buyers = int(row["k"][i])
        buys[np.argsort(-score, kind="stable")[:buyers]] = True
        lots = np.zeros(n, np.int64)
        lots[buys] = self._split(rng, int(row["Vl"][i]), buyers)
        lots[~buys] = self._split(rng, int(row["vl"][i] - row["Vl"][i]), n - buyers)
        return times, prices, lots, buys

    def _split(self, rng: np.random.Generator, total: int, count: int) -> np.ndarray:
        """``total`` lots in ``count`` trades of at least the smallest size each, the rest shared by capped Pareto
        weights (a few large prints among many small ones), in whole lots."""
        if count == 0:
            return np.zeros(0, np.int64)
        extra = total - count * self._lots_min
        weights = np.minimum(1 + rng.pareto(0.6, count), self._size_max / max(self._size_min, 1e-9))
        share = extra * weights / weights.sum()
        whole = np.floor(share).astype(np.int64)
        left = extra - int(whole.sum())
        if left > 0:
            whole[np.argsort(whole - share)[:left]] += 1  # the largest remainders
        return whole + self._lots_min

    def _requote(self) -> None:
        """Sets the touch with the current spread. Once anything has traded, the touch stays where the last trade
        printed (a buy at the ask, a sell at the bid) until the next trade moves it, as on a real book, where the
        last price sits at the touch nearly all the time (outside it 3.8 % of the time in a recorded Binance BTCUSDT
        session). Centred on the path's price between trades instead, the book jumped away from the trades: the
        last price sat outside the touch half the time at 20 trades/s."""
        if self._last_price is None:
            mid = math.exp(self._efficient_logp(self._t_ms)) * self._px
        elif self._last_buy:
            mid = self._last_price - self._spread / 2
        else:
            mid = self._last_price + self._spread / 2
        bid = math.floor(mid - self._spread / 2)
        self._book.reshape(self._book.bids, bid, self._level_qty, self._level_gap)
        self._book.reshape(self._book.asks, bid + self._spread, self._level_qty, self._level_gap)

    def _churn(self) -> None:
        """Limit orders placed and cancelled away from trades: a few levels change every 100 ms."""
        for _ in range(int(self._rng.poisson(2.0))):
            side = self._book.bids if self._rng.random() < 0.5 else self._book.asks
            prices = list(side.levels)
            price = prices[int(self._rng.integers(len(prices)))]
            cancel = price != side.best() and self._rng.random() < 0.3
            self._book.set(side, price, 0 if cancel else self._level_qty())

    def _emit_top(self, out: list[Frame], wanted: Container[str]) -> None:
        """A bookTicker for every change of the best levels, numbered with the book's update id, so that a
        client applying the depth diffs finds the same top of book."""
        top = self._book.top()
        if top == self._last_top:
            return
        self._last_top = top
        if self._s_book in wanted:
            bid, bid_qty, ask, ask_qty = top
            pd, qd = self._pd, self._qd
            payload = {
                "u": self._book.update_id,
                "s": self.symbol,
                "b": units(bid, pd),
                "B": units(bid_qty, qd),
                "a": units(ask, pd),
                "A": units(ask_qty, qd),
            }
            out.append((self._s_book, orjson.dumps(payload)))

    def _level_qty(self) -> int:
        return max(1, int(self._rng.lognormal(self._level_log_mean, 1.2)))

    def _level_gap(self) -> int:
        return min(_Book.MAX_GAP, int(self._rng.geometric(0.45)))

    def _sizes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Trade sizes in lots: Pareto with tail index 0.6, capped (a few whales, many small prints)."""
        lots = np.rint(self._size_min * (1 + rng.pareto(0.6, n)))
        return np.clip(lots, 1, self._size_max).astype(np.int64)

    def _mean_lots(self) -> float:
        """Mean trade size (the capped Pareto has no simple closed form), estimated once."""
        if self._mean_lots_cache is None:
            self._mean_lots_cache = float(self._sizes(np.random.default_rng([self.seed, 3]), 100_000).mean())
        return self._mean_lots_cache

    def _check_symbol(self, symbol: str) -> None:
        if symbol != self.symbol:
            raise invalid_symbol()

    def levels(self, symbol: str, side: str, depth: int) -> list[tuple[Decimal, Decimal]]:
        """The book's best ``depth`` levels of ``side`` ("bids" or "asks"), best first, as Decimal (price on the
        tick, quantity in lots): what the built-in exchange's order matching walks (orders.BookView)."""
        if symbol.upper() != self.symbol:
            return []
        book_side = self._book.asks if side == "asks" else self._book.bids
        prices = sorted(book_side.levels, reverse=side == "bids")[:depth]
        return [(Decimal(p).scaleb(-self._pd), Decimal(book_side.levels[p]).scaleb(-self._qd)) for p in prices]

    def symbol_info(self) -> dict[str, Any]:
        """This market's entry in ``/api/v3/exchangeInfo``: its own tick and lot grids, as Binance writes them."""
        from app.market.instruments import split_symbol

        base, quote = split_symbol(self.symbol)
        tick, lot = units(1, self._pd), units(1, self._qd)
        return {"symbol": self.symbol, "status": "TRADING", "baseAsset": base, "quoteAsset": quote, "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "10000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": "90000000.00000000", "stepSize": lot},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
        ]}

    # -- the path -----------------------------------------------------------------------------------------

    def _day_level(self, day: int) -> float:
        """The log price at the start of UTC ``day`` (days since 1970): a mean-reverting walk around the start
        price (a few days' memory), softly bounded to _LEVEL_BOUND of it. Computed once from day 0, in fixed
        chunks, so it is the same whatever is asked first."""
        if day < 0:
            day = 0
        if day >= len(self._days):
            chunks = day // _DAY_CHUNK + 1
            z = np.concatenate([np.random.default_rng([self.seed, self._key, 0, c]).standard_normal(_DAY_CHUNK)
                                for c in range(chunks)])
            sd = math.sqrt(self._var_s * 86_400)
            phi = math.exp(-1 / _LEVEL_MEMORY_DAYS)
            x, walk = 0.0, [0.0] * len(z)
            for i, zi in enumerate(z.tolist()):
                walk[i] = x
                x = phi * x + sd * zi
            self._days = self._log_level + _LEVEL_BOUND * np.tanh(np.asarray(walk) / _LEVEL_BOUND)
        return float(self._days[day])

    def _day(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """UTC ``day``'s minute level: the log price at each of its 1441 minute boundaries and each minute's
        variance of 1 s returns (GARCH on the minutes, through hourly points between the day's levels)."""
        cached = self._day_cache.get(day)
        if cached is not None:
            return cached
        rng = np.random.default_rng([self.seed, self._key, 2, day])
        a0, a1 = self._day_level(day), self._day_level(day + 1)
        walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(24) * math.sqrt(self._var_s * 3600))])
        hours = a0 + walk - np.arange(25) / 24 * (walk[-1] - (a1 - a0))
        r, variance, _ = self._garch_minutes.path(rng.standard_normal(1440), self._garch_minutes.mean)
        r = r.reshape(24, 60)
        cum = np.cumsum(r, axis=1)
        frac = np.arange(1, 61) / 60
        inside = hours[:-1, None] + cum - frac * (cum[:, -1:] - (hours[1:] - hours[:-1])[:, None])
        logp = np.concatenate([[hours[0]], inside.ravel()])
        result = (logp, variance / 60)
        if len(self._day_cache) >= 8:
            self._day_cache.pop(next(iter(self._day_cache)))
        self._day_cache[day] = result
        return result

    def _hour(self, hour: int) -> dict[str, np.ndarray]:
        """The 3600 one-second rows of ``hour`` (hours since 1970), bridged through its minutes' prices; with the
        ticks and lots the live trades are played from and the path's log price at each second's open and close."""
        cached = self._hour_cache.get(hour)
        if cached is not None:
            return cached
        logp, variance = self._day(hour // 24)
        m0 = hour % 24 * 60
        opens, closes, var = logp[m0 : m0 + 60], logp[m0 + 1 : m0 + 61], variance[m0 : m0 + 60]
        rng = np.random.default_rng([self.seed, self._key, 1, hour])
        var = var[:, None] * self._second_volatility(rng)
        cum = np.cumsum(rng.standard_normal((60, 60)) * np.sqrt(var), axis=1)
        frac = np.arange(1, 61) / 60
        e = (opens[:, None] + cum - frac * (cum[:, -1:] - (closes - opens)[:, None])).ravel()
        e_open = np.concatenate([[opens[0]], e[:-1]])
        rows = self._rows(rng, e_open, e, var.ravel(), 1.0, hour * 3_600_000, 1000)
        rows["e"], rows["e_open"] = e, e_open
        if len(self._hour_cache) >= 4:
            self._hour_cache.pop(next(iter(self._hour_cache)))
        self._hour_cache[hour] = rows
        return rows

    @staticmethod
    def _second_volatility(rng: np.random.Generator) -> np.ndarray:
        """Multipliers (mean 1) of the minute's variance for each of an hour's seconds, as (60, 60): a log-AR(1)
        with a half-life of about half a minute, so that 1 s returns cluster inside the minute as well.
        Vectorised by minute: within a minute the sum is weighted by powers of the persistence, and only the
        60 minute-ends are carried one by one."""
        phi, sd = _SV_PERSISTENCE, _SV_SD
        powers = phi ** np.arange(60)
        local = np.cumsum(rng.standard_normal((60, 60)) * sd * math.sqrt(1 - phi * phi) / powers, axis=1) * powers
        y = np.empty((60, 60))
        carry = sd * float(rng.standard_normal())  # the hour starts where the stationary law puts it
        for m in range(60):
            y[m] = local[m] + phi * powers * carry
            carry = float(y[m, -1])
        return np.exp(2 * y - 2 * sd * sd)

    def _second_row(self, second_ms: int) -> tuple[dict[str, np.ndarray], int]:
        return self._hour(second_ms // 3_600_000), second_ms % 3_600_000 // 1000

    def _coarse_minutes(self, day: int) -> dict[str, np.ndarray]:
        """UTC ``day``'s 1 min rows from the minute level alone (older history: cheap, the same every run)."""
        logp, variance = self._day(day)
        rng = np.random.default_rng([self.seed, self._key, 3, day])
        return self._rows(rng, logp[:-1], logp[1:], variance, 60.0, day * 86_400_000, 60_000)

    def _fine_minutes(self, hour: int) -> dict[str, np.ndarray]:
        """``hour``'s 1 min rows, added up from its 1 s rows (the same numbers as aggregating the seconds)."""
        return aggregate_bars([self._hour(hour)], 60_000)

    def _rows(self, rng: np.random.Generator, log_open: np.ndarray, log_close: np.ndarray, variance: np.ndarray,
              step_s: float, start_ms: int, step_ms: int) -> dict[str, np.ndarray]:
        """Rows of ``step_s`` seconds between the path's log prices: open and close at the bid or the ask around
        them, the range widened by a Brownian-bridge-sized excursion when there are trades enough to make it,
        trade counts Poisson (more when volatile), rows without trades flat at the previous close, volume the
        count times the mean size with noise, its taker-buy part leaning with the move."""
        n_rows = len(log_close)
        px = self._px
        sigma = np.sqrt(variance * step_s)
        weight = np.sqrt(variance)
        trades = rng.poisson(self._rate * step_s * weight / weight.mean())
        trades[0] = max(trades[0], 1)  # a block opens with a trade: its flat rows need no earlier block
        p_buy = 1 / (1 + np.exp(-2 * np.clip((log_close - log_open) / sigma, -20, 20)))
        spread = np.minimum(8, rng.geometric(0.55, n_rows))
        side = rng.random((2, n_rows)) < p_buy

        def at_touch(log_p: np.ndarray, ask: np.ndarray) -> np.ndarray:
            bid = np.floor(np.exp(log_p) * px - spread / 2)
            return np.maximum(np.where(ask, bid + spread, bid), 1)

        o, c = at_touch(log_open, side[0]), at_touch(log_close, side[1])
        o = np.where(trades == 1, c, o)
        excursion = np.rint(np.abs(rng.standard_normal((2, n_rows))) * sigma * np.exp(log_close) * px / 2)
        up_only = rng.random(n_rows) < 0.5  # three trades make room for one excursion only
        high_ok = (trades >= 4) | ((trades == 3) & up_only)
        low_ok = (trades >= 4) | ((trades == 3) & ~up_only)
        h = np.maximum(o, c) + np.where(high_ok, excursion[0], 0)
        lo = np.maximum(np.minimum(o, c) - np.where(low_ok, excursion[1], 0), 1)
        last_traded = np.maximum.accumulate(np.where(trades > 0, np.arange(n_rows), -1))
        previous = c[last_traded]
        flat = trades == 0
        ticks = {k: np.where(flat, previous, v) for k, v in (("to", o), ("th", h), ("tl", lo), ("tc", c))}
        smallest = self._lots_min
        volume = np.where(trades > 0, np.maximum(
            trades * smallest, np.rint(trades * self._mean_lots() * rng.lognormal(-0.125, 0.5, n_rows))), 0)
        # Binomial(trades, p_buy) by its normal approximation, rounded and kept in range: a tenth of the time
        buyers = np.clip(np.rint(trades * p_buy + np.sqrt(trades * p_buy * (1 - p_buy)) * rng.standard_normal(n_rows)),
                         0, trades).astype(np.int64)
        taker = np.rint(volume * buyers / np.maximum(trades, 1) * rng.lognormal(-0.02, 0.2, n_rows))
        taker = np.clip(taker, buyers * smallest, volume - (trades - buyers) * smallest)
        taker = np.where(buyers == trades, volume, np.where(buyers == 0, 0, taker))  # all one side: all of it
        rows = {k[1]: v / px for k, v in ticks.items()}
        rows |= ticks
        rows["v"], rows["V"] = volume / self._lot, taker / self._lot
        rows["vl"], rows["Vl"], rows["k"] = volume, taker, buyers
        mid = (rows["o"] + rows["c"]) / 2
        rows["q"], rows["Q"] = rows["v"] * mid, rows["V"] * mid
        rows["n"] = trades
        rows["f"] = rows["L"] = np.full(n_rows, -1, np.int64)
        rows["t"] = start_ms + np.arange(n_rows, dtype=np.int64) * step_ms
        return rows

    # -- history ------------------------------------------------------------------------------------------

    def _init_history(self, start_ms: int) -> None:
        """1 s rows from a minute boundary about an hour back up to the second of ``start_ms``; the live market
        continues from there. Older rows come on demand (``_extend_history``)."""
        second = start_ms // 1000 * 1000
        fine_start = second // 60_000 * 60_000 - _FINE_HISTORY_S * 1000
        # 1 min rows from 1 s blocks from the start of the day before: every restart within a day or so
        # serves the very same bars for what it shares with the exchange before it.
        self._exact_from = (start_ms // 86_400_000 - 1) * 86_400_000
        # Rises with the clock ten times faster than trades come, so an exchange started later (a restart) begins
        # above every id the one before it can have sent: ids that went back would read as repeats and be dropped.
        self._first_trade_id = 3_000_000_000 + int(start_ms * max(self._rate, 1.0) * ID_RATE_MARGIN / 1000)
        parts = [self._hour(h) for h in range(fine_start // 3_600_000, (second - 1) // 3_600_000 + 1)]
        rows = _window(parts, fine_start, second)
        _number(rows, self._first_trade_id - 1)
        self._seconds = Bars(1000, fine_start)
        self._seconds.extend(rows)
        self._seconds.open_flat(self._seconds.last_close())
        self._minutes = Bars(60_000, fine_start)  # older history, generated on demand
        self._oldest_trade_id = self._first_trade_id - int(rows["n"].sum())

    def _extend_history(self, oldest_ms: int) -> bool:
        """Adds 1 min rows before the oldest, back to the previous hour (from 1 s blocks) or day (the minute
        level), if ``oldest_ms`` is not covered yet (within the cap). Returns whether rows were added."""
        floor = self._seconds.start_ms - _MAX_HISTORY_MIN * 60_000
        end = self._minutes.start_ms
        if oldest_ms >= end or end <= floor:
            return False
        if end > self._exact_from:
            hour = (end - 1) // 3_600_000
            rows = _window([self._fine_minutes(hour)], max(hour * 3_600_000, self._exact_from), end)
        else:
            day = (end - 1) // 86_400_000
            rows = _window([self._coarse_minutes(day)], max(day * 86_400_000, floor), end)
        _number(rows, self._oldest_trade_id - 1)
        self._minutes.prepend(rows)
        self._oldest_trade_id -= int(rows["n"].sum())
        return True

    def _aggregate(self, interval_ms: int, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Bars of ``interval_ms`` over [start_ms, end_ms) from the 1 min rows, then the 1 s rows."""
        fine_start = self._seconds.start_ms
        parts = []
        if start_ms < fine_start:
            while self._extend_history(start_ms):  # a long bar open before the fine rows
                pass
            parts.append(self._minutes.window(start_ms, min(end_ms, fine_start)))
        parts.append(self._seconds.window(max(start_ms, fine_start), end_ms))
        return aggregate_bars(parts, interval_ms)


def _window(parts: list[dict[str, np.ndarray]], start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
    """The rows of ``parts`` (consecutive blocks) opening in [start_ms, end_ms), in the Bars columns."""
    keys = (*Bars.FLOATS, *Bars.INTS, "t")
    rows = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    keep = (rows["t"] >= start_ms) & (rows["t"] < end_ms)
    return {k: v[keep] for k, v in rows.items()}


def _number(rows: dict[str, np.ndarray], end_trade_id: int) -> None:
    """Trade ids for history rows, the last ending at ``end_trade_id``, counting back."""
    trades = rows["n"]
    last_id = end_trade_id - (trades.sum() - np.cumsum(trades))
    rows["f"] = np.where(trades > 0, last_id - trades + 1, -1)
    rows["L"] = np.where(trades > 0, last_id, -1)
