"""The built-in exchange: Binance spot's market-data protocol, served on loopback.

The terminal's real Binance adapter and connection code talk to it exactly as to the exchange: combined
(``/stream?streams=a/b``) and raw (``/ws/<stream>``) WebSocket streams, live SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS requests, and the REST calls the terminal makes at start (``/api/v3/depth``,
``/api/v3/klines``) on the same port through websockets' ``process_request`` hook.

What is served comes from a source (``MarketSource``): ``SyntheticMarket`` generates a market (GARCH
volatility, Poisson trades, a small order book) together with a recent history that ends where the live
market starts; ``ReplaySource`` replays a recorded file. The server pulls batches of frames from the source
and fans each frame out to the connections subscribed to its stream through one bounded outbox per
connection, drained by that connection's own writer task, so a slow client never holds up the others: it is
closed when its outbox overflows (live sources) or stops draining (a replay at full speed, which otherwise
goes exactly as fast as its readers).

No Qt here, and nothing holds the event loop for more than a few milliseconds: the synthetic market advances
in 25 ms ticks, a replay sleeps once per batch, and history is generated with numpy in bounded blocks.

Run alone: ``python -m app.market.simulator --port 9000 [--replay FILE --speed 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import http
import logging
import math
import os
import re
import secrets
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from app.market.recording import RecordingError, iter_frames, scan_recording
from app.market.replay_dialects import ForeignFrames, dialect_of
from app.market.sim_protocols import BINANCE_LIKE, PROTOCOLS, FuturesDialect, ProtocolSession, make_session

__all__ = [
    "INTERVAL_MS",
    "ExchangeSimulator",
    "Frame",
    "MarketSource",
    "ReplaySource",
    "RestError",
    "SimulatorPortInUse",
    "SimulatorStats",
    "SyntheticMarket",
    "main",
]

log = logging.getLogger(__name__)

Frame = tuple[str, bytes]
"""One message as the exchange sends it on a raw stream: (stream name, JSON payload)."""

# Kline intervals served, in ms. 3d/1w/1M are left out: they are not epoch-aligned.
INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}

_STREAM_RE = re.compile(r"([a-z0-9]+)@([A-Za-z0-9_@]+)")
_MAX_STREAMS = 1024  # Binance's limit per connection

_TICK_S = 0.025  # synthetic step: a batch takes well under a millisecond to generate at normal rates
MAX_CATCHUP_MS = 1_000  # a longer silence (paused, starved loop) is skipped as quiet time, not burst out
_FINE_HISTORY_S = 3600  # history at 1 s resolution: 1000 1s bars and more (an hour of 1m bars)
_HISTORY_BLOCK_MIN = 10_000  # older history is made of 1 min rows, in fixed blocks (same result any order)
_MAX_HISTORY_MIN = 6 * _HISTORY_BLOCK_MIN  # ~41.7 days: 1000 hourly bars; longer asks get fewer bars
_EXACT_SIZES_MAX = 200_000  # history trades whose sizes are drawn one by one; beyond, volume is estimated
_SECONDS_PER_YEAR = 365 * 86_400

_REPLAY_BATCH = 256  # frames per batch at full speed: a few ms of work between yields to the loop
_REPLAY_EARLY_S = 0.005  # frames due this soon go out with the current batch instead of a sleep each
_REPLAY_MAX_LATE_S = 1.0  # further behind (paused, starved), the replay resumes from here, not in a burst
_REPLAY_SNAPSHOT_WAIT_S = 5.0  # REST depth waits this long for the tape to reach a depth snapshot

_WRITE_YIELD_EVERY = 64  # frames a client's writer sends before it gives the loop a turn
_OUTBOX_MAX = 10_000  # messages queued for one client before a live source gives up on it (default)
_OUTBOX_HIGH = 1_000  # a full-speed replay waits for outboxes above this...
_OUTBOX_LOW = 100  # ...until they are back under this
_SLOW_CLIENT_S = 5.0  # ...for at most this long, then closes that client


class SimulatorPortInUse(OSError):
    """The port asked for is taken, by another simulator or any other program."""

    def __init__(self, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} is already in use")
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


class RestError(Exception):
    """A REST request the exchange refuses: HTTP status plus Binance's error code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def _invalid_symbol() -> RestError:
    return RestError(400, -1121, "Invalid symbol.")


def _interval_ms(interval: str) -> int:
    ms = INTERVAL_MS.get(interval)
    if ms is None:
        raise RestError(400, -1120, "Invalid interval.")
    return ms


class MarketSource(Protocol):
    """What the server serves. It pulls ``batches`` and answers REST from the same state."""

    label: str  # shown to the user, e.g. "synthetic BTCUSDT"
    paced: bool  # False: as fast as possible, the server then waits for its readers between batches
    wait_for_subscriber: bool  # True: hold the first batch until a client subscribes (a replay's start)
    finished: asyncio.Event  # set when there is nothing more to send

    def serves(self, stream: str) -> bool: ...

    def batches(self, wanted: Container[str]) -> AsyncIterator[list[Frame]]:
        """Frames in exchange order; streams not in ``wanted`` (nobody listens) may be left out."""
        ...

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]: ...

    async def klines(
        self, symbol: str, interval: str, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[Any]]: ...


# ---------------------------------------------------------------------------------------------------------
# Numbers as Binance writes them


def _units(n: int, decimals: int) -> str:
    """A count of 10**-decimals units with 8 decimals, exactly ("61837.63000000"), no float rounding."""
    whole, frac = divmod(n, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}{'0' * (8 - decimals)}"


def _dec(x: float) -> str:
    return f"{x:.8f}"


def _kline_window(
    interval_ms: int, limit: int, now_ms: int, start_ms: int | None, end_ms: int | None, data_from_ms: int
) -> tuple[int, int] | None:
    """Open times of the first and last bar to return, following Binance: the newest ``limit`` bars up to
    ``end_ms`` (or now, the last being the bar in progress), or the oldest ``limit`` from ``start_ms``; none
    before the bar holding ``data_from_ms``."""
    last = min(now_ms, now_ms if end_ms is None else end_ms) // interval_ms * interval_ms
    oldest = data_from_ms // interval_ms * interval_ms
    if start_ms is not None:
        first = max(-(-start_ms // interval_ms) * interval_ms, oldest)
        last = min(last, first + (limit - 1) * interval_ms)
    else:
        first = max(last - (limit - 1) * interval_ms, oldest)
    return (first, last) if first <= last else None


# ---------------------------------------------------------------------------------------------------------
# Bars: the market's own record, from which every kline (REST or stream, any interval) is aggregated


class _Bars:
    """Contiguous rows of one step (1 s or 1 min), oldest first, so that all timeframes agree.

    Prices are floats on the tick grid; ``v``/``q`` base and quote volume, ``V``/``Q`` their taker-buy part,
    ``n`` the trade count and ``f``/``L`` the first and last trade ids (-1 for a row without trades).
    The last row is the one in progress: live trades are added to it.
    """

    FLOATS = ("o", "h", "l", "c", "v", "q", "V", "Q")
    INTS = ("n", "f", "L")

    def __init__(self, step_ms: int, start_ms: int) -> None:
        self.step_ms = step_ms
        self.start_ms = start_ms  # open time of row 0
        self._len = 0
        self._cols = {k: np.zeros(0) for k in self.FLOATS} | {k: np.zeros(0, np.int64) for k in self.INTS}

    def __len__(self) -> int:
        return self._len

    @property
    def end_ms(self) -> int:
        return self.start_ms + self._len * self.step_ms

    def last_close(self) -> float:
        return float(self._cols["c"][self._len - 1])

    def extend(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["o"])
        self._reserve(self._len + n)
        for k, col in self._cols.items():
            col[self._len : self._len + n] = rows[k]
        self._len += n

    def prepend(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows["o"])
        self._cols = {k: np.concatenate([rows[k], col[: self._len]]) for k, col in self._cols.items()}
        self._len += n
        self.start_ms -= n * self.step_ms

    def open_flat(self, price: float) -> None:
        """A new row with no trades yet: flat at ``price``, as Binance draws an empty bar."""
        self._reserve(self._len + 1)
        i = self._len
        for k in ("o", "h", "l", "c"):
            self._cols[k][i] = price
        for k in ("v", "q", "V", "Q", "n"):
            self._cols[k][i] = 0
        self._cols["f"][i] = self._cols["L"][i] = -1
        self._len += 1

    def add_trade(self, price: float, qty: float, taker_buy: bool, trade_id: int) -> None:
        c, i = self._cols, self._len - 1
        if c["n"][i] == 0:  # the first trade opens the bar
            c["o"][i] = c["h"][i] = c["l"][i] = price
            c["f"][i] = trade_id
        elif price > c["h"][i]:
            c["h"][i] = price
        elif price < c["l"][i]:
            c["l"][i] = price
        c["c"][i] = price
        c["L"][i] = trade_id
        c["n"][i] += 1
        c["v"][i] += qty
        c["q"][i] += qty * price
        if taker_buy:
            c["V"][i] += qty
            c["Q"][i] += qty * price

    def window(self, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Rows opening in [start_ms, end_ms), with their open times as ``t``."""
        i0 = min(max(0, (start_ms - self.start_ms) // self.step_ms), self._len)
        i1 = min(max(i0, -(-(end_ms - self.start_ms) // self.step_ms)), self._len)
        rows = {k: col[i0:i1] for k, col in self._cols.items()}
        rows["t"] = self.start_ms + np.arange(i0, i1, dtype=np.int64) * self.step_ms
        return rows

    def _reserve(self, size: int) -> None:
        capacity = len(self._cols["o"])
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 1024)
        for k, col in self._cols.items():
            grown = np.zeros(capacity, col.dtype)
            grown[: self._len] = col[: self._len]
            self._cols[k] = grown


def _aggregate(parts: list[dict[str, np.ndarray]], interval_ms: int) -> dict[str, np.ndarray]:
    """Rows (in time order, possibly of two steps) -> one row per interval bucket, Binance's OHLC rules:
    open/high/low/close come from the rows that traded; a bucket without trades stays flat."""
    rows = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n_rows = len(rows["t"])
    if n_rows == 0:
        return rows
    bucket = rows["t"] // interval_ms
    starts = np.flatnonzero(np.diff(bucket, prepend=bucket[0] - 1))
    traded = rows["n"] > 0
    index = np.arange(n_rows)
    first = np.minimum.reduceat(np.where(traded, index, n_rows), starts)
    last = np.maximum.reduceat(np.where(traded, index, -1), starts)
    any_trade = last >= 0
    first = np.where(any_trade, first, starts)
    last = np.where(any_trade, last, starts)
    high = np.maximum.reduceat(np.where(traded, rows["h"], -np.inf), starts)
    low = np.minimum.reduceat(np.where(traded, rows["l"], np.inf), starts)
    no_id = np.iinfo(np.int64).max
    first_id = np.minimum.reduceat(np.where(rows["f"] >= 0, rows["f"], no_id), starts)
    out = {
        "t": bucket[starts] * interval_ms,
        "o": rows["o"][first],
        "h": np.where(any_trade, high, rows["h"][starts]),
        "l": np.where(any_trade, low, rows["l"][starts]),
        "c": rows["c"][last],
        "f": np.where(first_id == no_id, -1, first_id),
        "L": np.maximum.reduceat(rows["L"], starts),
    }
    for k in ("v", "q", "V", "Q", "n"):
        out[k] = np.add.reduceat(rows[k], starts)
    return out


def _kline_rows(bars: dict[str, np.ndarray], interval_ms: int) -> list[list[Any]]:
    """Binance REST kline rows: [open_time, o, h, l, c, v, close_time, quote_v, n, taker_v, taker_q, "0"]."""
    cols = [bars[k].tolist() for k in ("t", "o", "h", "l", "c", "v", "q", "n", "V", "Q")]
    return [
        [
            t,
            _dec(o),
            _dec(hi),
            _dec(lo),
            _dec(c),
            _dec(v),
            t + interval_ms - 1,
            _dec(q),
            n,
            _dec(bv),
            _dec(bq),
            "0",
        ]
        for t, o, hi, lo, c, v, q, n, bv, bq in zip(*cols, strict=True)
    ]


def _kline_payload(
    symbol: str, interval: str, bar: dict[str, np.ndarray], event_ms: int, closed: bool
) -> bytes:
    t = int(bar["t"][0])
    k = {
        "t": t,
        "T": t + INTERVAL_MS[interval] - 1,
        "s": symbol,
        "i": interval,
        "f": int(bar["f"][0]),
        "L": int(bar["L"][0]),
        "o": _dec(bar["o"][0]),
        "c": _dec(bar["c"][0]),
        "h": _dec(bar["h"][0]),
        "l": _dec(bar["l"][0]),
        "v": _dec(bar["v"][0]),
        "n": int(bar["n"][0]),
        "x": closed,
        "q": _dec(bar["q"][0]),
        "V": _dec(bar["V"][0]),
        "Q": _dec(bar["Q"][0]),
        "B": "0",
    }
    return orjson.dumps({"e": "kline", "E": event_ms, "s": symbol, "k": k})


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
            return [[_units(p, price_decimals), _units(side.levels[p], qty_decimals)] for p in prices]

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
            await asyncio.sleep(_TICK_S)
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
        ms = _interval_ms(interval)
        fine_start = self._seconds.start_ms
        earliest = fine_start if ms < 60_000 else fine_start - _MAX_HISTORY_MIN * 60_000
        earliest = -(-earliest // ms) * ms  # only whole bars: the market "existed" before its history
        window = _kline_window(ms, limit, int(self._t_ms), start_ms, end_ms, earliest)
        if window is None:
            return []
        first, last = window
        while self._extend_history(first):
            await asyncio.sleep(0)  # a block takes a few ms; let the loop breathe between blocks
        bars = self._aggregate(ms, first, last + ms)
        await asyncio.sleep(0)  # aggregating and formatting 1000 long bars take ~3 ms each
        return _kline_rows(bars, ms)

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
                out.append((stream, _kline_payload(self.symbol, interval, bar, boundary, closed)))
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
                "b": [[_units(p, pd), _units(q, qd)] for p, q in bids],
                "a": [[_units(p, pd), _units(q, qd)] for p, q in asks],
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
        p, q, maker = _units(price, self._pd), _units(lots, self._qd), not taker_buy
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
                "b": _units(bid, pd),
                "B": _units(bid_qty, qd),
                "a": _units(ask, pd),
                "A": _units(ask_qty, qd),
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
            raise _invalid_symbol()

    def symbol_info(self) -> dict[str, Any]:
        """This market's entry in ``/api/v3/exchangeInfo``: its own tick and lot grids, as Binance writes them."""
        from app.market.instruments import split_symbol

        base, quote = split_symbol(self.symbol)
        tick, lot = _units(1, self._pd), _units(1, self._qd)
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
        self._seconds = _Bars(1000, fine_start)
        self._seconds.extend(rows)
        self._seconds.open_flat(self._seconds.last_close())
        self._minutes = _Bars(60_000, fine_start)  # older history, generated on demand
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
        return _aggregate(parts, interval_ms)

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


# ---------------------------------------------------------------------------------------------------------
# Replay of a recorded file


class _ReplayBook:
    """The recorded REST snapshot kept current with the recorded diffs, so a client that connects in the
    middle of a replay gets a snapshot consistent with the diffs it is about to receive."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.last_update_id = int(snapshot["lastUpdateId"])
        self.bids = {str(p): str(q) for p, q in snapshot["bids"]}
        self.asks = {str(p): str(q) for p, q in snapshot["asks"]}

    def apply(self, diff: dict[str, Any]) -> None:
        last = int(diff["u"])
        if last <= self.last_update_id:
            return  # already in the snapshot
        for levels, side in ((diff["b"], self.bids), (diff["a"], self.asks)):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = last

    def snapshot(self, limit: int) -> dict[str, Any]:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [list(x) for x in bids],
            "asks": [list(x) for x in asks],
        }


class ReplaySource:
    """Replays a recording (see ``app.market.recording``) on the streams it was recorded from.

    Combined-stream envelopes are served on their stream; a bare REST depth snapshot line is kept (and then
    updated with the recorded diffs) for ``/api/v3/depth``; REST klines are built from the replayed trades.
    Timing follows the recorded receive times (or the payload's ``E`` for JSON lines without them) divided
    by ``speed``; speed 0 goes as fast as the clients read. The tape starts when the first client subscribes
    and ``finished`` is set at the end of the file; the server stays up, the streams go quiet.
    """

    wait_for_subscriber = True

    def __init__(self, path: str | Path, speed: float = 1.0) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, not {speed}")
        self.path = Path(path)
        self.speed = speed
        self.paced = speed > 0
        pace = "as fast as possible" if speed == 0 else f"at {speed:g}x"
        self.label = f"replay of {self.path.name} {pace}"
        self.finished = asyncio.Event()
        self._books_changed = asyncio.Event()
        self.frames_skipped = 0  # lines that are neither stream envelopes nor depth snapshots
        self._books: dict[str, _ReplayBook] = {}
        self._bars: dict[str, _Bars] = {}
        self._symbols: set[str] = set()
        self._trade_event: str | None = None  # "trade", else "aggTrade": the one REST klines are built from
        self._last_depth_symbol: str | None = None
        self._pending_snapshot: dict[str, Any] | None = None
        # Read once through at construction: a file it cannot replay fails here with one sentence, and a
        # subscription to a symbol the recording does not hold is refused in the protocol spoken.
        self.symbols_held = frozenset(scan_recording(self.path).symbols)
        self._foreign = ForeignFrames()  # Coinbase and Kraken recordings, as Binance frames

    def serves(self, stream: str) -> bool:
        match = _STREAM_RE.fullmatch(stream)  # any stream of a symbol held; which ones carry data is up to the tape
        return match is not None and match.group(1).upper() in self.symbols_held

    async def batches(self, wanted: Container[str]) -> AsyncIterator[list[Frame]]:
        pacer = _Pacer(self.speed) if self.paced else None
        recorded_ns: int | None = None
        batch: list[Frame] = []
        frames = iter_frames(self.path)
        try:
            for recv_ns, raw in frames:
                msg = _json_object(raw)
                if msg is None:
                    self.frames_skipped += 1
                    continue
                recorded_ns = recv_ns if recv_ns is not None else _event_ns(msg, recorded_ns)
                if pacer and recorded_ns is not None and pacer.delay(recorded_ns) > _REPLAY_EARLY_S:
                    if batch:  # what is due now goes out before the sleep; one sleep per gap, not per frame
                        yield batch
                        batch = []
                    await asyncio.sleep(max(0.0, pacer.delay(recorded_ns)))
                batch.extend(self._ingest(msg, raw, wanted))
                if len(batch) >= _REPLAY_BATCH:
                    yield batch
                    batch = []
                    if not self.paced:
                        await asyncio.sleep(0)  # a full-speed tape must still let the loop run
            if batch:
                yield batch
        finally:
            frames.close()
            self.finished.set()

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]:
        """The recorded snapshot brought up to date. A terminal asks for it as soon as it has subscribed,
        usually before the tape reaches the snapshot line, so the answer waits for it (a few seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REPLAY_SNAPSHOT_WAIT_S):
                while symbol not in self._books and not self.finished.is_set():
                    self._books_changed.clear()
                    await self._books_changed.wait()
        book = self._books.get(symbol)
        if book is None:
            if symbol not in self.symbols_held:
                raise _invalid_symbol()
            raise RestError(503, -1, f"the recording holds no depth snapshot for {symbol} (yet)")
        return book.snapshot(limit)

    async def klines(
        self, symbol: str, interval: str, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[Any]]:
        if symbol not in self.symbols_held:
            raise _invalid_symbol()
        ms = _interval_ms(interval)
        bars = self._bars.get(symbol)
        if bars is None:
            return []
        window = _kline_window(ms, limit, bars.end_ms - 1, start_ms, end_ms, bars.start_ms)
        if window is None:
            return []
        first, last = window
        return _kline_rows(_aggregate([bars.window(first, last + ms)], ms), ms)

    def _ingest(self, msg: dict[str, Any], raw: bytes, wanted: Container[str]) -> list[Frame]:
        stream, data = msg.get("stream"), msg.get("data")
        if isinstance(stream, str) and isinstance(data, dict):
            try:
                self._observe(data)
            except (KeyError, TypeError, ValueError):
                self.frames_skipped += 1  # still served: the terminal's parser must cope, as live
            return [(stream, orjson.dumps(data))] if stream in wanted else []
        if "lastUpdateId" in msg:
            self._take_snapshot(msg)
            return []
        adapter = dialect_of(msg)
        if adapter is None:
            self.frames_skipped += 1  # e.g. a subscribe reply the recorder kept
            return []
        out: list[Frame] = []
        converted = self._foreign.convert(adapter, raw)
        if not converted:
            self.frames_skipped += 1  # acks, heartbeats, candles, frames the adapter refused
        for stream, data in converted:
            if stream is None:  # a book snapshot: what /api/v3/depth answers from now on
                self._add_book(data.pop("s"), _ReplayBook(data))
                continue
            self._observe(data)
            if stream in wanted:
                out.append((stream, orjson.dumps(data)))
        return out

    def _observe(self, data: dict[str, Any]) -> None:
        """Keeps the REST state (books, bars) in step with what has been replayed."""
        symbol = data.get("s")
        if not isinstance(symbol, str):
            return
        self._symbols.add(symbol)
        event = data.get("e")
        if event == "depthUpdate":
            self._last_depth_symbol = symbol
            if self._pending_snapshot is not None:
                self._add_book(symbol, _ReplayBook(self._pending_snapshot))
                self._pending_snapshot = None
            if symbol in self._books:
                self._books[symbol].apply(data)
        elif event in ("trade", "aggTrade"):
            self._trade_event = self._trade_event or event
            if event == self._trade_event:
                self._record_trade(symbol, data)

    def _take_snapshot(self, msg: dict[str, Any]) -> None:
        """The REST answer names no symbol: it belongs to the depth stream just seen (or the next one)."""
        try:
            book = _ReplayBook(msg)
        except (KeyError, TypeError, ValueError):
            self.frames_skipped += 1
            return
        if isinstance(msg.get("s"), str):  # written by --record with its symbol
            self._add_book(msg["s"], book)
        elif self._last_depth_symbol is None:
            self._pending_snapshot = msg
        else:
            self._add_book(self._last_depth_symbol, book)

    def _add_book(self, symbol: str, book: _ReplayBook) -> None:
        self._books[symbol] = book
        self._books_changed.set()

    def _record_trade(self, symbol: str, data: dict[str, Any]) -> None:
        price, qty, t = float(data["p"]), float(data["q"]), int(data["T"])
        trade_id = int(data["t"] if "t" in data else data["a"])
        second = t // 1000 * 1000
        bars = self._bars.get(symbol)
        if bars is None:
            bars = self._bars[symbol] = _Bars(1000, second)
            bars.open_flat(price)
        while bars.end_ms <= second:
            bars.open_flat(bars.last_close())
        bars.add_trade(price, qty, not data["m"], trade_id)


class _Pacer:
    """Recorded time -> loop time at ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._anchor: tuple[int, float] | None = None  # (recorded ns, loop time) the pace is measured from

    def delay(self, recorded_ns: int) -> float:
        """Seconds until a frame recorded at ``recorded_ns`` is due. Further behind than _REPLAY_MAX_LATE_S
        (the server was paused, the loop starved) the tape resumes from here instead of bursting."""
        now = asyncio.get_running_loop().time()
        if self._anchor is None:
            self._anchor = (recorded_ns, now)
        delay = self._anchor[1] + (recorded_ns - self._anchor[0]) / 1e9 / self.speed - now
        if delay < -_REPLAY_MAX_LATE_S:
            self._anchor = (recorded_ns, now)
            return 0.0
        return delay


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


def _event_ns(msg: dict[str, Any], previous: int | None) -> int | None:
    """Exchange event time of a frame without a receive time; bookTicker has none, it keeps the previous."""
    data = msg.get("data", msg)
    event_ms = data.get("E") if isinstance(data, dict) else None
    return event_ms * 1_000_000 if isinstance(event_ms, int) else previous


# ---------------------------------------------------------------------------------------------------------
# The server


@dataclass(slots=True)
class SimulatorStats:
    frames_sent: int = 0  # every WebSocket message written (market frames and request replies)
    clients: int = 0  # connections open now
    slow_clients_dropped: int = 0  # closed because they could not keep up
    # Binance-dialect trade frames written, per symbol: what a fault test compares with the trades the terminal
    # delivered (scripts/chaos.py reads it from the ``stats`` line printed at exit).
    trades_sent: Counter[str] = field(default_factory=Counter)


_TRADE_MARK = b'"e":"trade"'
_SYMBOL_FIELD = re.compile(rb'"s":"([^"]+)"')


def _count_trade(stats: SimulatorStats, msg: bytes) -> None:
    if _TRADE_MARK in msg[:96] and (m := _SYMBOL_FIELD.search(msg)) is not None:
        stats.trades_sent[m.group(1).decode()] += 1


class _Client:
    """One WebSocket connection: its subscriptions and its outbox, drained by its own writer task."""

    def __init__(self, ws: ServerConnection, combined: bool) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # an ordered set: LIST_SUBSCRIPTIONS answers in order
        self.drained = asyncio.Event()
        self.drained.set()
        self._outbox: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.proto: ProtocolSession | None = None  # set when the server speaks Coinbase or Kraken (sim_protocols)

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    def push(self, msg: bytes) -> None:
        self._outbox.append(msg)
        if len(self._outbox) > _OUTBOX_HIGH:
            self.drained.clear()
        self._ready.set()

    def discard(self) -> None:
        self._outbox.clear()
        self.drained.set()

    async def write_loop(self, stats: SimulatorStats) -> None:
        sent = 0
        try:
            while True:
                while not self._outbox:
                    self._ready.clear()
                    await self._ready.wait()
                msg = self._outbox.popleft()
                if len(self._outbox) <= _OUTBOX_LOW:
                    self.drained.set()
                await self.ws.send(msg, text=True)  # returns at once while the socket takes it: no turn of the loop
                stats.frames_sent += 1
                _count_trade(stats, msg)
                sent += 1
                if sent % _WRITE_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the terminal (same loop) in between chunks of a large batch
        except ConnectionClosed:
            pass


def _ws_target(path: str) -> tuple[bool, list[str]] | None:
    """(combined, streams) for a WebSocket path, None for any other path."""
    url = urlsplit(path)
    if url.path == "/stream":
        names = parse_qs(url.query).get("streams", [""])[0]
        return True, [s for s in names.split("/") if s]
    if url.path == "/ws" or url.path.startswith("/ws/"):
        return False, [unquote(s) for s in url.path[4:].split("/") if s]
    return None


def _json_response(status: int, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


def _valid_id(request_id: Any) -> bool:
    if isinstance(request_id, bool):
        return False
    return (
        request_id is None
        or (isinstance(request_id, int) and 0 <= request_id < 2**63)
        or (isinstance(request_id, str) and len(request_id) <= 36)
    )


def _param(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise RestError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _int_param(params: dict[str, str], name: str, default: int | None, lo: int, hi: int) -> int | None:
    """Binance's parsing: digits only; ``limit`` above its maximum is capped rather than refused."""
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 20:
        raise RestError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return min(max(int(value), lo), hi)


class ExchangeSimulator:
    """Serves a ``MarketSource`` as Binance spot does, on ``ws_url`` and ``rest_url`` (the same port)."""

    def __init__(
        self,
        source: MarketSource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_backlog: int = _OUTBOX_MAX,
        protocol: str = "binance",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.protocol = protocol  # the WebSocket dialect: "binance", or "coinbase"/"kraken" via sim_protocols
        # Binance USD-M futures: spot's protocol with its own frames and ids, rewritten once for all listeners
        self._futures = FuturesDialect() if protocol == "binance-futures" else None
        self.source = source
        self.max_backlog = max_backlog  # messages a client may be behind before a live source drops it
        self.host = host
        self.port = port  # the bound port once started
        self.stats = SimulatorStats()
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clients: set[_Client] = set()
        self._subs: dict[str, set[_Client]] = {}  # stream -> clients; its keys are what the source must make
        self._running = asyncio.Event()
        self._running.set()
        self._subscribed = asyncio.Event()
        self._stopped: asyncio.Event | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    async def start(self) -> None:
        if self._server is not None or self._stopped is not None:
            raise RuntimeError("the simulator was already started")
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                compression=None,  # Binance does not compress; on loopback it would only cost CPU
                ping_interval=20,  # Binance pings every 20 s and allows a minute for the pong
                ping_timeout=60,
                close_timeout=2,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
                raise SimulatorPortInUse(self.port) from None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._pump_task = asyncio.create_task(self._pump(), name=f"simulator pump :{self.port}")

    async def stop(self) -> None:
        """Closes every client (1001 going away) and the server, and cancels every task it started."""
        if self._stopped is not None:
            await self._stopped.wait()
            return
        self._stopped = asyncio.Event()
        tasks = [t for t in (self._pump_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._stopped.set()

    async def __aenter__(self) -> ExchangeSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def drop_clients(self) -> None:
        """Cuts every connection without a closing handshake, as a network failure would."""
        for client in list(self._clients):
            client.ws.transport.abort()

    def pause(self) -> None:
        """Stops sending market frames (the connections stay open and answer pings)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # -- market frames ------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        source = self.source
        if source.wait_for_subscriber:
            await self._subscribed.wait()
        batches = source.batches(self._subs)
        try:
            while True:
                await self._running.wait()
                batch = await anext(batches, None)
                if batch is None:
                    return
                await self._running.wait()  # a pause that began while the batch was made holds it too
                self._fan_out(batch)
                if not source.paced:
                    await self._throttle()
        except Exception:
            log.exception("the market source failed; the streams stop (the server stays up)")
        finally:
            await batches.aclose()

    def _fan_out(self, batch: list[Frame]) -> None:
        # Judged once a batch: a client still max_backlog behind had a whole tick to catch up. (Checking per
        # frame would drop a healthy client for one large batch its writer has not had a chance to send.)
        for client in [c for c in self._clients if c.backlog >= self.max_backlog]:
            self._drop_slow(client)
        for stream, payload in batch:
            clients = self._subs.get(stream)
            if not clients:
                continue
            if self._futures is not None:
                payload = self._futures.translate(stream, payload)
            envelope = b'{"stream":"%s","data":%s}' % (stream.encode(), payload)
            for client in clients:
                if client.proto is not None:  # another exchange's dialect (sim_protocols)
                    for message in client.proto.translate(stream, payload):
                        client.push(message)
                    continue
                client.push(envelope if client.combined else payload)

    async def _throttle(self) -> None:
        """A full-speed replay goes as fast as its readers: wait for each congested outbox to drain, but close
        a client that does not within _SLOW_CLIENT_S, so one stuck reader cannot stall the tape."""
        for client in [c for c in self._clients if not c.drained.is_set()]:
            try:
                async with asyncio.timeout(_SLOW_CLIENT_S):
                    await client.drained.wait()
            except TimeoutError:
                self._drop_slow(client)

    def _drop_slow(self, client: _Client) -> None:
        log.warning("closing %s: %d messages behind", client.ws.remote_address, client.backlog)
        self.stats.slow_clients_dropped += 1
        self._forget(client)
        self._track(asyncio.create_task(client.ws.close(1008, "client too slow")))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections --------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake is done
        combined, streams = _ws_target(ws.request.path) or (False, [])
        client = _Client(ws, combined)
        self._clients.add(client)
        self.stats.clients = len(self._clients)
        self._subscribe(client, streams)
        if self.protocol not in BINANCE_LIKE:  # Coinbase / Kraken dialect: its session answers and translates
            client.proto = make_session(
                self.protocol,
                self.source,
                client.push,
                lambda s: self._subscribe(client, s),
                lambda s: self._unsubscribe(client, s),
            )
            client.proto.start()
        writer = asyncio.create_task(client.write_loop(self.stats))
        self._track(writer)
        try:
            async for message in ws:
                if client.proto is not None:
                    # These dialects send a subscription's snapshot before subscribing its stream, and a replay's
                    # snapshot comes from the tape: the tape must be rolling by then, so a request starts it.
                    self._subscribed.set()
                    try:
                        await client.proto.on_message(message)
                    except RestError as exc:  # a replay without a book yet: an error answer, the connection stays
                        client.proto.fail(exc.msg)
                    continue
                reply = self._answer(client, message)
                if reply is not None:
                    client.push(orjson.dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)
            writer.cancel()

    def _forget(self, client: _Client) -> None:
        if client not in self._clients:
            return
        self._clients.discard(client)
        self._unsubscribe(client, list(client.streams))
        client.discard()
        self.stats.clients = len(self._clients)

    def _subscribe(self, client: _Client, streams: list[str]) -> None:
        for stream in streams:
            client.streams[stream] = None
            self._subs.setdefault(stream, set()).add(client)
        if streams:
            self._subscribed.set()

    def _unsubscribe(self, client: _Client, streams: list[str]) -> None:
        for stream in streams:
            client.streams.pop(stream, None)
            clients = self._subs.get(stream)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._subs[stream]

    def _answer(self, client: _Client, message: str | bytes) -> dict[str, Any] | None:
        """The reply to one request, with Binance's error codes; the connection stays open either way.
        None when the reply is already queued (SUBSCRIBE queues it ahead of the new streams' frames)."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return _error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _error(2, "Invalid request: expected a JSON object", None)
        request_id = request.get("id")
        if not _valid_id(request_id):
            return _error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = request.get("method")
        if method is None:
            return _error(2, "Invalid request: missing field `method`", request_id)
        params = request.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return self._change_subscriptions(client, method, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(client.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return _property(client, method, params, request_id)
        expected = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
        return _error(2, f"Invalid request: unknown variant {method}, expected one of {expected}", request_id)

    def _change_subscriptions(
        self, client: _Client, method: str, params: Any, request_id: Any
    ) -> dict[str, Any] | None:
        if not isinstance(params, list) or not all(isinstance(s, str) for s in params):
            return _error(2, "Invalid request: params must be a list of stream names", request_id)
        if method == "UNSUBSCRIBE":
            self._unsubscribe(client, params)
            return {"result": None, "id": request_id}
        unknown = [s for s in params if not self.source.serves(s)]
        if unknown:
            return _error(2, f"Invalid request: unknown stream {unknown[0]!r}", request_id)
        if len(client.streams.keys() | set(params)) > _MAX_STREAMS:
            return _error(2, f"Invalid request: more than {_MAX_STREAMS} streams", request_id)
        # The reply is queued before any frame of the new streams, as Binance sends it.
        client.push(orjson.dumps({"result": None, "id": request_id}))
        self._subscribe(client, params)
        return None

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.protocol not in BINANCE_LIKE and request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # Coinbase ("/") and Kraken ("/v2") connect first and subscribe on the socket
        target = _ws_target(request.path)
        if target is not None:
            streams = target[1]
            unknown = [s for s in streams if not self.source.serves(s)]
            if unknown or len(streams) > _MAX_STREAMS:
                reason = f"unknown stream {unknown[0]!r}" if unknown else f"more than {_MAX_STREAMS} streams"
                return _json_response(400, {"code": -1100, "msg": f"Invalid request: {reason}"})
            return None  # the WebSocket handshake goes on
        url = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            return _json_response(200, await self._rest(url.path, params))
        except RestError as exc:
            return _json_response(exc.status, {"code": exc.code, "msg": exc.msg})

    async def _rest(self, path: str, params: dict[str, str]) -> Any:
        if self._futures is not None and path.startswith("/fapi/v1/"):  # futures' paths, the same answers
            path = "/api/v3/" + path.removeprefix("/fapi/v1/")
        if path == "/api/v3/ping":
            return {}
        if path == "/api/v3/time":
            return {"serverTime": time.time_ns() // 1_000_000}
        if path == "/api/v3/depth":
            symbol = _param(params, "symbol")
            limit = _int_param(params, "limit", 100, 1, 5000)
            assert limit is not None
            snapshot = await self.source.depth_snapshot(symbol, limit)
            return snapshot if self._futures is None else self._futures.snapshot(snapshot)
        if path == "/api/v3/exchangeInfo":
            return _exchange_info(self.source, params)
        if path == "/api/v3/klines":
            symbol, interval = _param(params, "symbol"), _param(params, "interval")
            limit = _int_param(params, "limit", 500, 1, 1000)
            assert limit is not None
            start = _int_param(params, "startTime", None, 0, 2**63 - 1)
            end = _int_param(params, "endTime", None, 0, 2**63 - 1)
            return await self.source.klines(symbol, interval, limit, start, end)
        raise RestError(404, -1, f"no such endpoint: {path}")


def _exchange_info(source: Any, params: dict[str, str]) -> dict[str, Any]:
    """``/api/v3/exchangeInfo?symbols=["A","B"]`` (or ``symbol=A``, or all) for the synthetic markets; a replay
    knows no filters and answers as Binance does for a symbol it does not list."""
    markets = getattr(source, "markets", None)
    if markets is None and isinstance(source, SyntheticMarket):
        markets = {source.symbol: source}
    if not markets:
        raise _invalid_symbol()
    try:
        wanted = orjson.loads(params["symbols"]) if "symbols" in params else [params.get("symbol") or ""]
    except orjson.JSONDecodeError:
        raise RestError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
    if wanted == [""]:
        wanted = list(markets)
    if not isinstance(wanted, list) or any(not isinstance(w, str) or w.upper() not in markets for w in wanted):
        raise _invalid_symbol()
    return {"timezone": "UTC", "serverTime": time.time_ns() // 1_000_000,
            "symbols": [markets[w.upper()].symbol_info() for w in wanted]}


def _property(client: _Client, method: str, params: Any, request_id: Any) -> dict[str, Any]:
    """SET_PROPERTY ["combined", bool] / GET_PROPERTY ["combined"]: the one property Binance has."""
    if not isinstance(params, list) or not params or params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return {"result": client.combined, "id": request_id}
    if len(params) != 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", request_id)
    client.combined = params[1]
    return {"result": None, "id": request_id}


# ---------------------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.market.simulator",
        description="The terminal's built-in exchange: Binance spot market data on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--symbols", metavar="A,B,...",
                        help="several synthetic markets at once (each at --rate), instead of --symbol")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="binance",
                        help="the exchange dialect spoken on the WebSocket (default binance)")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="exit when this process is gone (the terminal that started this exchange)")
    parser.add_argument("--rate", type=float, default=25.0, help="synthetic trades per second")
    parser.add_argument("--price", type=float, default=60_000.0, help="synthetic start price")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--replay", metavar="FILE", help="replay a recording instead of a synthetic market")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed; 0 = as fast as possible")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser.parse_args(argv)


READY_PREFIX = "ready "  # the line a parent reads (ExchangeProcess): "ready <ws_url> <rest_url>"
STATS_PREFIX = "stats "  # the line printed at exit: "stats <json>" (frames_sent, trades_sent per symbol)


async def _serve_until_stopped(source: MarketSource, host: str, port: int, protocol: str = "binance",
                               parent_pid: int | None = None) -> None:
    async with ExchangeSimulator(source, host, port, protocol=protocol) as sim:
        print(f"{READY_PREFIX}{sim.ws_url} {sim.rest_url}", flush=True)
        print(f"exchange simulator ({source.label}) on {sim.ws_url}  REST {sim.rest_url}  (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        watch = asyncio.create_task(_exit_with_parent(parent_pid, stop)) if parent_pid else None
        await stop.wait()
        if watch is not None:
            watch.cancel()
    # After the server closed: what was written to clients, for a parent that compares it with what arrived.
    stats = {"frames_sent": sim.stats.frames_sent, "trades_sent": sim.stats.trades_sent}
    with contextlib.suppress(OSError):  # a parent that no longer reads (the terminal has gone)
        print(f"{STATS_PREFIX}{orjson.dumps(stats).decode()}", flush=True)


async def _exit_with_parent(pid: int, stop: asyncio.Event) -> None:
    """A terminal killed outright (SIGKILL, a crash) cannot stop its exchange: the exchange notices instead."""
    import psutil

    while True:
        await asyncio.sleep(0.5)
        # Re-parented (POSIX) or gone (everywhere): either way the terminal is no more.
        if os.getppid() != pid or not psutil.pid_exists(pid):
            stop.set()
            return


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        source: MarketSource
        if args.replay:
            source = ReplaySource(args.replay, args.speed)
        elif args.symbols:
            from app.market.sim_markets import MultiMarket  # it builds on this module

            source = MultiMarket.for_symbols([x for x in args.symbols.split(",") if x], args.rate)
        else:
            source = SyntheticMarket(args.symbol, args.price, args.rate, args.seed)
    except (RecordingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_stopped(source, args.host, args.port, args.protocol, args.parent_pid))
    except SimulatorPortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
