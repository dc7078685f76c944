"""Latency recorders (HdrHistogram), counters and rates: the numbers behind the performance panel.

Recording is on the hot path (every market message may stamp one or more stages), reading is not (the panel asks
at 1–4 Hz). So ``Recorder.record(ns)`` only appends the integer to a preallocated-growth ``array('q')`` buffer, and
the buffer is folded into the histograms when someone reads, or when it holds ``buffer_size`` values.

Why a buffer: ``HdrHistogram.record_value`` is pure Python and costs about 1.2 µs a call on this machine (measured:
~1,190 ns/call for 200,000 calls), which at tens of thousands of stamps a second is a visible share of the loop.
``Recorder.record`` costs about 0.12 µs (an ``array.append`` plus a length check; measured ~115 ns/call over 10**6
calls, Python 3.12, same machine), plus ~30 ns amortised for the fold. Folding is vectorised with numpy: bucket
indices are computed for the whole buffer at once with HdrHistogram's own bucket layout, then counted with
``bincount`` (identical counts to ``record_value``, checked in tests); 65,536 values fold in about 2 ms.
``measure_record_cost()`` repeats the measurement; ``scripts/soak.py`` prints it.

Precision: HdrHistogram with 3 significant figures keeps every value within 0.1 % of what was recorded, except that
nothing finer than the lowest discernible value is kept: with ``lowest=1_000`` ns the bucket width at the bottom is
512 ns (2**floor(log2(lowest))). So a reported percentile is within ``max(0.1 % of the value, 512 ns)`` of the
exact one. ``max`` and ``mean`` are exact (kept beside the histogram), and percentiles never exceed ``max``.
Values above ``highest`` (60 s) are recorded as ``highest`` and counted in ``Recorder.clamped``; negative values
(clock skew between machines, in exchange_to_receive) are recorded as 0 and counted in ``Recorder.negative``.

Windows: ``"1m"`` is the last minute, kept as 6 sub-histograms of 10 s that rotate (so it spans 50–60 s: the
current, partial slot plus the 5 before it); ``"all"`` is everything since the recorder was made. Values buffered
between two reads are attributed to the slot that is current when they are folded, i.e. at most one read interval
(or ``buffer_size`` values) late. So a reader must snapshot at least once per 10 s slot (the panel does at
1–4 Hz, ``scripts/soak.py`` at each sample); without reads, buffered values all land in the slot current at the
next read.
"""

from __future__ import annotations

import csv
import json
import math
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

# The stages of the chain, as the terminal names them.
EXCHANGE_TO_RECEIVE = "exchange_to_receive"  # exchange timestamp -> our receipt (includes clock offset)
RECEIVE_TO_BUS = "receive_to_bus"  # receipt -> delivered to a bus subscriber
CANDLE_UPDATE = "candle_update"  # applying a batch to candles/indicators
UI_FRAME = "ui_frame"  # one turn of the loop spent on the UI: a refresh tick, or a repaint of the window
UI_PAINT = "ui_paint"  # the repaints alone (Qt paints in a turn of its own, after the refresh that changed things)
MODEL_HIT = "model_hit"  # decision served from the cache, exact key
MODEL_SIMILAR = "model_similar"  # decision served from the cache, similar market
MODEL_MISS = "model_miss"  # decision asked of the provider
HUMAN_DECISION = "human_decision"  # proposal shown -> approved / rejected / modified
APPROVE_TO_FILL = "approve_to_fill"
TICK_TO_PROPOSAL = "tick_to_proposal"
PROPOSAL_TO_FILL = "proposal_to_fill"
STAGES = (
    EXCHANGE_TO_RECEIVE, RECEIVE_TO_BUS, CANDLE_UPDATE, UI_FRAME, UI_PAINT, MODEL_HIT, MODEL_SIMILAR, MODEL_MISS,
    HUMAN_DECISION, APPROVE_TO_FILL, TICK_TO_PROPOSAL, PROPOSAL_TO_FILL,
)

WINDOWS = ("1m", "all")
PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class StageSnapshot:
    """One window of one stage. Percentiles and max are integers in the recorder's unit; mean is a float."""

    count: int = 0
    p50: int = 0
    p95: int = 0
    p99: int = 0
    max: int = 0
    mean: float = 0.0


EMPTY = StageSnapshot()


class Recorder:
    """Latency distribution of one stage, in integer ``unit`` (nanoseconds by default).

    ``record(ns)`` takes an int. Read with ``snapshot("1m")`` / ``snapshot("all")`` or ``snapshots()``.
    """

    def __init__(
        self,
        name: str,
        unit: str = "ns",
        lowest: int = 1_000,
        highest: float = 60e9,
        sig_figs: int = 3,
        *,
        window_s: float = 60.0,
        slots: int = 6,
        buffer_size: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or slots < 1 or buffer_size < 1:
            raise ValueError("window_s, slots and buffer_size must be positive")
        self.name = name
        self.unit = unit
        self.lowest = int(lowest)
        self.highest = int(highest)
        self.sig_figs = sig_figs
        self.window_s = float(window_s)
        self.clamped = 0
        self.negative = 0
        self._total = HdrHistogram(self.lowest, self.highest, sig_figs)  # since start; also the bucket layout
        self._total_counts = np.ctypeslib.as_array(self._total.counts)  # a view on HdrHistogram's own counts
        self._n_counts = self._total.counts_len
        self._slot_s = self.window_s / slots
        # Ring of (slot epoch, counts or None, [count, sum, max]); an idle slot holds no array.
        self._slots: list[tuple[int, np.ndarray | None, list[int]]] = [(-1, None, [0, 0, 0]) for _ in range(slots)]
        self._sum_all = 0
        self._max_all = 0
        self._buf = array("q")
        self._cap = buffer_size
        self._clock = clock
        self._version = 0
        self._cache: dict[str, tuple[int, int, StageSnapshot]] = {}

    # --- hot path -------------------------------------------------------------------------------------------------
    def record(self, value: int) -> None:
        buf = self._buf
        buf.append(value)
        if len(buf) >= self._cap:
            self.fold()

    def record_since(self, start_ns: int) -> None:
        """Record ``perf_counter_ns() - start_ns``."""
        self.record(time.perf_counter_ns() - start_ns)

    # --- folding --------------------------------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        resolution = 1 << self._total.unit_magnitude
        return (f"HdrHistogram, {self.sig_figs} significant figures: within {100 * 10 ** -self.sig_figs:g} % "
                f"of the value, not finer than {resolution} {self.unit}")

    @property
    def resolution(self) -> int:
        """The bucket width at the bottom of the range (2**floor(log2(lowest)))."""
        return 1 << self._total.unit_magnitude

    def _indices(self, values: np.ndarray) -> np.ndarray:
        """HdrHistogram's counts index of each value, vectorised (``_counts_index_for`` in hdrh)."""
        h = self._total
        v = values | h.sub_bucket_mask
        # bit_length(v) == frexp exponent for positive ints below 2**53 (highest is far below).
        _, bit_length = np.frexp(v.astype(np.float64))
        bucket = bit_length.astype(np.int64) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
        sub_bucket = values >> (bucket + h.unit_magnitude)
        return ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket - h.sub_bucket_half_count

    def fold(self) -> None:
        """Move buffered values into the histograms and rotate the 1-minute window."""
        now_slot = int(self._clock() // self._slot_s)
        buf = self._buf
        if not buf:
            self._rotate(now_slot)
            return
        values = np.frombuffer(buf, dtype=np.int64).copy()
        self._buf = array("q")
        self._version += 1
        neg = values < 0
        if neg.any():
            self.negative += int(neg.sum())
            values[neg] = 0
        over = values > self.highest
        if over.any():
            self.clamped += int(over.sum())
            values[over] = self.highest
        counts = np.bincount(self._indices(values), minlength=self._n_counts)
        n, total, vmax = len(values), int(values.sum()), int(values.max())
        # since start
        self._total_counts += counts.astype(np.uint64)
        h = self._total
        h.total_count += n
        h.max_value = max(h.max_value, vmax)
        h.min_value = min(h.min_value, int(values.min()))
        self._sum_all += total
        self._max_all = max(self._max_all, vmax)
        # the current slot of the window
        slot = self._rotate(now_slot)
        epoch, arr, stats = self._slots[slot]
        if arr is None:
            arr = np.zeros(self._n_counts, dtype=np.uint32)
            self._slots[slot] = (epoch, arr, stats)
        arr += counts.astype(np.uint32)
        stats[0] += n
        stats[1] += total
        stats[2] = max(stats[2], vmax)

    def _rotate(self, now_slot: int) -> int:
        """Forget slots older than the window; return the ring index of the current slot."""
        ring = self._slots
        i = now_slot % len(ring)
        if ring[i][0] != now_slot:
            ring[i] = (now_slot, None, [0, 0, 0])
            self._version += 1
        oldest = now_slot - len(ring) + 1
        for j, (epoch, arr, _) in enumerate(ring):
            if arr is not None and epoch < oldest:
                ring[j] = (-1, None, [0, 0, 0])
                self._version += 1
        return i

    # --- reading --------------------------------------------------------------------------------------------------
    def snapshot(self, window: str = "1m") -> StageSnapshot:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}")
        self.fold()
        now_slot = int(self._clock() // self._slot_s)
        cached = self._cache.get(window)
        if cached is not None and cached[0] == self._version and cached[1] == now_slot:
            return cached[2]
        if window == "all":
            snap = self._summarise(self._total_counts, self._total.total_count, self._sum_all, self._max_all)
        else:
            oldest = now_slot - len(self._slots) + 1
            live = [(arr, st) for epoch, arr, st in self._slots if arr is not None and epoch >= oldest]
            if not live:
                snap = EMPTY
            else:
                counts = np.sum([arr for arr, _ in live], axis=0, dtype=np.uint64)
                n = sum(st[0] for _, st in live)
                snap = self._summarise(counts, n, sum(st[1] for _, st in live), max(st[2] for _, st in live))
        self._cache[window] = (self._version, now_slot, snap)
        return snap

    def snapshots(self) -> dict[str, StageSnapshot]:
        return {w: self.snapshot(w) for w in WINDOWS}

    def _summarise(self, counts: np.ndarray, n: int, total: int, vmax: int) -> StageSnapshot:
        if n == 0:
            return EMPTY
        h = self._total
        cum = np.cumsum(counts)
        ps = []
        for p in PERCENTILES:
            # HdrHistogram's definition (get_value_at_percentile): the highest value equivalent to the bucket where
            # the cumulative count first reaches round(p% of n); capped at the exact max.
            target = max(int(p * n / 100 + 0.5), 1)
            idx = int(np.searchsorted(cum, target, side="left"))
            value = h.get_highest_equivalent_value(h.get_value_from_index(idx))
            ps.append(min(int(value), vmax))
        return StageSnapshot(count=int(n), p50=ps[0], p95=ps[1], p99=ps[2], max=int(vmax), mean=total / n)

    @property
    def count(self) -> int:
        """Values recorded since start (including those still buffered)."""
        return self._total.total_count + len(self._buf)

    def histogram(self) -> HdrHistogram:
        """The since-start HdrHistogram (folded first), e.g. for ``encode()`` or ``output_percentile_distribution``."""
        self.fold()
        return self._total


class Counter:
    """A monotonically increasing count (``inc`` is an attribute add)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


class Rate:
    """Events per second over the last ``window_s`` seconds.

    Either count events with ``add(n)``, or follow an existing counter with ``source`` (e.g.
    ``lambda: session.feed.frames``). The rate is computed when read, from (time, total) samples taken at each read,
    so reading at 1–4 Hz is all it needs; between reads nothing but an integer add happens.
    """

    def __init__(self, name: str, window_s: float = 5.0, *, source: Callable[[], int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.window_s = window_s
        self.total = 0
        self._source = source
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._samples.append((clock(), self._current()))

    def _current(self) -> int:
        return self._source() if self._source is not None else self.total

    def add(self, n: int = 1) -> None:
        self.total += n

    def per_second(self) -> float:
        now, total = self._clock(), self._current()
        s = self._samples
        s.append((now, total))
        # Keep one sample at or before the window start so the rate spans the whole window.
        while len(s) > 2 and now - s[1][0] >= self.window_s:
            s.popleft()
        t0, n0 = s[0]
        return (total - n0) / (now - t0) if now > t0 else 0.0


class Metrics:
    """The registry the terminal stamps into and the performance panel reads."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, stages: tuple[str, ...] = STAGES) -> None:
        self._clock = clock
        self.recorders: dict[str, Recorder] = {}
        self.counters: dict[str, Counter] = {}
        self.rates: dict[str, Rate] = {}
        for name in stages:
            self.recorder(name)

    def recorder(self, name: str, **kwargs: Any) -> Recorder:
        rec = self.recorders.get(name)
        if rec is None:
            kwargs.setdefault("clock", self._clock)
            rec = self.recorders[name] = Recorder(name, **kwargs)
        return rec

    def counter(self, name: str) -> Counter:
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = Counter(name)
        return c

    def rate(self, name: str, window_s: float = 5.0, *, source: Callable[[], int] | None = None) -> Rate:
        r = self.rates.get(name)
        if r is None:
            r = self.rates[name] = Rate(name, window_s, source=source, clock=self._clock)
        return r

    def snapshot_all(self) -> dict[str, Any]:
        """``{"stages": {name: {"1m": StageSnapshot, "all": StageSnapshot}}, "units": {name: unit},
        "counters": {name: int}, "rates": {name: float per second}}``."""
        return {
            "stages": {name: rec.snapshots() for name, rec in self.recorders.items()},
            "units": {name: rec.unit for name, rec in self.recorders.items()},
            "counters": {name: c.value for name, c in self.counters.items()},
            "rates": {name: r.per_second() for name, r in self.rates.items()},
        }

    def export_json(self, path: str | Path, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        snap = snapshot if snapshot is not None else self.snapshot_all()
        doc = {
            "version": 1,
            "precision": {name: rec.precision for name, rec in self.recorders.items()},
            "stages": {name: {w: asdict(s) for w, s in wins.items()} for name, wins in snap["stages"].items()},
            "units": snap["units"],
            "counters": snap["counters"],
            "rates": snap["rates"],
        }
        Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return snap

    def export_csv(self, path: str | Path, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
        """One row per (stage, window); counters and rates follow as rows of kind ``counter`` / ``rate``."""
        snap = snapshot if snapshot is not None else self.snapshot_all()
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_HEADER)
            for name, wins in snap["stages"].items():
                for window, s in wins.items():
                    w.writerow(["stage", name, window, snap["units"].get(name, "ns"),
                                s.count, s.p50, s.p95, s.p99, s.max, repr(s.mean), ""])
            for name, value in snap["counters"].items():
                w.writerow(["counter", name, "", "", "", "", "", "", "", "", value])
            for name, value in snap["rates"].items():
                w.writerow(["rate", name, "", "1/s", "", "", "", "", "", "", repr(float(value))])
        return snap


CSV_HEADER = ("kind", "name", "window", "unit", "count", "p50", "p95", "p99", "max", "mean", "value")
_INT_FIELDS = tuple(f.name for f in fields(StageSnapshot) if f.name != "mean")


def _stage(d: dict[str, Any]) -> StageSnapshot:
    return StageSnapshot(**{k: int(d[k]) for k in _INT_FIELDS}, mean=float(d["mean"]))


def load_json(path: str | Path) -> dict[str, Any]:
    """Read an ``export_json`` file back into the structure ``snapshot_all`` returns."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("version") != 1:
        raise ValueError(f"{path}: not a metrics export of version 1")
    return {
        "stages": {name: {w: _stage(s) for w, s in wins.items()} for name, wins in doc["stages"].items()},
        "units": dict(doc.get("units", {})),
        "counters": {k: int(v) for k, v in doc.get("counters", {}).items()},
        "rates": {k: float(v) for k, v in doc.get("rates", {}).items()},
    }


def load_csv(path: str | Path) -> dict[str, Any]:
    """Read an ``export_csv`` file back into the structure ``snapshot_all`` returns."""
    out: dict[str, Any] = {"stages": {}, "units": {}, "counters": {}, "rates": {}}
    with Path(path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            kind, name = row["kind"], row["name"]
            if kind == "stage":
                out["stages"].setdefault(name, {})[row["window"]] = _stage(row)
                out["units"][name] = row["unit"]
            elif kind == "counter":
                out["counters"][name] = int(row["value"])
            elif kind == "rate":
                out["rates"][name] = float(row["value"])
    return out


def format_ns(ns: float) -> str:
    """A latency for people: 850 ns, 12.3 µs, 4.56 ms, 1.20 s."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e9:.3g} s" if math.isfinite(ns) else str(ns)


def measure_record_cost(n: int = 500_000) -> dict[str, float]:
    """Nanoseconds per call of ``Recorder.record`` (fold included, loop overhead subtracted) and, for comparison,
    of ``HdrHistogram.record_value``."""
    rec = Recorder("bench", buffer_size=65_536)
    record = rec.record
    values = [1_000 + (i * 7919) % 5_000_000 for i in range(n)]
    t0 = time.perf_counter_ns()
    for _v in values:
        pass
    loop = time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    for v in values:
        record(v)
    rec.fold()
    ours = time.perf_counter_ns() - t0 - loop
    h = HdrHistogram(1_000, 60_000_000_000, 3)
    raw = h.record_value
    m = min(n, 100_000)
    t0 = time.perf_counter_ns()
    for v in values[:m]:
        raw(v)
    theirs = time.perf_counter_ns() - t0 - loop * m / n
    return {"recorder_ns_per_record": ours / n, "hdrhistogram_ns_per_record_value": theirs / m}
