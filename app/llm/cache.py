"""DecisionCache: reuse a model's answer while the market still looks the same.

A stored answer is served again when
- it was made for the same symbol, timeframe, model, prompt version and position (state and PnL sign): these
  form the *partition* key and are compared exactly; and either
- the prompt digest is the same (``HIT``: the model would see the very same prompt), or
- it was made from the same closed bars (``bar_close_ms``: a new bar is a new question, the model sees every
  one), every feature of ``FEATURE_NAMES`` is within its tolerance of the stored answer's **raw** value, the
  *sign features* (ret_1 by default) have the same sign, and the live price is inside the stored answer's *price
  band*: ``|price - stored price| <= price_band_atr * atr_pct_stored / 100 * stored price`` ("the idea stays
  valid while the price stays within k ATR of where it was asked"; it scales itself with each symbol's
  volatility, and ``math.inf`` turns it off) (``SIMILAR``; the distance reported is ``max_i |Δ_i| / tol_i``, so
  it is at most 1).

A served answer (HIT or SIMILAR) is a copy of the stored one that reports its own cost: ``meta.latency_ms`` is
the lookup's measured time, ``meta.answer_latency_ms`` the original call's, ``meta.cache_age_s`` the original
answer's age, and no tokens or cost (none were spent). The statistics count what was saved from the stored one.

Index. Each feature is scaled by its tolerance (``u_i = x_i / tol_i``), so "within tolerance" is
``|u_i - v_i| <= 1`` in every dimension. Every entry has a cell of width 2 (that is ``2 * tol``) in a grid over the
state's closed bars, the signs of the sign features and a few *index features*; the candidates of a query are the
entries of the cells its window ``[u - 1, u + 1]`` overlaps: exactly two per index feature (three only when the
window ends on a cell edge up to rounding). A value on a cell edge is therefore never a forced miss, and no value
collapses with its neighbours of another magnitude (the seed design bucketed ``value / (abs(value) * tol)``, which is
a constant for every positive value). Among the candidates inside the price band and within tolerance the nearest
wins (newest on a tie, then the lowest cell and the first stored).

The search walks the answers of the query's bar and signs, grouped by their *closed-bar features* (all but
``LIVE_FEATURES``): the answers of one bar share them, so the distance of a group is measured once and each answer
costs only its few live features (a quarter of the time of all eleven), and the query's cells are checked only for
an answer that would win. A group grown large (``_VECTOR_MIN`` answers, e.g. a long bar asked often) is measured
with numpy in one pass. Filing by bar also keeps a lookup to the answers of one bar, however many are alive.

Lifetime. Each entry gets its own TTL when stored (see ``DecisionCache.ttl_for``), dies early when
``on_position_change`` announces a different position for its symbol, and the least recently served entry is
evicted on insert beyond ``max_entries``. Every death is counted. Errors are never stored.

Single flight. ``get_or_compute`` runs at most one model call per prompt: a concurrent request for the same
digest waits for it, and a concurrent request within tolerance of a call in flight waits for it too (it is
served as ``SIMILAR`` with age 0), so a 1 Hz stream of states does not start a new call every second while a
5 s call is running. The call runs in its own task, so a waiter that is cancelled (superseded, timed out)
does not cancel it for the others, and its answer is still stored.

Fidelity audit. A sampled share of ``SIMILAR`` answers served by ``get_or_compute`` (``audit_rate``, at most
``audit_per_min`` per minute of the injected clock) is asked fresh in the background; the share of audits whose
fresh action equals the served one is ``CacheStats.agreement_rate``. ``aclose()`` cancels audits and calls in flight.

Everything runs on the event loop; nothing here blocks or uses threads. Time comes from the injected ``clock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from itertools import count
from operator import attrgetter, itemgetter, mul, sub

import numpy as np

from app.llm.schema import CacheStatus, Decision
from app.market.features import FEATURE_NAMES, MarketState, PositionState

log = logging.getLogger(__name__)

# Tolerances for the 1m decision timeframe, in each feature's own unit (FEATURE_NAMES documents the units), with
# DEFAULT_PRICE_BAND_ATR, chosen with `scripts/bench_cache.py --sweep` at the terminal's cadence: the decision
# service simulated (one call in flight per symbol, follow-ups, the cache's clock on market time), the offline rules
# as the model so every served answer is judged against the fresh answer for the same state.
#
# Tuned on the FIRST half of ../shared/data/freqtrade-1m (five days of real 1m candles) at the default's ratio of
# asks to bars: 1m bars asked every 5 s is 12 asks a bar, which 1m candles can only give as 1h bars asked every 5m
# and 15m bars every 1m (states_at_cadence builds the forming bar from the finer ones). A SIMILAR answer comes from
# the same closed bars, so the closed-bar features never differ and only the live ones decide: move_pct and
# vwap_dist_pct (both move with the price) and spread_bps. Sweep on 15m every 1m (7,185 asks; scale x on the
# price-move tolerances, x 1 = the values below), calls saved / agreement / non-HOLD agreement (n):
#
#     band \ x     0.25                0.5                 0.75                1 (chosen)          4
#     0.25 ATR     .801 1.000 1.000    .813 1.000 1.000    .813 1.000 1.000    .813 1.000 1.000    .813 1.000 1.000
#     0.5 ATR      .822 1.000 1.000    .868 1.000 1.000    .875 1.000 1.000    .876 1.000 1.000    .876 1.000 1.000
#     0.75 ATR     .822 1.000 1.000    .883 1.000 1.000    .898 1.000 1.000    .902 .999 1.000     .902 .999 1.000
#     1 ATR        .822 1.000 1.000    .885 1.000 1.000    .908 1.000 1.000    .916 .999 1.000     .921 .998 1.000
#     (n of non-HOLD answers served: 165-213; 1h every 5m gives the same picture at .786-.901 saved, 27-33 n)
#
# Agreement no longer limits the scale once answers never cross a bar close (before that rule the wrong answers
# served were all across bar closes), so the choice is where the price band alone governs the live price: x 1 is the
# smallest scale at which savings stop growing with the tolerances for the 0.75 ATR band on both tuning runs. The
# band is 0.75 rather than 1 because a real model may read the live price more closely than the rules do, and the
# band is what scales with each symbol's volatility. Held-out results (second half, other files, the Binance capture
# at the true 1m / 5 s default) are in docs/BENCHMARKS.md. The rules ignore ret_5, ret_60 and volume_ratio, and no
# closed-bar feature differs within a bar, so those tolerances only absorb a late trade revising the last bar.
# spread_bps is not in any candle file and BTCUSDT's spread hardly moves: 1 bps is set by reason (one tick of a
# symbol priced near 1 is 1 bps, and a spread that flickers by a tick must not make every ask a call; the rules
# refuse to open only above 15 bps).
DEFAULT_TOLERANCES: dict[str, float] = {
    "ret_1": 0.56,
    "ret_5": 0.62,
    "ret_15": 0.62,
    "ret_60": 0.62,
    "ema_spread_pct": 0.062,
    "rsi": 3.0,
    "atr_pct": 0.032,
    "vwap_dist_pct": 0.36,
    "volume_ratio": 2.0,
    "spread_bps": 1.0,
    "move_pct": 0.56,
}
TOLERANCE_TIMEFRAME = "1m"  # the timeframe DEFAULT_TOLERANCES are for

# Features that are moves of the price in %: their typical size grows like the square root of the bar length
# (random walk), so ``tolerances_for`` scales them by sqrt(bar / TOLERANCE_TIMEFRAME). RSI, volume ratio and spread
# are scale-free.
PRICE_MOVE_FEATURES = frozenset(
    {"ret_1", "ret_5", "ret_15", "ret_60", "ema_spread_pct", "atr_pct", "vwap_dist_pct", "move_pct"}
)

# The features the grid is built on: the three most selective on the capture with DEFAULT_TOLERANCES, i.e. the
# smallest share of the entries alive together (last 75 s) that a lookup's two probe cells return ("probe
# share" of `bench_cache.py --sweep`: ema_spread_pct 0.16, rsi 0.21, vwap_dist_pct 0.24; ret_1 0.79 and
# volume_ratio 0.89 would be nearly useless). The cells say which answers a query may be served (module docstring,
# Index); the search itself walks the query's bar and checks the cells of the winner only, since within one bar the
# closed-bar index features are the same for every answer and the cells hardly narrow it.
DEFAULT_INDEX_FEATURES: tuple[str, ...] = ("ema_spread_pct", "rsi", "vwap_dist_pct")

# Features whose sign must also agree (-, 0, +): ret_1 is the direction of the last bar ("turning up or down").
# On 1 s bars it sits within a tick of zero most of the time (median 0, one tick = 0.000016 %), so no tolerance
# separates up from down, and the rules' mean-reversion entries turn on exactly that sign. Without the sign, scale
# 1 of the sweep serves 0.145 of the calls at agreement 0.766 (0.600 non-HOLD); with it, 0.059 at 1.000 (1.000).
# The signs are part of the key of a bar's answers, so the check costs nothing at lookup.
DEFAULT_SIGN_FEATURES: tuple[str, ...] = ("ret_1",)

# The features that move with the live price or quote inside a bar; the others are computed on closed bars, so every
# answer of one bar has the same values (unless a late trade revises the last bar). The search groups a bar's answers
# by those closed-bar values and measures each answer on these alone (module docstring, Index). Only the speed of a
# lookup depends on this split, never its answer: a group whose closed-bar values differ from the query's is measured
# on them.
LIVE_FEATURES: tuple[str, ...] = ("vwap_dist_pct", "spread_bps", "move_pct")  # three: _find unpacks them

# How far the live price may move from where an answer was asked, in ATRs of the stored state, for the answer to
# still be served as SIMILAR, tuned with the tolerances above.
DEFAULT_PRICE_BAND_ATR = 0.75

_EPS = 1e-9  # slack for rounding: |Δ| = tol exactly counts as within tolerance
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_features_of = attrgetter(*FEATURE_NAMES)
_LIVE_POS = tuple(FEATURE_NAMES.index(n) for n in LIVE_FEATURES)


def timeframe_seconds(timeframe: str) -> float | None:
    """Length of a bar in seconds for strings like ``1s``, ``5m``, ``1h``, ``1d``; None if not understood."""
    m = re.fullmatch(r"(\d+)([smhdw])", timeframe.strip())
    return int(m.group(1)) * _UNITS[m.group(2)] if m else None


def tolerances_for(timeframe: str, base: Mapping[str, float] = DEFAULT_TOLERANCES) -> dict[str, float]:
    """``base`` (measured on ``TOLERANCE_TIMEFRAME``) scaled to ``timeframe``: price moves by sqrt(bar ratio)."""
    bar = timeframe_seconds(timeframe)
    ref = timeframe_seconds(TOLERANCE_TIMEFRAME)
    k = math.sqrt(bar / ref) if bar and ref else 1.0
    return {name: tol * k if name in PRICE_MOVE_FEATURES else tol for name, tol in base.items()}


class CacheLookup:
    """A stored answer found for a state. ``decision`` is the served copy of the stored Decision (status, age,
    distance, the lookup's own latency, no tokens or cost; see ``served_copy``); it is built on first access
    (copying a pydantic model costs a few µs, as much as the search), so a caller that only needs the status or
    the action does not pay for it."""

    __slots__ = ("_decision", "age_s", "distance", "latency_ms", "status", "stored")

    def __init__(self, stored: Decision, status: CacheStatus, age_s: float, distance: float,
                 latency_ms: float) -> None:
        self.stored = stored  # the answer as it was stored (its meta says MISS or OFFLINE)
        self.status = status  # HIT or SIMILAR
        self.age_s = age_s  # seconds since the answer was stored (injected clock)
        self.distance = distance  # max over features of |Δ| / tol; 0.0 for HIT
        self.latency_ms = latency_ms  # how long the lookup took (perf_counter), the decision's own latency
        self._decision: Decision | None = None

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            hit = self.status is CacheStatus.HIT
            self._decision = served_copy(self.stored, self.status, self.age_s, None if hit else self.distance,
                                         self.latency_ms)
        return self._decision

    def __repr__(self) -> str:
        return (f"CacheLookup({self.status}, age_s={self.age_s:.3f}, distance={self.distance:.3f}, "
                f"latency_ms={self.latency_ms:.4f})")


@dataclass(slots=True)
class CacheStats:
    requests: int = 0
    hits: int = 0  # same prompt digest as a stored answer
    similar: int = 0  # every feature within tolerance of a stored answer
    misses: int = 0  # no usable answer: get_or_compute made a fresh call
    coalesced: int = 0  # waited for an identical or similar call already in flight instead of making one
    errors: int = 0  # fresh calls that raised or answered ERROR (never stored)
    expired: int = 0  # entries that reached their TTL
    evicted: int = 0  # entries dropped by the size bound (least recently served first)
    purged: int = 0  # entries dropped because the position changed
    entries: int = 0  # entries stored now
    latency_saved_ms: float = 0.0  # sum of the served stored answers' model latency (HIT and SIMILAR)
    tokens_saved: int = 0  # prompt + completion tokens of the calls not made (HIT, SIMILAR, coalesced)
    cost_saved_usd: float = 0.0
    audits: int = 0  # completed fidelity audits of SIMILAR answers
    audits_agreed: int = 0  # ... whose fresh action equals the served one
    audit_errors: int = 0
    audits_skipped: int = 0  # sampled, but over the per-minute budget

    @property
    def hit_rate(self) -> float:
        """Share of requests answered without a model call of their own."""
        saved = self.hits + self.similar + self.coalesced
        return saved / self.requests if self.requests else 0.0

    @property
    def agreement_rate(self) -> float | None:
        """Share of audited SIMILAR answers whose action a fresh call confirmed; None before the first audit."""
        return self.audits_agreed / self.audits if self.audits else None


PartitionKey = tuple[str, str, str, str, PositionState, int]


class _Entry:
    __slots__ = ("alive", "band", "cell", "decision", "digest", "expires_at", "live", "part", "price", "scaled",
                 "seq", "slot", "stored_at")

    def __init__(self, part: _Partition, digest: str, scaled: tuple[float, ...], cell: tuple[int, ...] | None,
                 decision: Decision, stored_at: float, expires_at: float, price: float, band: float,
                 seq: int) -> None:
        self.part = part
        self.digest = digest
        self.scaled = scaled  # features divided by their tolerances
        self.live = part.live_of(scaled)  # ... the live ones (LIVE_FEATURES); its _Group holds the closed-bar ones
        self.price = price  # the live price the answer was made at
        self.band = band  # how far from ``price`` it may still be served as SIMILAR (price units; -1.0: never)
        self.cell = cell  # grid cell, None when a feature is not finite (then only a HIT can serve it)
        self.seq = seq  # order of storing: the first stored wins a tie of distance, age and cell
        self.slot = -1  # its place in its _Group
        self.decision = decision
        self.stored_at = stored_at
        self.expires_at = expires_at
        self.alive = True


class _Flight:
    __slots__ = ("band", "bar", "price", "scaled", "task")

    def __init__(self, task: asyncio.Task[Decision], scaled: tuple[float, ...] | None, price: float,
                 band: float, bar: int) -> None:
        self.task = task
        self.scaled = scaled
        self.price = price
        self.band = band
        self.bar = bar  # the bar_close_ms of the state it answers


# A group of at least this many answers is measured with numpy in one pass: below it numpy's fixed cost (~15 µs a
# search) is more than the Python loop's (~0.3-0.5 µs an answer). Measured (a whole lookup, one bar of one symbol,
# Python / numpy): 16 answers 8-11 / 20 µs; 48: 25-33 / 26; 256: 96-146 / 38-47; 1,024: 390-560 / 86-110.
_VECTOR_MIN = 48


class _Group:
    """The answers of one bar and signs whose closed-bar features are ``closed`` (scaled): a query is measured on
    those once, and on each answer's live features. Order does not matter (``_wins_tie`` decides ties), so an answer
    leaves by swapping the last into its place: O(1), and the same in the columns numpy reads, which a large group
    keeps up to date as answers come and go rather than building them again at the next lookup."""

    __slots__ = ("_columns", "closed", "entries")

    def __init__(self, closed: tuple[float, ...]) -> None:
        self.closed = closed
        self.entries: list[_Entry] = []
        # Once the group is searched with numpy: one column per entry (in ``entries`` order), its live features,
        # then its price and band; room for more entries beyond len(entries).
        self._columns: np.ndarray | None = None

    def add(self, entry: _Entry) -> None:
        entry.slot = len(self.entries)
        self.entries.append(entry)
        columns = self._columns
        if columns is not None:
            if entry.slot == columns.shape[1]:
                columns = self._columns = np.concatenate([columns, np.empty_like(columns)], axis=1)
            columns[:, entry.slot] = (*entry.live, entry.price, entry.band)

    def remove(self, entry: _Entry) -> None:
        entries = self.entries
        last = entries.pop()
        if last is not entry:
            i = entry.slot
            entries[i] = last
            last.slot = i
            if self._columns is not None:
                self._columns[:, i] = self._columns[:, len(entries)]

    def columns(self) -> np.ndarray:
        """The columns of the entries (``_columns``, as many as entries), made on the first numpy search."""
        if self._columns is None:
            entries = self.entries
            self._columns = np.array([(*e.live, e.price, e.band) for e in entries], dtype=np.float64).T.copy()
        return self._columns[:, :len(self.entries)]


def _wins_tie(e: _Entry, best: _Entry) -> bool:
    """Whether ``e`` wins over ``best`` at the same distance: the newer, then the lower cell, then the first stored
    (the order in which a walk of the query's cells, each in storing order, meets them)."""
    if e.stored_at != best.stored_at:
        return e.stored_at > best.stored_at
    return (e.cell, e.seq) < (best.cell, best.seq)  # type: ignore[operator]


def _reference_find(part: _Partition, by_closed: Mapping[tuple[float, ...], _Group], scaled: tuple[float, ...],
                    live: float) -> tuple[_Entry, CacheStatus, float] | None:
    """The answer of ``_find`` by the definition: the winner among the answers in the query's cells, inside their
    band and within tolerance. ``_find`` measures every answer of the bar instead, which gives the same winner
    unless rounding leaves it just outside the query's cells; then this decides."""
    best: _Entry | None = None
    best_d = 1.0 + _EPS
    for group in by_closed.values():
        for e in group.entries:
            if abs(live - e.price) > e.band or not part.probed(e.cell, scaled):
                continue
            d = max(map(abs, map(sub, scaled, e.scaled)))
            if d < best_d or (d == best_d and (best is None or _wins_tie(e, best))):
                best, best_d = e, d
    return (best, CacheStatus.SIMILAR, min(best_d, 1.0)) if best is not None else None


def _nearest(group: _Group, query_live: tuple[float, ...], live: float, near: float,
             limit: float) -> tuple[float, list[_Entry]] | None:
    """The answers of a large group inside their price band at the least distance (at least ``near``), if it is at
    most ``limit``: the same arithmetic as the Python loop of ``_find``, on arrays."""
    l0, l1, l2, prices, bands = group.columns()
    q0, q1, q2 = query_live
    # One feature at a time into one scratch array: a third less time than a 2-D difference and max(axis=1).
    d = np.abs(l0 - q0)
    t = np.empty_like(d)
    for row, q in ((l1, q1), (l2, q2)):
        np.subtract(row, q, out=t)
        np.abs(t, out=t)
        np.maximum(d, t, out=d)
    if near:
        np.maximum(d, near, out=d)
    np.subtract(live, prices, out=t)
    np.abs(t, out=t)
    d[t > bands] = np.inf  # the price left the answer's band
    least = float(d[int(d.argmin())])
    if not least <= limit:
        return None
    entries = group.entries
    return least, [entries[i] for i in np.flatnonzero(d == least).tolist()]


def _picker(positions: tuple[int, ...]) -> Callable[[tuple[float, ...]], tuple[float, ...]]:
    """A function that picks ``positions`` out of a tuple, always as a tuple (itemgetter returns one item bare)."""
    if len(positions) >= 2:
        return itemgetter(*positions)
    return lambda values: tuple(values[i] for i in positions)


class _Partition:
    """The entries of one (symbol, timeframe, model, prompt version, position, PnL sign)."""

    __slots__ = ("by_digest", "closed_of", "flights", "groups", "index_at", "index_pos", "inv_tol", "key",
                 "live_of", "sign_pos")

    def __init__(self, key: PartitionKey, inv_tol: tuple[float, ...], index_pos: tuple[int, ...],
                 sign_pos: tuple[int, ...], live_pos: tuple[int, ...]) -> None:
        self.key = key
        self.inv_tol = inv_tol
        self.index_pos = index_pos
        self.sign_pos = sign_pos
        self.index_at = 1 + len(sign_pos)  # where the index features' cells start in a cell
        self.closed_of = _picker(tuple(i for i in range(len(inv_tol)) if i not in live_pos))
        self.live_of = _picker(live_pos)
        self.by_digest: dict[str, _Entry] = {}  # every entry of the partition, by prompt digest
        # Entries with finite features, by (bar, *signs), then by their closed-bar features.
        self.groups: dict[tuple[int, ...], dict[tuple[float, ...], _Group]] = {}
        self.flights: dict[str, _Flight] = {}  # model calls in flight, by prompt digest

    def scale(self, state: MarketState) -> tuple[tuple[float, ...], bool]:
        scaled = tuple(map(mul, _features_of(state), self.inv_tol))
        return scaled, math.isfinite(sum(scaled))

    def signs(self, scaled: tuple[float, ...]) -> tuple[int, ...]:
        return tuple([(scaled[i] > 0.0) - (scaled[i] < 0.0) for i in self.sign_pos])

    def group_key(self, scaled: tuple[float, ...], bar: int) -> tuple[int, ...]:
        """(bar, *signs): the start of the cells of a state, and the key of its answers in ``groups``."""
        if len(self.sign_pos) == 1:  # the default: one sign feature, without building the signs' tuple
            x = scaled[self.sign_pos[0]]
            return (bar, (x > 0.0) - (x < 0.0))
        return (bar, *self.signs(scaled))

    def cell(self, scaled: tuple[float, ...], bar: int) -> tuple[int, ...]:
        # The closed bars the state was made from (its bar_close_ms), the signs of the sign features, then the
        # cell (width 2) of each index feature.
        return (bar, *self.signs(scaled), *(math.floor(scaled[i] * 0.5) for i in self.index_pos))

    def probed(self, cell: tuple[int, ...] | None, scaled: tuple[float, ...]) -> bool:
        """Whether ``cell`` (of the query's bar and signs) is one of the cells the query's window [u - 1, u + 1]
        overlaps in each index dimension: two, or three when the window ends on a cell edge up to rounding."""
        if cell is None:
            return False
        floor = math.floor
        for k, i in enumerate(self.index_pos, self.index_at):
            u = scaled[i]
            if not floor((u - 1.0 - _EPS) * 0.5) <= cell[k] <= floor((u + 1.0 + _EPS) * 0.5):
                return False
        return True

    def file(self, entry: _Entry) -> None:
        assert entry.cell is not None
        by_closed = self.groups.setdefault(entry.cell[:self.index_at], {})
        closed = self.closed_of(entry.scaled)
        group = by_closed.get(closed)
        if group is None:
            group = by_closed[closed] = _Group(closed)
        group.add(entry)

    def unfile(self, entry: _Entry) -> None:
        assert entry.cell is not None
        key = entry.cell[:self.index_at]
        by_closed = self.groups[key]
        closed = self.closed_of(entry.scaled)
        group = by_closed[closed]
        group.remove(entry)
        if not group.entries:
            del by_closed[closed]
            if not by_closed:
                del self.groups[key]


def _with_status(decision: Decision, status: CacheStatus, age_s: float | None, distance: float | None) -> Decision:
    meta = decision.meta.model_copy(update={"cache_status": status, "cache_age_s": age_s, "cache_distance": distance})
    return decision.model_copy(update={"meta": meta})


def served_copy(stored: Decision, status: CacheStatus, age_s: float | None, distance: float | None,
                latency_ms: float) -> Decision:
    """``stored`` as served from the cache: it reports its own cost, not the original call's. ``latency_ms`` is
    the time it took to serve, ``answer_latency_ms`` the original call's; no tokens or cost were spent."""
    meta = stored.meta.model_copy(update={
        "cache_status": status, "cache_age_s": age_s, "cache_distance": distance, "latency_ms": latency_ms,
        "answer_latency_ms": stored.meta.latency_ms, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
        "cost_known": True,
    })
    return stored.model_copy(update={"meta": meta})


class DecisionCache:
    """Answers by market similarity; see the module docstring. One instance may serve many symbols and timeframes."""

    def __init__(
        self,
        tolerances: Mapping[str, float] | None = None,
        *,
        index_features: tuple[str, ...] = DEFAULT_INDEX_FEATURES,
        sign_features: tuple[str, ...] = DEFAULT_SIGN_FEATURES,
        max_entries: int = 5000,
        ttl_s: float = 75.0,
        min_ttl_s: float | None = None,
        max_ttl_s: float | None = None,
        price_band_atr: float = DEFAULT_PRICE_BAND_ATR,
        clock: Callable[[], float] = time.monotonic,
        audit_rate: float = 0.05,
        audit_per_min: int = 6,
        rng: random.Random | None = None,
    ) -> None:
        """``tolerances=None`` uses ``DEFAULT_TOLERANCES`` scaled to each timeframe (``tolerances_for``); a mapping
        is used as given for every timeframe. Every name of FEATURE_NAMES needs a tolerance > 0 (``math.inf``
        ignores a feature, except an index feature). ``price_band_atr`` (>= 0, ``math.inf`` turns it off) is the
        live price band of a SIMILAR answer in ATRs of its stored state (module docstring)."""
        if tolerances is not None:
            self._check_tolerances(tolerances, index_features)
        else:
            self._check_tolerances(DEFAULT_TOLERANCES, index_features)
        if any(n not in FEATURE_NAMES for n in sign_features):
            raise ValueError(f"unknown sign features: {sign_features}")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not price_band_atr >= 0.0:
            raise ValueError(f"price_band_atr must be >= 0 (math.inf turns the band off), got {price_band_atr}")
        self.tolerances = dict(tolerances) if tolerances is not None else None
        self.index_features = index_features
        self.sign_features = sign_features
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.min_ttl_s = 0.4 * ttl_s if min_ttl_s is None else min_ttl_s
        self.max_ttl_s = 1.2 * ttl_s if max_ttl_s is None else max_ttl_s
        self.price_band_atr = price_band_atr
        self.audit_rate = audit_rate
        self.audit_per_min = audit_per_min
        self._clock = clock
        self._rng = rng or random.Random()
        self._index_pos = tuple(FEATURE_NAMES.index(n) for n in index_features)
        self._sign_pos = tuple(FEATURE_NAMES.index(n) for n in sign_features)
        self._parts: dict[PartitionKey, _Partition] = {}
        self._lru: OrderedDict[_Entry, None] = OrderedDict()  # least recently served first
        self._expiry: list[tuple[float, int, _Entry]] = []  # heap; entries already dead are skipped when popped
        self._seq = count()
        self._positions: dict[str, PositionState] = {}  # last position announced per symbol
        self._audit_times: deque[float] = deque()
        self._tasks: set[asyncio.Task[object]] = set()
        self._stats = CacheStats()

    @staticmethod
    def _check_tolerances(tolerances: Mapping[str, float], index_features: tuple[str, ...]) -> None:
        missing = [n for n in FEATURE_NAMES if n not in tolerances]
        if missing:
            raise ValueError(f"tolerances missing for {', '.join(missing)}")
        bad = [n for n in FEATURE_NAMES if not tolerances[n] > 0]
        if bad:
            raise ValueError(f"tolerances must be > 0: {', '.join(bad)}")
        unknown = [n for n in index_features if n not in FEATURE_NAMES or not math.isfinite(tolerances[n])]
        if unknown or not index_features:
            raise ValueError(f"index features must be features with a finite tolerance: {unknown or '(none)'}")

    # ----- public API ----------------------------------------------------------------------------------------
    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        return replace(self._stats, entries=len(self._lru))

    def __len__(self) -> int:
        return len(self._lru)

    def lookup(self, state: MarketState, *, model: str, prompt_version: str, prompt_digest: str) -> CacheLookup | None:
        """The stored answer for this state (HIT or SIMILAR), or None (counted as a miss)."""
        started = time.perf_counter()
        now = self._clock()
        expiry = self._expiry
        if expiry and expiry[0][0] <= now:
            self._sweep(now)
        self._stats.requests += 1
        part = self._parts.get((state.symbol, state.timeframe, model, prompt_version, state.position,
                                state.position_pnl_sign))  # _key, inline: this is the hot path
        found = self._find(part, state, prompt_digest) if part is not None else None
        if found is None:
            self._stats.misses += 1
            return None
        return self._serve(*found, now, started)

    def store(self, state: MarketState, *, model: str, prompt_version: str, prompt_digest: str,
              decision: Decision) -> bool:
        """Keep ``decision`` as the answer for ``state``. Errors, and states of a position that has since changed,
        are not stored (returns False)."""
        if decision.is_error or decision.body is None:
            return False
        announced = self._positions.get(state.symbol)
        if announced is not None and announced is not state.position:
            return False
        now = self._clock()
        self._sweep(now)
        part = self._partition(self._key(state, model, prompt_version))
        scaled, finite = part.scale(state)
        old = part.by_digest.get(prompt_digest)
        if old is not None:
            self._drop(old)
        cell = part.cell(scaled, state.bar_close_ms) if finite else None
        seq = next(self._seq)
        entry = _Entry(part, prompt_digest, scaled, cell, decision, now, now + self.ttl_for(decision, state),
                       state.last_price, self._band(state), seq)
        part.by_digest[prompt_digest] = entry
        if cell is not None:
            part.file(entry)
        self._lru[entry] = None
        heapq.heappush(self._expiry, (entry.expires_at, seq, entry))
        if len(self._expiry) > 4 * self.max_entries + 64:  # dead entries (evicted, replaced) wait there to expire
            self._expiry = [item for item in self._expiry if item[2].alive]
            heapq.heapify(self._expiry)
        while len(self._lru) > self.max_entries:
            victim = next(iter(self._lru))
            self._drop(victim)
            self._stats.evicted += 1
        return True

    async def get_or_compute(
        self,
        state: MarketState,
        *,
        model: str,
        prompt_version: str,
        prompt_digest: str,
        compute: Callable[[], Awaitable[Decision]],
    ) -> Decision:
        """The cached answer, or the answer of a call in flight for the same or a similar state, or a fresh call.

        The returned Decision's ``meta.cache_status`` is HIT or SIMILAR (with ``cache_age_s`` and
        ``cache_distance``) when served from the cache; a fresh answer keeps its provider's status (MISS, or
        OFFLINE for the rules, or ERROR). An exception from ``compute`` reaches every request waiting for it.
        A request served from a similar call in flight is SIMILAR with age 0 and its own wait as its latency.
        """
        started = time.perf_counter()
        now = self._clock()
        self._sweep(now)
        self._stats.requests += 1
        key = self._key(state, model, prompt_version)
        part = self._partition(key)
        found = self._find(part, state, prompt_digest)
        if found is not None:
            result = self._serve(*found, now, started)
            if result.status is CacheStatus.SIMILAR:
                self._maybe_audit(part, state, prompt_digest, result.decision, compute)
            return result.decision

        scaled, finite = part.scale(state)
        flight = part.flights.get(prompt_digest)
        distance: float | None = None
        if flight is None and finite:
            flight, distance = self._similar_flight(part, scaled, state.last_price, state.bar_close_ms)
        if flight is not None:
            self._stats.coalesced += 1
            decision = await asyncio.shield(flight.task)
            if not decision.is_error and decision.body is not None:
                self._count_saved(decision, latency=False)
                if distance is not None:
                    waited_ms = (time.perf_counter() - started) * 1000.0
                    return served_copy(decision, CacheStatus.SIMILAR, 0.0, distance, waited_ms)
            return decision

        self._stats.misses += 1
        task = asyncio.get_running_loop().create_task(
            self._compute(part, state, prompt_digest, scaled if finite else None, model, prompt_version, compute),
            name=f"decision-cache call {state.symbol} {state.timeframe}",
        )
        part.flights[prompt_digest] = _Flight(task, scaled if finite else None, state.last_price, self._band(state),
                                              state.bar_close_ms)
        task.add_done_callback(lambda t: self._landed(part, prompt_digest, t))
        self._track(task)
        return await asyncio.shield(task)

    def on_position_change(self, symbol: str, position: PositionState) -> int:
        """Drop ``symbol``'s entries made for any other position; later answers for another position are not
        stored. Returns how many entries were dropped."""
        self._positions[symbol] = position
        dropped = 0
        for key, part in list(self._parts.items()):
            if key[0] == symbol and key[4] is not position:
                for entry in list(part.by_digest.values()):
                    self._drop(entry)
                    dropped += 1
        self._stats.purged += dropped
        return dropped

    def ttl_for(self, decision: Decision, state: MarketState) -> float:
        """Seconds an answer lives: ``ttl_s * c * b``, clamped to ``[min_ttl_s, max_ttl_s] * b`` (default
        0.4..1.2 x ttl_s at 1m bars).

        ``c = 0.8 + 0.4 * confidence`` (0.8..1.2: with ttl_s = 75 s, 60 s at confidence 0, 75 s at 0.5, 90 s at 1).
        ``b`` = the state's bar length / TOLERANCE_TIMEFRAME's (1m): the closed-bar features change once a bar, so
        an answer on 1h bars may live an hour and a quarter, one on 1m bars 75 s. Volatility no longer shortens
        it: the live price band is in ATRs of the state, and the price-move tolerances already miss more often in a
        fast market; halving the TTL as well cost 4-5 points of calls saved on a volatile pair for no agreement.
        """
        confidence = decision.body.confidence if decision.body is not None else 0.5
        c = 0.8 + 0.4 * confidence
        bar = timeframe_seconds(state.timeframe)
        ref = timeframe_seconds(TOLERANCE_TIMEFRAME)
        b = bar / ref if bar and ref else 1.0
        return min(self.max_ttl_s * b, max(self.min_ttl_s * b, self.ttl_s * c * b))

    async def aclose(self) -> None:
        """Cancel audits and calls in flight, and wait for them to finish."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # ----- internals -----------------------------------------------------------------------------------------
    def _key(self, state: MarketState, model: str, prompt_version: str) -> PartitionKey:
        return (state.symbol, state.timeframe, model, prompt_version, state.position, state.position_pnl_sign)

    def _partition(self, key: PartitionKey) -> _Partition:
        part = self._parts.get(key)
        if part is None:
            tol = self.tolerances if self.tolerances is not None else tolerances_for(key[1])
            inv_tol = tuple(1.0 / tol[n] for n in FEATURE_NAMES)
            part = self._parts[key] = _Partition(key, inv_tol, self._index_pos, self._sign_pos, _LIVE_POS)
        return part

    def _find(self, part: _Partition, state: MarketState, digest: str) -> tuple[_Entry, CacheStatus, float] | None:
        # Expired entries are gone already (_sweep runs first), so every entry found is alive and fresh.
        entry = part.by_digest.get(digest)
        if entry is not None:
            return entry, CacheStatus.HIT, 0.0
        groups = part.groups
        if not groups:
            return None
        scaled = tuple(map(mul, _features_of(state), part.inv_tol))
        live = state.last_price
        if not (math.isfinite(sum(scaled)) and math.isfinite(live)):
            return None
        by_closed = groups.get(part.group_key(scaled, state.bar_close_ms))
        if by_closed is None:
            return None
        query_closed = part.closed_of(scaled)
        q0, q1, q2 = part.live_of(scaled)  # the three LIVE_FEATURES
        best: _Entry | None = None
        best_d = 1.0 + _EPS  # |Δ| = tol exactly counts as within tolerance
        for closed, group in by_closed.items():
            # The distance on the closed-bar features is the same for every answer of the group: measure it once.
            if closed == query_closed:
                near = 0.0
            else:
                near = max(map(abs, map(sub, query_closed, closed)))
                if near > best_d:
                    continue
            entries = group.entries
            if len(entries) >= _VECTOR_MIN:
                nearest = _nearest(group, (q0, q1, q2), live, near, best_d)
                if nearest is not None:
                    d, tied = nearest
                    for e in tied:
                        if d < best_d or best is None or _wins_tie(e, best):
                            best, best_d = e, d
                continue
            for e in entries:
                if abs(live - e.price) > e.band:  # the price left the answer's band (-1.0 when it has none)
                    continue
                a, b, c = e.live
                d = max(abs(q0 - a), abs(q1 - b), abs(q2 - c), near)
                if d < best_d:
                    best, best_d = e, d
                elif d == best_d and (best is None or _wins_tie(e, best)):
                    best = e
        if best is None:
            return None
        if not part.probed(best.cell, scaled):  # only by rounding at a cell edge: search the query's cells alone
            return _reference_find(part, by_closed, scaled, live)
        return best, CacheStatus.SIMILAR, min(best_d, 1.0)

    def _similar_flight(self, part: _Partition, scaled: tuple[float, ...], live: float,
                        bar: int) -> tuple[_Flight | None, float | None]:
        best: _Flight | None = None
        best_d = 1.0 + _EPS
        if not math.isfinite(live):
            return None, None
        signs = part.signs(scaled)
        for flight in part.flights.values():
            if flight.bar != bar or abs(live - flight.price) > flight.band:
                continue
            if flight.scaled is not None and part.signs(flight.scaled) == signs:
                d = max(map(abs, map(sub, scaled, flight.scaled)))
                if d <= best_d:
                    best, best_d = flight, d
        return (best, min(best_d, 1.0)) if best is not None else (None, None)

    def _band(self, state: MarketState) -> float:
        """The price band of an answer made from ``state``, in price units: inf when off, -1.0 (nothing is
        within it) when the state has no finite ATR or price to measure it by."""
        k = self.price_band_atr
        if k == math.inf:
            return math.inf
        band = k * state.atr_pct / 100.0 * state.last_price
        return band if math.isfinite(band) and band >= 0.0 else -1.0

    def _serve(self, entry: _Entry, status: CacheStatus, distance: float, now: float, started: float) -> CacheLookup:
        self._lru.move_to_end(entry)
        if status is CacheStatus.HIT:
            self._stats.hits += 1
        else:
            self._stats.similar += 1
        self._count_saved(entry.decision, latency=True)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return CacheLookup(entry.decision, status, now - entry.stored_at, distance, latency_ms)

    def _count_saved(self, decision: Decision, *, latency: bool) -> None:
        meta = decision.meta
        if latency:
            self._stats.latency_saved_ms += meta.latency_ms
        self._stats.tokens_saved += meta.prompt_tokens + meta.completion_tokens
        self._stats.cost_saved_usd += meta.cost_usd

    def _drop(self, entry: _Entry) -> None:
        if not entry.alive:
            return
        entry.alive = False
        part = entry.part
        if part.by_digest.get(entry.digest) is entry:
            del part.by_digest[entry.digest]
        if entry.cell is not None:
            part.unfile(entry)
        self._lru.pop(entry, None)
        self._forget_if_empty(part)

    def _forget_if_empty(self, part: _Partition) -> None:
        if not part.by_digest and not part.flights and self._parts.get(part.key) is part:
            del self._parts[part.key]

    def _sweep(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            if entry.alive:
                self._drop(entry)
                self._stats.expired += 1

    async def _compute(self, part: _Partition, state: MarketState, digest: str, scaled: tuple[float, ...] | None,
                       model: str, prompt_version: str, compute: Callable[[], Awaitable[Decision]]) -> Decision:
        try:
            decision = await compute()
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._stats.errors += 1
            raise
        if decision.is_error or decision.body is None:
            self._stats.errors += 1
            return decision
        status = decision.meta.cache_status
        if status is not CacheStatus.OFFLINE:
            status = CacheStatus.MISS
        decision = _with_status(decision, status, None, None)
        self.store(state, model=model, prompt_version=prompt_version, prompt_digest=digest, decision=decision)
        return decision

    def _landed(self, part: _Partition, digest: str, task: asyncio.Task[Decision]) -> None:
        # A done callback rather than a `finally`, so a call cancelled before it started is forgotten too.
        flight = part.flights.get(digest)
        if flight is not None and flight.task is task:
            del part.flights[digest]
        self._forget_if_empty(part)

    def _maybe_audit(self, part: _Partition, state: MarketState, digest: str, served: Decision,
                     compute: Callable[[], Awaitable[Decision]]) -> None:
        if self.audit_rate <= 0 or self._rng.random() >= self.audit_rate:
            return
        now = self._clock()
        times = self._audit_times
        while times and times[0] <= now - 60.0:
            times.popleft()
        if len(times) >= self.audit_per_min:
            self._stats.audits_skipped += 1
            return
        times.append(now)
        task = asyncio.get_running_loop().create_task(
            self._audit(part.key, state, digest, served, compute), name=f"decision-cache audit {state.symbol}"
        )
        self._track(task)

    async def _audit(self, key: PartitionKey, state: MarketState, digest: str, served: Decision,
                     compute: Callable[[], Awaitable[Decision]]) -> None:
        try:
            fresh = await compute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an audit failing must not disturb anything else
            self._stats.audit_errors += 1
            log.info("cache audit call failed: %s", exc)
            return
        if fresh.is_error or fresh.body is None or served.body is None:
            self._stats.audit_errors += 1
            return
        self._stats.audits += 1
        if fresh.body.action is served.body.action:
            self._stats.audits_agreed += 1
        else:
            log.info("cache audit: served %s (distance %.2f) but a fresh call says %s for %s",
                     served.body.action, served.meta.cache_distance or 0.0, fresh.body.action, state.symbol)
        status = CacheStatus.OFFLINE if fresh.meta.cache_status is CacheStatus.OFFLINE else CacheStatus.MISS
        self.store(state, model=key[2], prompt_version=key[3], prompt_digest=digest,
                   decision=_with_status(fresh, status, None, None))

    def _track(self, task: asyncio.Task[object]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody waited for is not reported as "never retrieved"
