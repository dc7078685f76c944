"""What every market source of the built-in exchange shares: the ``MarketSource`` protocol, frames, Binance's
numbers and errors, and the bars every kline is aggregated from."""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import AsyncIterator, Container
from typing import Any, Protocol

import numpy as np
import orjson

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

STREAM_RE = re.compile(r"([a-z0-9]+)@([A-Za-z0-9_@]+)")


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


def invalid_symbol() -> RestError:
    return RestError(400, -1121, "Invalid symbol.")


def interval_ms_of(interval: str) -> int:
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


def units(n: int, decimals: int) -> str:
    """A count of 10**-decimals units with 8 decimals, exactly ("61837.63000000"), no float rounding."""
    whole, frac = divmod(n, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}{'0' * (8 - decimals)}"


def dec8(x: float) -> str:
    return f"{x:.8f}"


def kline_window(
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


class Bars:
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

    def replace_last(self, values: dict[str, Any]) -> None:
        """Sets these columns of the last row (the one in progress), e.g. to the row it was meant to add up to."""
        i = self._len - 1
        for k, v in values.items():
            self._cols[k][i] = v

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


def aggregate_bars(parts: list[dict[str, np.ndarray]], interval_ms: int) -> dict[str, np.ndarray]:
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


def kline_rows(bars: dict[str, np.ndarray], interval_ms: int) -> list[list[Any]]:
    """Binance REST kline rows: [open_time, o, h, l, c, v, close_time, quote_v, n, taker_v, taker_q, "0"]."""
    cols = [bars[k].tolist() for k in ("t", "o", "h", "l", "c", "v", "q", "n", "V", "Q")]
    return [
        [
            t,
            dec8(o),
            dec8(hi),
            dec8(lo),
            dec8(c),
            dec8(v),
            t + interval_ms - 1,
            dec8(q),
            n,
            dec8(bv),
            dec8(bq),
            "0",
        ]
        for t, o, hi, lo, c, v, q, n, bv, bq in zip(*cols, strict=True)
    ]


def kline_payload(
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
        "o": dec8(bar["o"][0]),
        "c": dec8(bar["c"][0]),
        "h": dec8(bar["h"][0]),
        "l": dec8(bar["l"][0]),
        "v": dec8(bar["v"][0]),
        "n": int(bar["n"][0]),
        "x": closed,
        "q": dec8(bar["q"][0]),
        "V": dec8(bar["V"][0]),
        "Q": dec8(bar["Q"][0]),
        "B": "0",
    }
    return orjson.dumps({"e": "kline", "E": event_ms, "s": symbol, "k": k})


