"""A synthetic market: GARCH volatility, Poisson trades and a small order book, with a recent history that ends
where the live market starts. Deterministic for a seed."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
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
MAX_CATCHUP_MS = 1_000  # a longer silence (paused, starved loop) is skipped as quiet time, not burst out
_FINE_HISTORY_S = 3600  # history at 1 s resolution: 1000 1s bars and more (an hour of 1m bars)
_HISTORY_BLOCK_MIN = 10_000  # older history is made of 1 min rows, in fixed blocks (same result any order)
_MAX_HISTORY_MIN = 6 * _HISTORY_BLOCK_MIN  # ~41.7 days: 1000 hourly bars; longer asks get fewer bars
_EXACT_SIZES_MAX = 200_000  # history trades whose sizes are drawn one by one; beyond, volume is estimated
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
    """A generated market for one symbol, deterministic for a ``seed`` and ``start_ms``.

    Log price: Brownian within each second, with a per-second variance that follows GARCH(1,1) on the
    realised one-second returns (volatility clustering). Trades arrive as a Poisson process and hit the touch
    of a book whose spread is a few ticks, the aggressor side leaning with the latest price move, sizes from
    a capped Pareto law (heavy tail). Prices sit on the tick grid and sizes on the lot grid.

    History: the last hour as 1-second rows simulated with the same GARCH process (the live market
    continues its variance), then 1-minute rows further back, generated on demand. The history ends exactly
    at ``start_price`` where the live market begins, so the chart is continuous; every kline, history or live,
    REST or stream, is aggregated from the same rows.
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
        self.seed = secrets.randbits(63) if seed is None else seed
        self._pd, self._qd = price_decimals, qty_decimals
        self._px, self._lot = 10**price_decimals, 10**qty_decimals
        self._rate = trades_per_s
        # Sizes scale with the price: the smallest trade is worth ~6 quote units, levels ~12,000.
        self._size_min = 6.0 / start_price * self._lot
        self._size_max = 600_000.0 / start_price * self._lot
        self._level_log_mean = math.log(12_000.0 / start_price * self._lot)
        variance = volatility**2 / _SECONDS_PER_YEAR
        # Persistence 0.99 a second: |1 s return| autocorrelations near the real BTCUSDT capture's (~0.14).
        self._garch = _Garch.with_mean(variance, alpha=0.06, beta=0.93)
        self._garch_minutes = _Garch.with_mean(variance * 60, alpha=0.06, beta=0.92)
        s = symbol.lower()
        self._s_trade, self._s_agg, self._s_book, self._s_depth = (
            f"{s}@trade",
            f"{s}@aggTrade",
            f"{s}@bookTicker",
            f"{s}@depth@100ms",
        )
        self._s_klines = {interval: f"{s}@kline_{interval}" for interval in INTERVAL_MS}
        self._served = {self._s_trade, self._s_agg, self._s_book, self._s_depth, *self._s_klines.values()}
        self._rng = np.random.default_rng([self.seed, 0])
        self._first_update_id = first_update_id
        self._mean_lots_cache: float | None = None
        start = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self._init_history(start, start_price)
        self._init_live(start, start_price)

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
            self._diffuse(t)
            if t == self._next_second_ms:  # bar boundaries first, then book, then trades at the same time
                self._on_second(out, wanted)
            elif t == self._next_depth_ms:
                self._on_depth(out, wanted)
            else:
                self._on_trade(out, wanted)

    def _init_live(self, start_ms: int, price: float) -> None:
        self._t_ms = float(start_ms)
        self._logp = self._logp_second_open = self._logp_last_trade = math.log(price)
        self._t_last_trade = float(start_ms)
        self._next_second_ms = start_ms // 1000 * 1000 + 1000
        self._next_depth_ms = start_ms // 100 * 100 + 100
        self._next_trade_ms = start_ms + self._rng.exponential(1000 / self._rate)
        self._trade_id = self._first_trade_id
        self._agg_offset = 700_000_000 + int(self._rng.integers(10**8)) - self._first_trade_id
        self._spread = 1
        drawn = 40_000_000_000 + int(self._rng.integers(10**9))  # drawn either way: the same seed, the same market
        self._book = _Book(first_update_id=drawn if self._first_update_id is None else self._first_update_id)
        self._last_top: tuple[int, int, int, int] | None = None
        self._requote()

    def _diffuse(self, t: float) -> None:
        dt_s = (t - self._t_ms) / 1000
        if dt_s > 0:
            self._logp += math.sqrt(self._variance * dt_s) * self._rng.standard_normal()
            self._t_ms = t

    def skip_silence(self, until_ms: float) -> None:
        """Stand still until ``until_ms`` (a paused server, a starved loop), making no frames for that time."""
        if until_ms > self._t_ms:
            self._go_quiet(until_ms)

    def _go_quiet(self, until_ms: float) -> None:
        """Skips a silence (the server paused, the loop starved) rather than replaying it in a burst: the
        market stands still, seconds pass without trades, and no frames are made for them."""
        while self._next_second_ms <= until_ms:
            self._close_second()
        self._t_ms = until_ms
        self._next_depth_ms = int(until_ms) // 100 * 100 + 100
        self._next_trade_ms = max(self._next_trade_ms, until_ms + self._rng.exponential(1000 / self._rate))

    def _on_second(self, out: list[Frame], wanted: Container[str]) -> None:
        boundary = self._next_second_ms
        for interval, ms in INTERVAL_MS.items():
            stream = self._s_klines[interval]
            if stream in wanted:
                bar_open = (boundary - 1000) // ms * ms
                bar = self._aggregate(ms, bar_open, boundary)
                closed = boundary % ms == 0
                out.append((stream, kline_payload(self.symbol, interval, bar, boundary, closed)))
        self._close_second()

    def _close_second(self) -> None:
        r = self._logp - self._logp_second_open
        self._variance = self._garch.next(self._variance, r)
        self._logp_second_open = self._logp
        self._next_second_ms += 1000
        self._seconds.open_flat(self._seconds.last_close())

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
        t = self._next_trade_ms
        self._next_trade_ms = t + self._rng.exponential(1000 / self._rate)
        taker_buy = self._aggressor_is_buyer(t)
        self._requote()
        lots = self._trade_lots()
        price = self._book.hit(taker_buy, lots, self._level_qty)
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

    def _aggressor_is_buyer(self, t: float) -> bool:
        """Buyers lean in after a rise and sellers after a fall: P(buy) is a logistic function of the price
        move since the previous trade, in units of its expected size."""
        move = self._logp - self._logp_last_trade
        dt_s = max((t - self._t_last_trade) / 1000, 1e-3)
        self._logp_last_trade, self._t_last_trade = self._logp, t
        z = max(-20.0, min(20.0, move / math.sqrt(self._variance * dt_s)))
        return bool(self._rng.random() < 1 / (1 + math.exp(-2 * z)))

    def _requote(self) -> None:
        mid = math.exp(self._logp) * self._px
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

    def _trade_lots(self) -> int:
        return self._sizes(self._rng, 1)[0].item()

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

    # -- history ------------------------------------------------------------------------------------------

    def _init_history(self, start_ms: int, price: float) -> None:
        """1 s rows from a minute boundary about an hour back up to the second of ``start_ms``, ending at
        ``price``; the live market continues from there (same variance, next trade id)."""
        second = start_ms // 1000 * 1000
        fine_start = second // 60_000 * 60_000 - _FINE_HISTORY_S * 1000
        rng = np.random.default_rng([self.seed, 1])
        self._first_trade_id = 3_000_000_000 + int(rng.integers(10**9))
        rows, self._variance = self._simulate_rows(
            rng, (second - fine_start) // 1000, 1.0, self._garch, price, self._first_trade_id - 1
        )
        self._seconds = Bars(1000, fine_start)
        self._seconds.extend(rows)
        self._seconds.open_flat(self._seconds.last_close())
        self._minutes = Bars(60_000, fine_start)  # older history, generated on demand
        self._oldest_trade_id = self._first_trade_id - int(rows["n"].sum())

    def _extend_history(self, oldest_ms: int) -> bool:
        """Adds one block of 1 min rows before the oldest if ``oldest_ms`` is not covered yet (within the
        cap). Blocks have fixed bounds and seeds, so the history does not depend on what was asked first.
        Returns whether a block was added."""
        floor = self._seconds.start_ms - _MAX_HISTORY_MIN * 60_000
        if oldest_ms >= self._minutes.start_ms or self._minutes.start_ms <= floor:
            return False
        block = len(self._minutes) // _HISTORY_BLOCK_MIN
        rng = np.random.default_rng([self.seed, 2, block])
        end_price = float(self._first_open())
        rows, _ = self._simulate_rows(
            rng, _HISTORY_BLOCK_MIN, 60.0, self._garch_minutes, end_price, self._oldest_trade_id - 1
        )
        self._minutes.prepend(rows)
        self._oldest_trade_id -= int(rows["n"].sum())
        return True

    def _first_open(self) -> float:
        oldest = self._minutes if len(self._minutes) else self._seconds
        return float(oldest.window(oldest.start_ms, oldest.start_ms + 1)["o"][0])

    def _aggregate(self, interval_ms: int, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Bars of ``interval_ms`` over [start_ms, end_ms) from the 1 min rows, then the 1 s rows."""
        fine_start = self._seconds.start_ms
        parts = []
        if start_ms < fine_start:
            while self._extend_history(start_ms):  # a long bar open before the fine rows: once, one block
                pass
            parts.append(self._minutes.window(start_ms, min(end_ms, fine_start)))
        parts.append(self._seconds.window(max(start_ms, fine_start), end_ms))
        return aggregate_bars(parts, interval_ms)

    def _simulate_rows(
        self,
        rng: np.random.Generator,
        n: int,
        step_s: float,
        garch: _Garch,
        end_price: float,
        end_trade_id: int,
    ) -> tuple[dict[str, np.ndarray], float]:
        """``n`` rows of ``step_s`` seconds from the GARCH process, ending at ``end_price`` (the last close,
        exactly, on the grid) and ``end_trade_id``. Returns the rows and the variance after the last step."""
        r, variance, variance_end = garch.path(rng.standard_normal(n), garch.mean)
        log_close = np.cumsum(r)
        log_close += math.log(end_price) - log_close[-1]
        trades = rng.poisson(self._rate * step_s, n)
        trades[-1] = max(trades[-1], 1)
        p_buy = 1 / (1 + np.exp(-2 * np.clip(r / np.sqrt(variance), -20, 20)))
        ohlc = self._row_prices(rng, log_close - r, log_close, np.sqrt(variance), trades, p_buy)
        ohlc["c"][-1] = ohlc["h"][-1] = ohlc["l"][-1] = round(end_price * self._px)
        if trades[-1] == 1:
            ohlc["o"][-1] = ohlc["c"][-1]
        ohlc["h"][-1] = max(ohlc["h"][-1], ohlc["o"][-1])
        ohlc["l"][-1] = min(ohlc["l"][-1], ohlc["o"][-1])
        rows = {k: v / self._px for k, v in ohlc.items()}
        rows |= self._row_volumes(rng, trades, p_buy)
        mid = (rows["o"] + rows["c"]) / 2
        rows["q"], rows["Q"] = rows["v"] * mid, rows["V"] * mid
        last_id = end_trade_id - (trades.sum() - np.cumsum(trades))
        rows["n"] = trades
        rows["f"] = np.where(trades > 0, last_id - trades + 1, -1)
        rows["L"] = np.where(trades > 0, last_id, -1)
        return rows, variance_end

    def _row_prices(
        self,
        rng: np.random.Generator,
        log_open: np.ndarray,
        log_close: np.ndarray,
        sigma: np.ndarray,
        trades: np.ndarray,
        p_buy: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """OHLC in ticks: the first and last trades at the bid or the ask around the efficient price, the
        range widened by a Brownian-bridge-sized excursion when a row has several trades, and rows without
        trades flat at the previous close."""
        n = len(trades)
        spread = np.minimum(8, rng.geometric(0.55, n))

        def at_touch(log_p: np.ndarray) -> np.ndarray:
            bid = np.floor(np.exp(log_p) * self._px - spread / 2)
            return np.where(rng.random(n) < p_buy, bid + spread, bid)

        o, c = at_touch(log_open), at_touch(log_close)
        o = np.where(trades == 1, c, o)
        excursion = np.rint(np.abs(rng.standard_normal((2, n))) * sigma * np.exp(log_close) * self._px / 2)
        several = trades >= 2
        h = np.maximum(o, c) + np.where(several, excursion[0], 0)
        lo = np.minimum(o, c) - np.where(several, excursion[1], 0)
        last_traded = np.maximum.accumulate(np.where(trades > 0, np.arange(n), -1))
        previous = np.where(last_traded >= 0, c[np.maximum(last_traded, 0)], o[0])
        flat = trades == 0
        return {k: np.where(flat, previous, v) for k, v in (("o", o), ("h", h), ("l", lo), ("c", c))}

    def _row_volumes(
        self, rng: np.random.Generator, trades: np.ndarray, p_buy: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Base volume and its taker-buy part: the sum of every trade's size when there are not too many
        (1 s rows at normal rates); otherwise (1 min rows, fast markets) the count times the mean size,
        with noise, to keep generation within milliseconds."""
        n = len(trades)
        if trades.sum() <= _EXACT_SIZES_MAX:
            row = np.repeat(np.arange(n), trades)
            sizes = self._sizes(rng, len(row))
            buys = rng.random(len(row)) < p_buy[row]
            volume = np.bincount(row, sizes, minlength=n)
            taker = np.bincount(row, sizes * buys, minlength=n)
        else:
            volume = np.rint(trades * self._mean_lots() * rng.lognormal(-0.125, 0.5, n))
            taker = np.rint(volume * np.clip(p_buy + rng.normal(0, 0.1, n), 0, 1))
        return {"v": volume / self._lot, "V": taker / self._lot}


