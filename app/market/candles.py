"""Trades -> OHLCV bars per timeframe, kept in bounded numpy ring buffers.

A ``CandleSeries`` holds at most ``capacity`` bars in arrays of ``2 * capacity`` rows. New bars are written
after the live rows; when the arrays are full the newest rows are copied back to the front. The live bars are
therefore always one contiguous slice, ``arrays()`` hands out views without copying, and each append costs
amortised O(1).

Bars are contiguous in time: an interval without trades becomes a flat bar at the previous close, as exchanges
report it. So bar ``k`` of the buffer opens at ``first_open + k * tf_ms`` and a late trade finds its bar by
arithmetic. Within a bar the open is the earliest-timestamped trade and the close the latest (equal
timestamps: arrival order), so a feed that reorders trades slightly still yields the exchange's bars.

The file pipeline (``aggregate_file``, ``candles_main``) turns a recording into a CSV of bars through the same
adapter the live feed uses.
"""

from __future__ import annotations

import argparse
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

from app.market.adapters import ParseError, binance
from app.market.recording import RecordingError, iter_frames
from app.models import Trade

TIMEFRAMES: dict[str, int] = {"1s": 1000, "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}

_NO_BAR = -(2**62)  # open time of the forming bar while the series is empty: every trade is newer
_NEVER = 2**62  # last-trade time that keeps add_trade off its fast path (the forming bar has no trade yet)
_VECTOR_MIN = 100  # below this many trades numpy's per-call cost exceeds add_trade's (measured: ~100)


class CandleArrays(NamedTuple):
    """Read-only views of the live bars, oldest first. Valid until the series changes (see ``version``)."""

    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray


class Bar(NamedTuple):
    """One bar as Python numbers (``CandleSeries.last``)."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


class _Bars(NamedTuple):
    """Whole bars to append, strictly increasing in ``open_ms``: history, a batch, or kept live bars."""

    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray

    def tail(self, start: int) -> _Bars:
        return _Bars(*(col[start:] for col in self))


class CandleSeries:
    """OHLCV bars of one timeframe for one symbol, at most ``capacity`` of them (the newest).

    ``version`` changes with every change; ``late_dropped`` counts trades for bars no longer held.
    """

    def __init__(self, timeframe: str, capacity: int = 100_000) -> None:
        _check_timeframe(timeframe)
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.timeframe = timeframe
        self.tf_ms = TIMEFRAMES[timeframe]
        self.capacity = capacity
        self.version = 0  # bumped on every change, so a chart redraws only when something moved
        self.late_dropped = 0  # trades older than the oldest bar still held
        rows = 2 * capacity
        self._open_ms = np.zeros(rows, np.int64)
        self._open = np.zeros(rows, np.float64)
        self._high = np.zeros(rows, np.float64)
        self._low = np.zeros(rows, np.float64)
        self._close = np.zeros(rows, np.float64)
        self._volume = np.zeros(rows, np.float64)
        self._trades = np.zeros(rows, np.int64)
        self._first_ts = np.zeros(rows, np.int64)  # earliest trade time in the bar: decides the open
        self._last_ts = np.zeros(rows, np.int64)  # latest trade time in the bar: decides the close
        self._start = 0  # live rows are [_start, _end)
        self._end = 0
        # Python copies of the forming bar, so the in-order path neither reads numpy scalars nor allocates.
        self._cur_open = _NO_BAR
        self._cur_high = 0.0
        self._cur_low = 0.0
        self._cur_volume = 0.0
        self._cur_trades = 0
        self._cur_last_ts = _NEVER

    # ----------------------------------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return self._end - self._start

    def arrays(self) -> CandleArrays:
        s, e = self._start, self._end
        return CandleArrays(*(_read_only(a[s:e]) for a in self._public_columns()))

    def last(self) -> Bar | None:
        """The newest (forming) bar, or None when there is none."""
        if self._end == self._start:
            return None
        i = self._end - 1
        return Bar(
            int(self._open_ms[i]),
            float(self._open[i]),
            float(self._high[i]),
            float(self._low[i]),
            float(self._close[i]),
            float(self._volume[i]),
            int(self._trades[i]),
        )

    # ---------------------------------------------------------------------------------------------- trades

    def add_trade(self, ts_ms: int, price: float, qty: float) -> None:
        """One trade at exchange time ``ts_ms``. Python numbers keep this fast; numpy scalars work, slower."""
        bar = ts_ms - ts_ms % self.tf_ms
        if bar == self._cur_open and ts_ms >= self._cur_last_ts:
            # The common case: the next trade of the forming bar, a handful of scalar writes.
            i = self._end - 1
            if price > self._cur_high:
                self._cur_high = price
                self._high[i] = price
            if price < self._cur_low:
                self._cur_low = price
                self._low[i] = price
            self._cur_volume += qty
            self._volume[i] = self._cur_volume
            self._cur_trades += 1
            self._trades[i] = self._cur_trades
            self._close[i] = price
            self._cur_last_ts = ts_ms
            self._last_ts[i] = ts_ms
        elif bar > self._cur_open:
            self._open_bar(bar, ts_ms, price, qty)
        elif not self._add_late(bar, ts_ms, price, qty):
            return
        self.version += 1

    def add_trades(self, ts_ms: np.ndarray, price: np.ndarray, qty: np.ndarray) -> None:
        """Same result as ``add_trade`` in a loop; vectorised when the batch is in time order."""
        ts = np.asarray(ts_ms, dtype=np.int64)
        px = np.asarray(price, dtype=np.float64)
        q = np.asarray(qty, dtype=np.float64)
        if ts.ndim != 1 or ts.shape != px.shape or ts.shape != q.shape:
            raise ValueError("ts_ms, price and qty must be 1-D arrays of the same length")
        if ts.size == 0:
            return
        if ts.size < _VECTOR_MIN or ts[0] < self._in_order_from() or bool(np.any(ts[1:] < ts[:-1])):
            # Small, or out of order (a trade may belong to an older bar, which add_trade sorts out).
            for t, p, v in zip(ts.tolist(), px.tolist(), q.tolist(), strict=True):
                self.add_trade(t, p, v)
            return
        bars = _group_trades(ts, px, q, self.tf_ms)
        if self._end > self._start and bars.open_ms[0] == self._cur_open:
            self._merge_forming(bars)
            bars = bars.tail(1)
        if bars.open_ms.size:
            self._append_bars(bars)
        else:
            self._sync_forming()
        self.version += 1

    # --------------------------------------------------------------------------------------------- history

    def load_history(
        self,
        open_ms: np.ndarray,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        trades: np.ndarray,
    ) -> None:
        """Seed bars from the exchange (REST klines), oldest first, before or while the live feed runs.

        History is the truth for the bars it covers: live bars up to its last bar are replaced (the REST
        answer already counts those trades), newer live bars are kept. Live trades that fall into the last
        history bar then merge into it rather than open a duplicate.
        """
        hist = _history_bars(self.tf_ms, open_ms, open, high, low, close, volume, trades)
        if hist.open_ms.size == 0:
            return
        kept = self._live_bars_after(int(hist.open_ms[-1]))
        self._clear()
        self._append_bars(hist)
        if kept.open_ms.size:
            self._append_bars(kept)
        self.version += 1

    # ------------------------------------------------------------------------------------------- internals

    def _public_columns(self) -> tuple[np.ndarray, ...]:
        return self._open_ms, self._open, self._high, self._low, self._close, self._volume, self._trades

    def _all_columns(self) -> tuple[np.ndarray, ...]:
        return (*self._public_columns(), self._first_ts, self._last_ts)

    def _in_order_from(self) -> int:
        """The earliest trade time that cannot touch an existing bar except by extending the forming one."""
        if self._end == self._start:
            return _NO_BAR
        i = self._end - 1
        return int(self._last_ts[i]) if self._trades[i] else int(self._open_ms[i])

    def _open_bar(self, bar: int, ts: int, price: float, qty: float) -> None:
        if self._end > self._start:
            empty = (bar - self._cur_open) // self.tf_ms - 1
            if empty >= self.capacity:
                self._clear()  # flat bars alone would fill the buffer: nothing of the old data would remain
            elif empty:
                self._fill_flat(empty)
        self._reserve(1)
        i = self._end
        self._open_ms[i] = bar
        self._open[i] = self._high[i] = self._low[i] = self._close[i] = price
        self._volume[i] = qty
        self._trades[i] = 1
        self._first_ts[i] = self._last_ts[i] = ts
        self._end += 1
        self._trim()
        self._cur_open = bar
        self._cur_high = self._cur_low = price
        self._cur_volume = qty
        self._cur_trades = 1
        self._cur_last_ts = ts

    def _fill_flat(self, count: int) -> None:
        """Append ``count`` bars without trades after the newest, at its close (count < capacity)."""
        prev_close = float(self._close[self._end - 1])
        prev_open = int(self._open_ms[self._end - 1])
        self._reserve(count)
        rows = slice(self._end, self._end + count)
        self._open_ms[rows] = prev_open + self.tf_ms * np.arange(1, count + 1, dtype=np.int64)
        self._write_flat(rows, prev_close)
        self._end += count
        self._trim()

    def _write_flat(self, rows: slice, price: float | np.ndarray) -> None:
        self._open[rows] = self._high[rows] = self._low[rows] = self._close[rows] = price
        self._volume[rows] = 0.0
        self._trades[rows] = 0
        self._first_ts[rows] = self._last_ts[rows] = self._open_ms[rows]

    def _add_late(self, bar: int, ts: int, price: float, qty: float) -> bool:
        """A trade for the forming bar earlier than its last trade, or for an older bar. False if dropped."""
        first_open = int(self._open_ms[self._start])
        if bar < first_open:
            self.late_dropped += 1
            return False
        i = self._start + (bar - first_open) // self.tf_ms
        self._update_bar(i, ts, price, qty)
        self._sync_forming()
        return True

    def _update_bar(self, i: int, ts: int, price: float, qty: float) -> None:
        if self._trades[i] == 0:  # a flat bar gets its first trade
            self._open[i] = self._high[i] = self._low[i] = self._close[i] = price
            self._volume[i] = qty
            self._trades[i] = 1
            self._first_ts[i] = self._last_ts[i] = ts
            self._propagate_close(i)
            return
        self._high[i] = max(self._high[i], price)
        self._low[i] = min(self._low[i], price)
        self._volume[i] += qty
        self._trades[i] += 1
        if ts < self._first_ts[i]:
            self._open[i] = price
            self._first_ts[i] = ts
        if ts >= self._last_ts[i]:
            self._close[i] = price
            self._last_ts[i] = ts
            self._propagate_close(i)

    def _propagate_close(self, i: int) -> None:
        """Flat bars right after bar ``i`` stand at its close, which a late trade has just changed."""
        j = i + 1
        if j >= self._end or self._trades[j]:
            return
        traded = np.flatnonzero(self._trades[j : self._end])
        stop = j + int(traded[0]) if traded.size else self._end
        self._write_flat(slice(j, stop), float(self._close[i]))

    def _merge_forming(self, bars: _Bars) -> None:
        """Fold the batch's first bar (same open time, later trades) into the forming bar."""
        i = self._end - 1
        if self._trades[i] == 0:
            for dst, src in zip(self._all_columns(), bars, strict=True):
                dst[i] = src[0]
            return
        self._high[i] = max(self._high[i], bars.high[0])
        self._low[i] = min(self._low[i], bars.low[0])
        self._volume[i] += bars.volume[0]
        self._trades[i] += bars.trades[0]
        self._close[i] = bars.close[0]
        self._last_ts[i] = bars.last_ts[0]

    def _append_bars(self, bars: _Bars) -> None:
        """Append whole bars newer than the newest held, filling missing intervals with flat bars.

        Gives what appending them one by one would: a run of empty intervals of at least ``capacity`` starts
        afresh, and of what is left only the newest ``capacity`` intervals are written at all.
        """
        tf = self.tf_ms
        bars = self._after_last_long_gap(bars)
        newest = int(bars.open_ms[-1])
        first_slot = int(bars.open_ms[0]) if self._end == self._start else self._cur_open + tf
        first_slot = max(first_slot, newest - (self.capacity - 1) * tf)
        k = int(np.searchsorted(bars.open_ms, first_slot))  # bars before k would be evicted at once
        if k:
            prev_close = float(bars.close[k - 1])
        elif self._end > self._start:
            prev_close = float(self._close[self._end - 1])
        else:
            prev_close = np.nan  # never used: the first slot holds the first bar
        bars = bars.tail(k)
        slots = (newest - first_slot) // tf + 1
        pos = (bars.open_ms - first_slot) // tf
        self._reserve(slots)
        e = self._end
        self._open_ms[e : e + slots] = first_slot + tf * np.arange(slots, dtype=np.int64)
        self._write_flat(slice(e, e + slots), _flat_prices(slots, pos, bars.close, prev_close))
        for dst, src in zip(self._all_columns(), bars, strict=True):
            dst[e + pos] = src
        self._end += slots
        self._trim()
        self._sync_forming()  # a second append in a row measures its gap from this one's last bar

    def _after_last_long_gap(self, bars: _Bars) -> _Bars:
        prev = np.empty_like(bars.open_ms)
        prev[1:] = bars.open_ms[:-1]
        prev[0] = self._cur_open if self._end > self._start else bars.open_ms[0] - self.tf_ms
        long_gaps = np.flatnonzero((bars.open_ms - prev) // self.tf_ms - 1 >= self.capacity)
        if long_gaps.size == 0:
            return bars
        self._clear()
        return bars.tail(int(long_gaps[-1]))

    def _live_bars_after(self, open_ms: int) -> _Bars:
        """Copies of the held bars with trades that open after ``open_ms`` (flat ones are re-derived)."""
        s, e = self._start, self._end
        keep = (self._open_ms[s:e] > open_ms) & (self._trades[s:e] > 0)
        return _Bars(*(col[s:e][keep] for col in self._all_columns()))

    def _reserve(self, count: int) -> None:
        """Make room for ``count`` (<= capacity) rows at ``_end``, compacting the newest rows to the front."""
        if self._end + count <= self._open_ms.size:
            return
        keep = min(self._end - self._start, self.capacity - count)
        src = slice(self._end - keep, self._end)
        for col in self._all_columns():
            col[:keep] = col[src]
        self._start, self._end = 0, keep

    def _trim(self) -> None:
        if self._end - self._start > self.capacity:
            self._start = self._end - self.capacity

    def _clear(self) -> None:
        self._start = self._end = 0
        self._sync_forming()

    def _sync_forming(self) -> None:
        """Reload the Python copy of the forming bar after a change made through the arrays."""
        if self._end == self._start:
            self._cur_open, self._cur_last_ts = _NO_BAR, _NEVER
            return
        i = self._end - 1
        self._cur_open = int(self._open_ms[i])
        self._cur_high = float(self._high[i])
        self._cur_low = float(self._low[i])
        self._cur_volume = float(self._volume[i])
        self._cur_trades = int(self._trades[i])
        self._cur_last_ts = int(self._last_ts[i]) if self._cur_trades else _NEVER


def _check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")


def _read_only(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False
    return view


def _group_trades(ts: np.ndarray, px: np.ndarray, q: np.ndarray, tf_ms: int) -> _Bars:
    """One bar per run of equal bar open time in time-ordered trades."""
    bar = ts - ts % tf_ms
    starts = np.flatnonzero(np.concatenate(([True], bar[1:] != bar[:-1])))
    ends = np.append(starts[1:], ts.size)
    return _Bars(
        open_ms=bar[starts],
        open=px[starts],
        high=np.maximum.reduceat(px, starts),
        low=np.minimum.reduceat(px, starts),
        close=px[ends - 1],
        volume=np.add.reduceat(q, starts),
        trades=(ends - starts).astype(np.int64),
        first_ts=ts[starts],
        last_ts=ts[ends - 1],
    )


def _flat_prices(slots: int, pos: np.ndarray, close: np.ndarray, prev_close: float) -> np.ndarray:
    """Each slot's price if it were flat: the close of the latest bar at or before it (forward fill)."""
    latest = np.full(slots, -1, dtype=np.int64)
    latest[pos] = np.arange(pos.size)
    np.maximum.accumulate(latest, out=latest)
    return np.where(latest >= 0, close[np.maximum(latest, 0)], prev_close)


def _history_bars(tf_ms: int, *cols: np.ndarray) -> _Bars:
    open_ms = np.asarray(cols[0], dtype=np.int64)
    values = [np.asarray(c, dtype=np.float64) for c in cols[1:6]]
    trades = np.asarray(cols[6], dtype=np.int64)
    if open_ms.ndim != 1 or any(c.shape != open_ms.shape for c in (*values, trades)):
        raise ValueError("history columns must be 1-D arrays of the same length")
    if np.any(open_ms % tf_ms) or np.any(open_ms[1:] <= open_ms[:-1]):
        raise ValueError(f"history open times must be increasing multiples of {tf_ms} ms")
    # Trade times inside a history bar are unknown: put them at its open, so live trades never replace the
    # history open and always become the close.
    return _Bars(open_ms, *values, trades, open_ms.copy(), open_ms.copy())


class CandleAggregator:
    """One ``CandleSeries`` per timeframe for one symbol, fed from the trade stream."""

    def __init__(
        self, symbol: str, timeframes: Iterable[str] = tuple(TIMEFRAMES), capacity: int = 100_000
    ) -> None:
        self.symbol = symbol
        self._series = {tf: CandleSeries(tf, capacity) for tf in timeframes}
        self._all = tuple(self._series.values())
        self.trades_seen = 0
        self.other_symbol = 0  # trades of other symbols that reached this aggregator and were ignored

    @property
    def timeframes(self) -> tuple[str, ...]:
        return tuple(self._series)

    def series(self, timeframe: str) -> CandleSeries:
        try:
            return self._series[timeframe]
        except KeyError:
            have = ", ".join(self._series)
            raise KeyError(f"no {timeframe!r} series for {self.symbol}; have {have}") from None

    def on_trade(self, trade: Trade) -> None:
        if trade.symbol != self.symbol:
            self.other_symbol += 1
            return
        self.trades_seen += 1
        for s in self._all:
            s.add_trade(trade.exchange_ms, trade.price, trade.qty)

    def on_trades(self, trades: Sequence[Trade]) -> None:
        mine = [t for t in trades if t.symbol == self.symbol]
        self.other_symbol += len(trades) - len(mine)
        if len(mine) < _VECTOR_MIN:
            self.trades_seen += len(mine)
            for t in mine:
                for s in self._all:
                    s.add_trade(t.exchange_ms, t.price, t.qty)
            return
        ts = np.fromiter((t.exchange_ms for t in mine), np.int64, len(mine))
        px = np.fromiter((t.price for t in mine), np.float64, len(mine))
        q = np.fromiter((t.qty for t in mine), np.float64, len(mine))
        self.trades_seen += len(mine)
        for s in self._all:
            s.add_trades(ts, px, q)


# ------------------------------------------------------------------------------------------ file pipeline

MAX_FILE_BARS = 5_000_000  # bounds memory when a recording (or a bad timestamp in it) spans a vast time


@dataclass(slots=True)
class RecordingTrades:
    """The trades of one symbol in a recording, in file order, and what was skipped on the way."""

    symbol: str | None
    ts_ms: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    frames: int = 0
    other_symbol: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # ParseError reason -> frames


def read_trades(path: str | Path, symbol: str | None = None) -> RecordingTrades:
    """Parse every frame of a Binance recording with the live adapter; keep trades of ``symbol``.

    Without ``symbol`` the first trade's symbol is taken. Frames the adapter rejects are counted, not fatal.
    Raises RecordingError when the file cannot be read.
    """
    want = symbol.upper() if symbol else None
    ts, px, qty = array("q"), array("d"), array("d")  # compact columns while the count is unknown
    frames = other = 0
    rejected: Counter[str] = Counter()
    for recv_ns, raw in iter_frames(path):
        frames += 1
        try:
            events = binance.parse(raw, recv_ns or 0)
        except ParseError as exc:
            rejected[exc.reason] += 1
            continue
        for ev in events:
            if not isinstance(ev, Trade):
                continue
            if want is None:
                want = ev.symbol.upper()
            if ev.symbol.upper() != want:
                other += 1
                continue
            ts.append(ev.exchange_ms)
            px.append(ev.price)
            qty.append(ev.qty)
    columns = (np.frombuffer(ts, np.int64), np.frombuffer(px, np.float64), np.frombuffer(qty, np.float64))
    return RecordingTrades(want, *columns, frames=frames, other_symbol=other, rejected=rejected)


def span_bars(ts_ms: np.ndarray, tf_ms: int) -> int:
    """How many bars of ``tf_ms`` the trades cover, first to last inclusive (0 without trades)."""
    if ts_ms.size == 0:
        return 0
    return int(ts_ms.max() // tf_ms - ts_ms.min() // tf_ms) + 1


def series_from_trades(trades: RecordingTrades, timeframe: str) -> CandleSeries:
    """Bars of every trade read from a file. Sized to the file's span, so no bar is evicted (up to
    MAX_FILE_BARS), and sorted first: a file is complete, so a reordered trade is never 'too late'."""
    _check_timeframe(timeframe)
    ts, px, q = trades.ts_ms, trades.price, trades.qty
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")  # stable: equal timestamps keep file order, as live
        ts, px, q = ts[order], px[order], q[order]
    capacity = min(max(span_bars(ts, TIMEFRAMES[timeframe]), 1), MAX_FILE_BARS)
    series = CandleSeries(timeframe, capacity)
    series.add_trades(ts, px, q)
    return series


def aggregate_file(path: str | Path, timeframe: str, symbol: str | None = None) -> CandleSeries:
    """Bars of ``timeframe`` from the trades of ``symbol`` (default: the first seen) in a recording."""
    _check_timeframe(timeframe)  # before reading the whole file
    return series_from_trades(read_trades(path, symbol), timeframe)


CSV_HEADER = "open_time_ms,open,high,low,close,volume,trades"


def write_csv(series: CandleSeries, out_path: str | Path | TextIO) -> int:
    """Write one row per bar; floats as repr, the shortest text that reads back as the same float."""
    a = series.arrays()
    cols = [c.tolist() for c in a]
    rows = (f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r},{n}\n" for t, o, h, lo, c, v, n in zip(*cols, strict=True))
    if isinstance(out_path, str | Path):
        with open(out_path, "w", encoding="ascii", newline="") as fh:
            _write_rows(fh, rows)
    else:
        _write_rows(out_path, rows)
    return len(a.open_ms)


def _write_rows(fh: TextIO, rows: Iterable[str]) -> None:
    fh.write(CSV_HEADER + "\n")
    fh.writelines(rows)


def candles_main(argv: list[str]) -> int:
    """``trading-terminal candles``: a recording's trades as a CSV of OHLCV bars."""
    args = _candles_parser().parse_args(argv)
    prog = "trading-terminal candles"
    try:
        trades = read_trades(args.input, args.symbol)
    except RecordingError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if trades.ts_ms.size == 0:
        which = f"of {args.symbol.upper()} " if args.symbol else ""
        print(f"{prog}: error: no trades {which}in {args.input} ({trades.frames} frames)", file=sys.stderr)
        return 1
    series = series_from_trades(trades, args.timeframe)
    try:
        bars = write_csv(series, sys.stdout if args.output == "-" else args.output)
    except OSError as exc:
        print(f"{prog}: error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{prog}: {_summary(trades, series, bars)}", file=sys.stderr)
    return 0


def _candles_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trading-terminal candles",
        description="Aggregate the trades of a recorded Binance feed into OHLCV bars (CSV).",
    )
    p.add_argument("--input", "-i", required=True, help="recording (gzip or plain), e.g. from --record")
    p.add_argument("--timeframe", "-t", default="1m", choices=list(TIMEFRAMES), help="bar length (1m)")
    p.add_argument("--output", "-o", default="-", help="CSV file to write; '-' for standard output (default)")
    p.add_argument("--symbol", "-s", help="symbol to aggregate (default: the first one traded)")
    return p


def _summary(trades: RecordingTrades, series: CandleSeries, bars: int) -> str:
    rejected = ", ".join(f"{reason} {n}" for reason, n in trades.rejected.most_common()) or "none"
    text = (
        f"{trades.ts_ms.size} trades of {trades.symbol} -> {bars} bars of {series.timeframe} "
        f"({trades.frames} frames; rejected: {rejected}; other symbols: {trades.other_symbol})"
    )
    span = span_bars(trades.ts_ms, series.tf_ms)
    if span > bars:
        text += f"; the recording spans {span} bars, only the newest {bars} were written"
    return text
