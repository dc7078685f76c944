"""Candle files (OHLCV bars someone else exported) into market states, as the terminal would have seen them.

Reading. ``load_candles`` takes the common layouts: a JSON array of ``[open_ms, open, high, low, close, volume,
...]`` rows, or a CSV whose header is the first line naming both ``open`` and ``close`` (exports often put a banner
line above it), with a time column (``open_time``, ``timestamp``, ``unix``, ``time``, ``datetime`` or ``date``:
epoch seconds, milliseconds or microseconds, or a date such as ``2020-01-01 00:00:00``, ``2019-10-17 09-AM`` or ISO
8601; times without a zone are UTC), open/high/low/close and a volume column (the first one whose name starts with
``volume``: the base volume in the usual exports), in either time order.

The file is untrusted, and two kinds of bad row are told apart:
- a row that cannot be read (wrong number of fields, a number or time that does not parse) means the file is not
  what it claims to be: ``CandleFileError`` naming the file and line, nothing guessed;
- a row that reads but is no bar (a price not finite or not positive, high below low, open or close outside
  [low, high], a negative or non-finite volume, an open time not on the bar grid) or repeats an open time already
  read is skipped and counted by reason, with the first lines of each kind, in ``CandleFile.skipped``: exports of
  real markets do carry the odd broken bar, and one should not make ten days unusable, but none goes unseen.

Resampling. ``states_at_cadence`` replays the bars the way the decision service sees the market: at every ask
instant it builds the closed bars of the decision timeframe plus the forming bar made from the finer bars in
between, and asks ``compute_state`` for the state at that instant.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.market.candles import TIMEFRAMES, CandleSeries
from app.market.features import MarketState, compute_state, tail_length

TIME_COLUMNS = ("open_time", "timestamp", "unix", "time", "datetime", "date")  # preferred first
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %I-%p", "%Y-%m-%d %H-%M", "%Y-%m-%d %I:%M %p",
                 "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%Y-%m-%d")
_EXAMPLES = 3  # line numbers kept per skip reason


class CandleFileError(ValueError):
    """The file cannot be read as candles; the message names the file and the line."""


@dataclass(slots=True)
class CandleFile:
    """The bars of a file, oldest first, one per open time, and what was skipped on the way."""

    name: str
    rows: np.ndarray  # float64 (n, 6): open_ms, open, high, low, close, volume
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> first line numbers (JSON: row numbers)

    def skip_report(self) -> str:
        """One line per skip reason, for the bench's output; empty when nothing was skipped."""
        return "; ".join(f"{n} {reason} (line {', '.join(map(str, self.examples[reason]))}"
                         f"{', ...' if n > len(self.examples[reason]) else ''})"
                         for reason, n in self.skipped.most_common())


# ----- reading -----------------------------------------------------------------------------------------------


def parse_time_ms(text: str) -> int:
    """Epoch s / ms / µs (told apart by size) or a date (UTC unless it says otherwise) -> epoch ms."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"time {text!r} is not a time")
        if value > 1e14:  # microseconds (1e14 µs is 1973; 1e14 ms would be the year 5138)
            return int(value // 1000)
        return int(value) if value > 1e11 else round(value * 1000)
    for fmt in _DATE_FORMATS:
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"unreadable time {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _csv_rows(path: Path) -> list[tuple[int, list[object]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines()
    start = next((i for i, line in enumerate(lines) if "open" in line.lower() and "close" in line.lower()), None)
    if start is None:
        raise CandleFileError(f"{path.name}: no header line naming open and close columns")
    header = [h.strip().lower() for h in next(csv.reader([lines[start]]))]
    when = next((header.index(c) for c in TIME_COLUMNS if c in header), None)
    volume = next((i for i, h in enumerate(header) if h.startswith("volume")), None)
    missing = [c for c in ("open", "high", "low", "close") if c not in header]
    if when is None or volume is None or missing:
        raise CandleFileError(
            f"{path.name} line {start + 1}: the header needs a time column ({', '.join(TIME_COLUMNS)}), open, high, "
            f"low, close and a volume column; it has {', '.join(header)}")
    cols = [when, *(header.index(c) for c in ("open", "high", "low", "close")), volume]
    out: list[tuple[int, list[object]]] = []
    for number, fields in enumerate(csv.reader(lines[start + 1 :]), start=start + 2):
        if not fields or all(not f.strip() for f in fields):
            continue  # blank lines (a trailing newline, a spreadsheet's empty rows) are no rows
        if len(fields) != len(header):
            raise CandleFileError(f"{path.name} line {number}: {len(fields)} fields, the header has {len(header)}")
        out.append((number, [fields[c] for c in cols]))
    return out


def _json_rows(path: Path) -> list[tuple[int, list[object]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CandleFileError(f"{path.name}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise CandleFileError(f"{path.name}: expected a JSON array of [open_ms, open, high, low, close, volume] rows")
    out: list[tuple[int, list[object]]] = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, list) or len(row) < 6:
            raise CandleFileError(f"{path.name} row {number}: expected [open_ms, open, high, low, close, volume, ...]")
        out.append((number, row[:6]))
    return out


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _bar_problem(o: float, h: float, lo: float, c: float, v: float) -> str | None:
    if not all(math.isfinite(x) and x > 0.0 for x in (o, h, lo, c)):
        return "price not finite or not positive"
    if h < lo:
        return "high below low"
    if not (lo <= o <= h and lo <= c <= h):
        return "open or close outside [low, high]"
    if not (math.isfinite(v) and v >= 0.0):
        return "volume negative or not finite"
    return None


def load_candles(path: str | Path) -> CandleFile:
    """The bars of a JSON or CSV candle file (module docstring: layouts, and which bad rows raise or are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CandleFileError(f"{path.name}: no such file")
    raw = _json_rows(path) if path.suffix.lower() == ".json" else _csv_rows(path)
    where = "row" if path.suffix.lower() == ".json" else "line"
    skipped: Counter[str] = Counter()
    examples: dict[str, list[int]] = {}

    def skip(reason: str, number: int) -> None:
        skipped[reason] += 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < _EXAMPLES:
            examples[reason].append(number)

    values: list[tuple[float, ...]] = []
    numbers: list[int] = []
    for number, fields in raw:
        try:
            t = fields[0]
            open_ms = parse_time_ms(t if isinstance(t, str) else repr(_number(t)))
            o, h, lo, c, v = (_number(x) for x in fields[1:6])
        except (ValueError, OverflowError) as exc:
            raise CandleFileError(f"{path.name} {where} {number}: {exc}") from None
        problem = _bar_problem(o, h, lo, c, v)
        if problem is not None:
            skip(problem, number)
            continue
        values.append((float(open_ms), o, h, lo, c, v))
        numbers.append(number)
    if not values:
        raise CandleFileError(f"{path.name}: no usable bars" + (f" ({dict(skipped)})" if skipped else ""))
    rows = np.array(values, dtype=np.float64)
    order = np.argsort(rows[:, 0], kind="stable")
    rows, lines = rows[order], np.asarray(numbers)[order]
    dup = np.concatenate(([False], rows[1:, 0] == rows[:-1, 0]))
    for number in lines[dup]:
        skip("repeated open time (the first in the file kept)", int(number))
    rows = rows[~dup]
    if len(rows) >= 2:
        step = _bar_ms(rows)
        off_grid = rows[:, 0].astype(np.int64) % step != 0
        for number in lines[~dup][off_grid]:
            skip(f"open time not a multiple of the {step // 1000} s bar", int(number))
        rows = rows[~off_grid]
    return CandleFile(path.name, rows, skipped, examples)


def _bar_ms(rows: np.ndarray) -> int:
    """The most common gap between consecutive open times (files skip bars without trades)."""
    gaps, counts = np.unique(np.diff(rows[:, 0]).astype(np.int64), return_counts=True)
    return int(gaps[np.argmax(counts)])


def candle_timeframe(rows: np.ndarray) -> str:
    """The timeframe whose length is the most common gap between bars."""
    if len(rows) < 2:
        raise ValueError("fewer than 2 bars: the bar length is unknown")
    step = _bar_ms(rows)
    for name, ms in TIMEFRAMES.items():
        if ms == step:
            return name
    raise ValueError(f"bars are {step} ms apart, which is none of the timeframes {', '.join(TIMEFRAMES)}")


# ----- resampling --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resampled:
    """Closed bars of the decision timeframe, and for every file bar the bar-so-far of the one it falls in."""

    open_ms: np.ndarray  # (k,) int64: decision bars holding at least one file bar
    ohlcv: np.ndarray  # (k, 5)
    fine_open_ms: np.ndarray  # (n,) int64: the file's bars
    so_far: np.ndarray  # (n, 5): the decision bar's OHLCV from its open up to and including this file bar


def _resample(rows: np.ndarray, tf_ms: int) -> _Resampled:
    fine = rows[:, 0].astype(np.int64)
    group = fine // tf_ms * tf_ms
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    sizes = np.diff(np.append(starts, len(rows)))
    seg = np.repeat(np.arange(len(starts)), sizes)  # the decision bar of each file bar
    # Running high / low / volume within each decision bar: a (bars x slots) grid, accumulated along the slots.
    pos = np.arange(len(rows)) - starts[seg]
    width = int(sizes.max())
    high = np.full((len(starts), width), -np.inf)
    low = np.full((len(starts), width), np.inf)
    vol = np.zeros((len(starts), width))
    high[seg, pos], low[seg, pos], vol[seg, pos] = rows[:, 2], rows[:, 3], rows[:, 5]
    run_high = np.maximum.accumulate(high, axis=1)[seg, pos]
    run_low = np.minimum.accumulate(low, axis=1)[seg, pos]
    run_vol = np.cumsum(vol, axis=1)[seg, pos]
    so_far = np.column_stack((rows[starts[seg], 1], run_high, run_low, rows[:, 4], run_vol))
    ends = starts + sizes - 1
    return _Resampled(group[starts], so_far[ends], fine, so_far)


def resample(rows: np.ndarray, timeframe: str) -> np.ndarray:
    """The file's bars as bars of ``timeframe`` (open_ms, open, high, low, close, volume), one per bar holding at
    least one file bar: the first open, the highest high, the lowest low, the last close, the volume summed."""
    r = _resample(rows, TIMEFRAMES[timeframe])
    return np.column_stack((r.open_ms.astype(np.float64), r.ohlcv))


def states_at_cadence(
    rows: np.ndarray,
    *,
    symbol: str,
    timeframe: str,
    every_ms: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
    fast: int = 12,
    slow: int = 26,
) -> Iterator[MarketState]:
    """The state the service would make at every ask instant, from a file's bars (``load_candles(...).rows``).

    Ask instants are the multiples of ``every_ms`` (epoch-aligned, so bar closes are among them) from the first
    file bar's close to the last one's, within [start_ms, end_ms) when given; the bars before ``start_ms`` still
    serve as history. At instant t the series holds the ``timeframe`` bars closed by t (resampled from the file's
    bars) and, when t is inside a bar, the forming bar made from the file bars of [bar open, t); the state is
    ``compute_state(series, ..., now_ms=t)`` (no quote: spread 0). Instants before compute_state has enough bars
    yield nothing. ``timeframe`` must be a multiple of the file's bar and ``every_ms`` too (finer data do not exist).
    """
    if len(rows) < 2:
        return
    bar_ms = _bar_ms(rows)
    tf_ms = TIMEFRAMES.get(timeframe)
    if tf_ms is None:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    if tf_ms % bar_ms or every_ms <= 0 or every_ms % bar_ms:
        raise ValueError(f"the file's bars are {bar_ms // 1000} s: the timeframe ({tf_ms // 1000} s) and the cadence "
                         f"({every_ms / 1000:g} s) must be multiples of it")
    r = _resample(rows, tf_ms)
    tail = tail_length(fast, slow)
    first = int(r.fine_open_ms[0]) + bar_ms
    last = int(r.fine_open_ms[-1]) + bar_ms
    if start_ms is not None:
        first = max(first, start_ms)
    if end_ms is not None:
        last = min(last, end_ms - 1)
    t0 = -(-first // every_ms) * every_ms
    asks = np.arange(t0, last + 1, every_ms, dtype=np.int64)
    closed = np.searchsorted(r.open_ms + tf_ms, asks, side="right")  # decision bars closed by each instant
    before = np.searchsorted(r.fine_open_ms, asks, side="left")  # file bars opened before each instant
    for t, k, j in zip(asks.tolist(), closed.tolist(), before.tolist(), strict=True):
        lo = max(0, k - tail)
        opens, bars = r.open_ms[lo:k], r.ohlcv[lo:k]
        forming_open = t // tf_ms * tf_ms
        if j > 0 and t % tf_ms and r.fine_open_ms[j - 1] >= forming_open:
            opens = np.append(opens, forming_open)
            bars = np.vstack((bars, r.so_far[j - 1]))
        if opens.size == 0:
            continue
        series = CandleSeries(timeframe, capacity=tail + 2)  # a fresh one: history never mixes across instants
        series.load_history(opens, *bars.T, np.zeros(opens.size, dtype=np.int64))
        state = compute_state(series, symbol=symbol, quote_bid=None, quote_ask=None, fast=fast, slow=slow, now_ms=t)
        if state is not None:
            yield state


def states_from_candles(rows: np.ndarray, *, symbol: str, timeframe: str, every_ms: int) -> Iterator[MarketState]:
    """The state at a bar close every ``every_ms`` (at least one bar) of market time, from the file's own bars."""
    tf_ms = TIMEFRAMES[timeframe]
    yield from states_at_cadence(rows, symbol=symbol, timeframe=timeframe, every_ms=max(1, every_ms // tf_ms) * tf_ms)

