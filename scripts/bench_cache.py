#!/usr/bin/env python3
"""DecisionCache at the decision service's cadence, on any recording or candle file: calls saved, agreement with
fresh answers, model calls per hour, the age of the decision on screen, lookup time, memory.

Inputs. ``--data FILE ...`` replays a Binance recording (one session, files in order) through
``states_from_recording``: the state at every second of market time, of ``--symbol`` (default: the symbol with the
most trades in the recording). ``--candles FILE`` reads a candle file (``app.market.candle_files``: JSON rows or CSV,
banner lines, either time order, epoch or dates) and ``states_at_cadence`` builds the state at every file bar: the
closed bars of ``--timeframe`` plus the bar forming so far from the file's finer bars. Asks come every ``--every``
of market time (epoch-aligned, so every bar close of the timeframe is an ask). ``--part first|second`` keeps the
asks of one half of the span (the bars before still serve as history): tune on one half, report on the other.

The service, simulated. One request in flight per symbol: an ask finds the cache first (its clock is market time);
on a miss the model is called, and its answer lands ``latency`` later (``--judge rules``: the offline rules stand
in for the model, with a latency drawn from U(``--latency``), 2..8 s by default, fixed per state so every setting
compared sees the same draws; ``--judge local``: the embedded model as the terminal starts it, its measured
latency). Asks arriving while a call is in flight are coalesced: when the call lands its answer is stored and
shown, and one follow-up is asked from the state at that moment (cache first again). The TTL is the terminal's
(``cache_ttl_s`` 75 s at the 1m decision timeframe), scaled with the timeframe (``--ttl`` sets it).

Counting. ``asks``: one per ask instant. ``calls_saved`` = 1 - model calls / asks (the share of asks answered
without a model call of their own: served by the cache, or coalesced into a call already made). ``agreement``: of
the answers the cache served (asks and follow-ups), the share whose action equals the fresh answer for the same
state (rules: every one; local: a sample, ``--audit-every``, asked fresh, reported with its n);
``agreement_non_hold`` over those whose fresh action is not HOLD. ``screen_agreement``: at every ask instant,
whether the decision on screen equals the fresh answer now (what the trader acts from, latency included; rules only).
``decision_age``: at every ask instant, just before that ask is answered, the market time since the state of the
decision on screen: the oldest it gets (a served answer stands for the state it was served for and is on screen at
once; between asks the age runs from 0 up to this); ``answer_age``: since the state the model actually answered.
``model_calls_per_hour`` is per hour of market time, one symbol.

Baselines in the same run: no cache (every ask not coalesced calls the model), an exact-match cache (prompt digest)
and the seed design (relative buckets). ``--sweep`` prints the trade-off curve over the price band
(``price_band_atr``) and a scale on the tolerances of the price-move features (``tolerances_for(timeframe)``;
``--other-scale`` scales rsi, volume_ratio and spread_bps, by default alike); ``--band`` and ``--tolerance-scale``
evaluate one setting.

    .venv/bin/python scripts/bench_cache.py --data REC.gz ... [--symbol S] [--timeframe 1m] [--every 5s] [--json]
    .venv/bin/python scripts/bench_cache.py --candles FILE --timeframe 1h --every 5m --part first --sweep
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import math
import platform
import random
import re
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.llm import prompt  # noqa: E402
from app.llm.cache import (  # noqa: E402
    DEFAULT_PRICE_BAND_ATR,
    DEFAULT_SIGN_FEATURES,
    PRICE_MOVE_FEATURES,
    CacheLookup,
    DecisionCache,
    timeframe_seconds,
    tolerances_for,
)
from app.llm.providers import offline_rules  # noqa: E402
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta  # noqa: E402
from app.market.adapters import ParseError, binance  # noqa: E402
from app.market.candle_files import candle_timeframe, load_candles, states_at_cadence  # noqa: E402
from app.market.candles import TIMEFRAMES  # noqa: E402
from app.market.features import FEATURE_NAMES, MarketState, states_from_recording  # noqa: E402
from app.market.recording import iter_frames  # noqa: E402
from app.models import Trade  # noqa: E402

TTL_AT_1M_S = 75.0  # the terminal's cache_ttl_s, for its 1m decision timeframe
LATENCY_S = (2.0, 8.0)
SWEEP_BANDS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, math.inf)
SWEEP_SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
RULES_MODEL = "offline-rules"


def parse_duration_ms(text: str) -> int:
    """``5s``, ``1m``, ``5m``, ``1h``, or plain seconds -> ms."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 5s, 1m, 1h)")
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}[m.group(2)]
    ms = round(float(m.group(1)) * unit)
    if ms <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return ms


# ----- the states the simulation walks through --------------------------------------------------------------------
@dataclass
class Grid:
    """Market states on a fine grid of market time; ``ask`` marks the ask instants."""

    source: list[str]
    symbol: str
    timeframe: str
    every_ms: int
    states: list[MarketState]
    times: np.ndarray = field(init=False)
    ask: np.ndarray = field(init=False)
    digests: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.times = np.array([s.exchange_ms for s in self.states], dtype=np.int64)
        self.ask = self.times % self.every_ms == 0
        self.digests = [prompt.digest(prompt.render(s)) for s in self.states]

    def part(self, which: str) -> Grid:
        """The states from the first to the last ask instant of one half of the asks (by time)."""
        asks = self.times[self.ask]
        if which == "all" or asks.size < 2:
            return self
        mid = int(asks[asks.size // 2])
        lo, hi = (int(asks[0]), mid) if which == "first" else (mid, int(asks[-1]) + 1)
        keep = [i for i, t in enumerate(self.times.tolist()) if lo <= t < hi]
        out = Grid(self.source, self.symbol, self.timeframe, self.every_ms, [self.states[i] for i in keep])
        return out

    @property
    def asks(self) -> int:
        return int(self.ask.sum())

    @property
    def span_ms(self) -> int:
        asks = self.times[self.ask]
        return int(asks[-1] - asks[0]) + self.every_ms if asks.size else 0


def busiest_symbol(paths: Sequence[Path]) -> str:
    """The symbol with the most trades in the recording."""
    counts: Counter[str] = Counter()
    for p in paths:
        for recv_ns, raw in iter_frames(p):
            try:
                events = binance.parse(raw, recv_ns or 0)
            except ParseError:
                continue
            counts.update(ev.symbol.upper() for ev in events if isinstance(ev, Trade))
    if not counts:
        raise SystemExit(f"no trades in {', '.join(p.name for p in paths)}")
    return counts.most_common(1)[0][0]


def grid_from_recording(paths: Sequence[Path], symbol: str | None, timeframe: str, every_ms: int) -> Grid:
    symbol = (symbol or busiest_symbol(paths)).upper()
    step = math.gcd(every_ms, 1000)
    states = list(states_from_recording([str(p) for p in paths], symbol=symbol, timeframe=timeframe, every_ms=step))
    return Grid([p.name for p in paths], symbol, timeframe, every_ms, states)


def grid_from_candles(path: Path, symbol: str | None, timeframe: str, every_ms: int) -> Grid:
    candles = load_candles(path)
    if candles.skipped:
        print(f"{candles.name}: skipped {candles.skip_report()}", file=sys.stderr)
    bar = TIMEFRAMES[candle_timeframe(candles.rows)]
    if every_ms % bar:  # the file cannot say where the price was between its bars
        raise SystemExit(f"--every {every_ms / 1000:g} s is not a multiple of the file's {bar // 1000:g} s bars: "
                         f"asks can only fall on its bar closes")
    symbol = symbol or path.stem.split("_")[0].upper()
    states = list(states_at_cadence(candles.rows, symbol=symbol, timeframe=timeframe, every_ms=bar))
    return Grid([candles.name], symbol, timeframe, every_ms, states)


# ----- judges: who answers a model call, and what a fresh answer would have been -------------------------------------
class RulesJudge:
    """The offline rules stand in for the model: every fresh answer is known; latency drawn per state."""

    name = "rules"
    model = RULES_MODEL

    def __init__(self, grid: Grid, latency: tuple[float, float], seed: int) -> None:
        rng = random.Random(seed)
        self.latency_s = [rng.uniform(*latency) for _ in grid.states]
        self.bodies: list[DecisionBody] = [offline_rules(s) for s in grid.states]

    def call(self, i: int, state: MarketState) -> tuple[Decision, float]:
        lat = self.latency_s[i]
        meta = DecisionMeta(provider="offline", model=RULES_MODEL, prompt_version=prompt.PROMPT_VERSION,
                            latency_ms=lat * 1000.0, cache_status=CacheStatus.MISS)
        return Decision.about(state, self.bodies[i], meta), lat

    def fresh(self, i: int, state: MarketState, served_n: int) -> Action | None:
        return self.bodies[i].action

    def close(self) -> None:
        pass


class LocalJudge:
    """The embedded model, started as scripts/bench_model.py starts it (the terminal's client, sampling, schema and
    confidence floor). A call costs seconds, so agreement is judged on every ``audit_every``-th served answer."""

    name = "local"

    def __init__(self, threads: int, timeout_s: float, audit_every: int) -> None:
        from app.llm import local

        local.find_weights()  # LocalModelUnavailable (a sentence) when it is not installed
        self._local = local
        self.loop = asyncio.new_event_loop()
        self.process = local.LocalModelProcess(threads=threads)
        url = self.loop.run_until_complete(self.process.start())
        self.provider = local.local_client(url, self.process.api_key, timeout_s=timeout_s)
        self.model = local.MODEL_ALIAS
        self.audit_every = audit_every
        self.calls = 0

    def _decide(self, state: MarketState) -> tuple[Decision, float]:
        t0 = time.perf_counter()
        d = self.loop.run_until_complete(self.provider.decide(state))
        self.calls += 1
        return self._local.floor_confidence(d), time.perf_counter() - t0

    def call(self, i: int, state: MarketState) -> tuple[Decision, float]:
        return self._decide(state)

    def fresh(self, i: int, state: MarketState, served_n: int) -> Action | None:
        if served_n % self.audit_every:
            return None
        d, _ = self._decide(state)
        return d.body.action if d.body is not None else None

    def close(self) -> None:
        self.loop.run_until_complete(self.provider.aclose())
        self.loop.run_until_complete(self.process.stop())
        self.loop.close()


Judge = RulesJudge | LocalJudge


# ----- the caches under test ----------------------------------------------------------------------------------------
class Policy:
    """lookup -> (action served, status, the served answer's own state time) or None; store when a call lands."""

    def lookup(self, i: int, state: MarketState, digest: str) -> tuple[Action, CacheStatus, int] | None:
        raise NotImplementedError

    def store(self, i: int, state: MarketState, digest: str, decision: Decision) -> None:
        raise NotImplementedError


class NoCache(Policy):
    def lookup(self, i: int, state: MarketState, digest: str) -> tuple[Action, CacheStatus, int] | None:
        return None

    def store(self, i: int, state: MarketState, digest: str, decision: Decision) -> None:
        pass


class Ours(Policy):
    def __init__(self, clock: list[float], model: str, **kw: Any) -> None:
        self.cache = DecisionCache(clock=lambda: clock[0], audit_rate=0.0, **kw)
        self.model = model
        self.last: CacheLookup | None = None

    def lookup(self, i: int, state: MarketState, digest: str) -> tuple[Action, CacheStatus, int] | None:
        got = self.cache.lookup(state, model=self.model, prompt_version=prompt.PROMPT_VERSION, prompt_digest=digest)
        self.last = got
        if got is None or got.stored.body is None:
            return None
        return got.stored.body.action, got.status, got.stored.state_ms

    def store(self, i: int, state: MarketState, digest: str, decision: Decision) -> None:
        self.cache.store(state, model=self.model, prompt_version=prompt.PROMPT_VERSION, prompt_digest=digest,
                         decision=decision)


class Exact(Policy):
    """The exact-match baseline: the prompt digest, with the same TTL."""

    def __init__(self, clock: list[float], ttl_s: float) -> None:
        self.clock, self.ttl_s = clock, ttl_s
        self.entries: dict[str, tuple[Action, float, int]] = {}

    def lookup(self, i: int, state: MarketState, digest: str) -> tuple[Action, CacheStatus, int] | None:
        got = self.entries.get(digest)
        return (got[0], CacheStatus.HIT, got[2]) if got is not None and got[1] > self.clock[0] else None

    def store(self, i: int, state: MarketState, digest: str, decision: Decision) -> None:
        assert decision.body is not None
        self.entries[digest] = (decision.body.action, self.clock[0] + self.ttl_s, decision.state_ms)


class Seed(Policy):
    """The design the cache replaced: bucket = round(value / (abs(value) * tol)), i.e. one bucket per sign."""

    def __init__(self, clock: list[float], tolerances: Mapping[str, float], ttl_s: float) -> None:
        self.clock, self.ttl_s = clock, ttl_s
        self.tol = [tolerances[n] for n in FEATURE_NAMES]
        self.entries: dict[tuple[int, ...], tuple[Action, float, int]] = {}

    def key(self, state: MarketState) -> tuple[int, ...]:
        out = [round(v / (abs(v) * t)) if v != 0.0 else 0 for v, t in zip(state.features(), self.tol, strict=True)]
        return (*out, state.position is state.position.FLAT)

    def lookup(self, i: int, state: MarketState, digest: str) -> tuple[Action, CacheStatus, int] | None:
        got = self.entries.get(self.key(state))
        return (got[0], CacheStatus.SIMILAR, got[2]) if got is not None and got[1] > self.clock[0] else None

    def store(self, i: int, state: MarketState, digest: str, decision: Decision) -> None:
        assert decision.body is not None
        self.entries[self.key(state)] = (decision.body.action, self.clock[0] + self.ttl_s, decision.state_ms)


# ----- the service, simulated -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    asks: int = 0
    hits: int = 0  # served by the prompt digest (asks and follow-ups)
    similar: int = 0  # served within tolerance and band
    coalesced: int = 0  # asks that arrived while a call was in flight
    follow_ups: int = 0
    model_calls: int = 0
    judged: int = 0  # served answers compared with a fresh answer
    agree: int = 0
    judged_non_hold: int = 0
    agree_non_hold: int = 0
    screen_judged: int = 0
    screen_agree: int = 0
    span_ms: int = 0
    bar_ms: int = 0
    ages_ms: list[int] = field(default_factory=list)
    answer_ages_ms: list[int] = field(default_factory=list)
    lookup_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        hours = self.span_ms / 3_600_000
        served = self.hits + self.similar
        return {
            "asks": self.asks,
            "calls_saved": 1.0 - self.model_calls / self.asks if self.asks else 0.0,
            "agreement": self.agree / self.judged if self.judged else None,
            "agreement_non_hold": self.agree_non_hold / self.judged_non_hold if self.judged_non_hold else None,
            "served": served,
            "hits": self.hits,
            "similar": self.similar,
            "coalesced": self.coalesced,
            "follow_ups": self.follow_ups,
            "model_calls": self.model_calls,
            "served_judged": self.judged,
            "served_non_hold": self.judged_non_hold,
            "screen_agreement": self.screen_agree / self.screen_judged if self.screen_judged else None,
            "model_calls_per_hour": self.model_calls / hours if hours else None,
            "model_calls_per_bar": self.model_calls / (self.span_ms / self.bar_ms) if self.span_ms else None,
            "decision_age_p50_s": _pct(self.ages_ms, 50, 1e-3),
            "decision_age_p99_s": _pct(self.ages_ms, 99, 1e-3),
            "answer_age_p50_s": _pct(self.answer_ages_ms, 50, 1e-3),
            "answer_age_p99_s": _pct(self.answer_ages_ms, 99, 1e-3),
            "replay_lookup_p50_us": _pct(self.lookup_ns, 50, 1e-3),
            "replay_lookup_p99_us": _pct(self.lookup_ns, 99, 1e-3),
        }


def _pct(values: Sequence[float], q: float, unit: float = 1.0) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) * unit if len(values) else None


@dataclass
class _Flight:
    land_ms: int
    index: int
    decision: Decision


def simulate(grid: Grid, policy: Policy, judge: Judge, clock: list[float], *, max_asks: int | None = None) -> Outcome:
    """Walk the grid in market time as the service would (module docstring)."""
    out = Outcome(span_ms=grid.span_ms, bar_ms=TIMEFRAMES[grid.timeframe])
    times = grid.times.tolist()
    flight: _Flight | None = None
    follow_up = False
    screen: tuple[Action, int, int] | None = None  # action, state time it stands for, state time of the answer
    timer = time.perf_counter_ns

    def ask(i: int, now_ms: int) -> None:
        nonlocal flight, screen
        clock[0] = now_ms / 1000.0
        state, digest = grid.states[i], grid.digests[i]
        t0 = timer()
        got = policy.lookup(i, state, digest)
        out.lookup_ns.append(timer() - t0)
        if got is None:
            out.model_calls += 1
            decision, latency_s = judge.call(i, state)
            flight = _Flight(now_ms + max(1, round(latency_s * 1000)), i, decision)
            return
        action, status, answered_ms = got
        if status is CacheStatus.HIT:
            out.hits += 1
        else:
            out.similar += 1
        screen = (action, state.exchange_ms, answered_ms)
        fresh = judge.fresh(i, state, out.hits + out.similar - 1)
        if fresh is not None:
            out.judged += 1
            out.agree += action is fresh
            if fresh is not Action.HOLD:
                out.judged_non_hold += 1
                out.agree_non_hold += action is fresh

    for i, t in enumerate(times):
        while flight is not None and flight.land_ms <= t:
            landed, flight = flight, None
            clock[0] = landed.land_ms / 1000.0
            st = grid.states[landed.index]
            policy.store(landed.index, st, grid.digests[landed.index], landed.decision)
            if landed.decision.body is not None:
                screen = (landed.decision.body.action, st.exchange_ms, st.exchange_ms)
            if follow_up:  # from the newest state at the landing: this instant's, or the one before it
                follow_up = False
                out.follow_ups += 1
                ask(i if t == landed.land_ms else max(0, i - 1), landed.land_ms)
        if not grid.ask[i]:
            continue
        if max_asks is not None and out.asks >= max_asks:
            out.span_ms = out.asks * grid.every_ms
            break
        out.asks += 1
        if screen is not None:  # what the trader has seen until now: the oldest it gets before this ask's answer
            out.ages_ms.append(t - screen[1])
            out.answer_ages_ms.append(t - screen[2])
        if flight is not None:
            out.coalesced += 1
            follow_up = True
        else:
            ask(i, t)
        if screen is not None and isinstance(judge, RulesJudge):  # what the trader acts from once it is answered
            out.screen_judged += 1
            out.screen_agree += screen[0] is judge.bodies[i].action
    return out


def run_ours(grid: Grid, judge: Judge, *, tolerances: Mapping[str, float] | None, band: float, ttl_s: float,
             max_asks: int | None = None) -> Outcome:
    clock = [0.0]
    return simulate(grid, Ours(clock, judge.model, tolerances=tolerances, price_band_atr=band, ttl_s=ttl_s), judge,
                    clock, max_asks=max_asks)


def run_baseline(grid: Grid, judge: Judge, make: Callable[[list[float]], Policy]) -> Outcome:
    clock = [0.0]
    return simulate(grid, make(clock), judge, clock)


# ----- lookup time and memory (the cache alone) ---------------------------------------------------------------------
def ask_states(grid: Grid) -> list[tuple[MarketState, str]]:
    return [(grid.states[i], grid.digests[i]) for i in np.flatnonzero(grid.ask)]


def stored_decision(state: MarketState, model: str) -> Decision:
    meta = DecisionMeta(provider="offline", model=model, prompt_version=prompt.PROMPT_VERSION, latency_ms=4000.0,
                        cache_status=CacheStatus.MISS)
    return Decision.about(state, offline_rules(state), meta)


DENSE_ENTRIES = 5000  # DecisionCache's max_entries: the most answers the terminal keeps alive at once


def dense_lookup(grid: Grid, runs: int, tolerances: Mapping[str, float] | None, band: float,
                 entries: int = DENSE_ENTRIES) -> dict[str, Any]:
    """p50/p99 of a lookup (µs, median over runs) in a cache holding ``entries`` live answers at once.

    The ask states are stored in order with their own prompt digests (a prompt seen again replaces its answer, as
    in the terminal) until ``entries`` answers are alive; the clock stands still and the TTL is endless, so none
    expires, and ``max_entries`` is ``entries``, so none is evicted (both checked, and ``live_entries`` is counted
    after the timing). Then every ask state stored is looked up with a digest that never matches, so every lookup
    searches its bar (a HIT by digest costs a dict lookup). ``lookup_p99_us`` is the median over runs of each
    run's p99; ``lookup_p99_steady_us`` is the p99 over the lookups of each one's median time over the runs (the
    same lookups in the same order every run): what the code costs, without the other processes of a busy machine
    (a preempted lookup is slow in one run, not in most). GC collections during the timed lookups are counted: a
    p99 made of collector pauses would say so. ``dense_answers`` counts the answers (SIMILAR / MISS) and
    ``dense_answers_sha`` fingerprints every one (status, the answer served, its distance): the same figures from
    two versions of the cache mean the same answers to the same asks."""
    asks = ask_states(grid)
    decisions = [stored_decision(s, RULES_MODEL) for s, _ in asks]
    p50, p99 = [], []
    per_run: list[list[int]] = []
    timer = time.perf_counter_ns
    collections = [0]

    def count_collections(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[0] += 1

    live = stored = 0
    fingerprint = hashlib.sha256()
    answers: Counter[str] = Counter()
    for run in range(runs):
        cache = DecisionCache(tolerances, clock=lambda: 0.0, ttl_s=1e9, max_ttl_s=1e9, audit_rate=0.0,
                              max_entries=entries, price_band_atr=band)
        stored = 0
        for (s, d), dec in zip(asks, decisions, strict=True):
            if len(cache) >= entries:
                break
            cache.store(s, model=RULES_MODEL, prompt_version=prompt.PROMPT_VERSION, prompt_digest=d, decision=dec)
            stored += 1
        ns = []
        gc.callbacks.append(count_collections)
        try:
            for s, _ in asks[:stored]:
                t0 = timer()
                cache.lookup(s, model=RULES_MODEL, prompt_version=prompt.PROMPT_VERSION, prompt_digest="probe")
                ns.append(timer() - t0)
        finally:
            gc.callbacks.remove(count_collections)
        live = len(cache)
        st = cache.stats
        if st.expired or st.evicted:
            raise SystemExit(f"dense timing: {st.expired} expired and {st.evicted} evicted; it must hold them all")
        p50.append(_pct(ns, 50, 1e-3))
        p99.append(_pct(ns, 99, 1e-3))
        per_run.append(ns)
        if run == 0:  # the answers, again (nothing changed but the served order, which no answer depends on)
            for s, _ in asks[:stored]:
                got = cache.lookup(s, model=RULES_MODEL, prompt_version=prompt.PROMPT_VERSION, prompt_digest="probe")
                answers["MISS" if got is None else got.status.value] += 1
                fingerprint.update(b"-" if got is None else
                                   f"{got.status.value} {got.stored.state_ms} {got.distance!r};".encode())
    if live < entries:
        print(f"dense timing: only {live} different prompts in {', '.join(grid.source)} "
              f"(asked for {entries} live answers)", file=sys.stderr)
    steady = np.median(np.array(per_run, dtype=float), axis=0)  # each lookup's own time, the median over runs
    return {"live_entries": live, "dense_lookups": stored, "lookup_p50_us": statistics.median(p50),
            "lookup_p99_us": statistics.median(p99), "lookup_p50_steady_us": _pct(steady, 50, 1e-3),
            "lookup_p99_steady_us": _pct(steady, 99, 1e-3), "lookup_gc_collections": collections[0] / max(1, runs),
            "dense_answers": dict(answers), "dense_answers_sha": fingerprint.hexdigest()[:16]}


def bytes_per_entry(grid: Grid, tolerances: Mapping[str, float] | None, band: float) -> dict[str, float]:
    """tracemalloc: the cache's own structures per entry, and the stored Decision objects per entry."""
    asks = ask_states(grid)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    decisions = [stored_decision(s, RULES_MODEL) for s, _ in asks]
    after_decisions = tracemalloc.get_traced_memory()[0]
    cache = DecisionCache(tolerances, clock=lambda: 0.0, ttl_s=1e9, max_ttl_s=1e9, audit_rate=0.0,
                          max_entries=len(asks) + 1, price_band_atr=band)
    before = tracemalloc.get_traced_memory()[0]
    for (s, d), dec in zip(asks, decisions, strict=True):
        cache.store(s, model=RULES_MODEL, prompt_version=prompt.PROMPT_VERSION, prompt_digest=d, decision=dec)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = max(1, len(asks))
    index, decision = (after - before) / n, (after_decisions - base) / n
    return {"bytes_per_entry": index + decision, "index_bytes_per_entry": index, "decision_bytes": decision}


def ask_step_shape(grid: Grid) -> dict[str, float]:
    """Mean |change| of each feature between consecutive asks: how far a feature moves at this cadence."""
    feats = np.array([s.features() for s, _ in ask_states(grid)])
    steps = np.abs(np.diff(feats, axis=0)).mean(axis=0) if len(feats) > 1 else np.zeros(len(FEATURE_NAMES))
    return dict(zip(FEATURE_NAMES, map(float, steps), strict=True))


# ----- the command line -----------------------------------------------------------------------------------------
def fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "inf"
    return str(v)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", type=Path, help="Binance recording file(s) of one session, in order")
    src.add_argument("--candles", type=Path, help="a candle file (JSON rows or CSV)")
    ap.add_argument("--symbol", help="recordings: which symbol (default: the one with most trades); candles: its name")
    ap.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES), help="decision timeframe (default 1m)")
    ap.add_argument("--every", type=parse_duration_ms, default=5000,
                    help="ask cadence in market time, e.g. 5s, 1m, 5m (default 5s, the terminal's decision_interval_s)")
    ap.add_argument("--part", choices=("all", "first", "second"), default="all", help="which half of the asks")
    ap.add_argument("--judge", choices=("rules", "local"), default="rules",
                    help="who answers the model calls: the offline rules, or the embedded local model")
    ap.add_argument("--latency", nargs=2, type=float, default=LATENCY_S, metavar=("LO", "HI"),
                    help="rules: a model call's latency, uniform in [LO, HI] s (default 2 8)")
    ap.add_argument("--ttl", type=float,
                    help="cache_ttl_s: the TTL at 1m bars, which the cache scales to the timeframe (default 75)")
    ap.add_argument("--band", type=float, default=DEFAULT_PRICE_BAND_ATR,
                    help=f"price_band_atr (default {DEFAULT_PRICE_BAND_ATR:g}; inf turns the band off)")
    ap.add_argument("--tolerance-scale", type=float, default=1.0,
                    help="multiply the tolerances of the price-move features (PRICE_MOVE_FEATURES) by this")
    ap.add_argument("--other-scale", type=float,
                    help="multiply the other tolerances (rsi, volume_ratio, spread_bps) by this (default: the same)")
    ap.add_argument("--sweep", action="store_true", help="the trade-off curve over band x tolerance scale")
    ap.add_argument("--max-asks", type=int, help="stop after this many asks (the local model costs seconds a call)")
    ap.add_argument("--audit-every", type=int, default=5, help="local: judge every n-th served answer (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="local: threads of the embedded model")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of the dense lookup timing (median reported)")
    ap.add_argument("--dense-entries", type=int, default=DENSE_ENTRIES,
                    help=f"live answers in the cache for the dense lookup timing (default {DENSE_ENTRIES}, the "
                         f"cache's max_entries; a file with fewer different prompts gives fewer, and says so)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the simulated model latencies")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return ap


def load_grid(args: argparse.Namespace) -> Grid:
    paths = args.data or [args.candles]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"input not found: {', '.join(missing)}")
    if args.data:
        grid = grid_from_recording(args.data, args.symbol, args.timeframe, args.every)
    else:
        grid = grid_from_candles(args.candles, args.symbol, args.timeframe, args.every)
    grid = grid.part(args.part)
    if grid.asks < 2:
        raise SystemExit(f"fewer than 2 asks in {', '.join(grid.source)} at {args.timeframe} every "
                         f"{args.every / 1000:g} s ({len(grid.states)} states)")
    return grid


def tolerances(timeframe: str, scale: float, other: float | None = None) -> dict[str, float]:
    """The cache's defaults for ``timeframe``, price moves times ``scale``, the others times ``other``."""
    other = scale if other is None else other
    return {n: v * (scale if n in PRICE_MOVE_FEATURES else other) for n, v in tolerances_for(timeframe).items()}


def sweep(grid: Grid, judge: Judge, ttl_s: float, other: float | None) -> list[dict[str, Any]]:
    rows = []
    for band in SWEEP_BANDS:
        for scale in SWEEP_SCALES:
            tol = tolerances(grid.timeframe, scale, other)
            s = run_ours(grid, judge, tolerances=tol, band=band, ttl_s=ttl_s).summary()
            rows.append({"band": band, "scale": scale, **s})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    grid = load_grid(args)
    ttl_s = args.ttl if args.ttl is not None else TTL_AT_1M_S  # the cache scales it to the timeframe
    bar_ttl_s = ttl_s * (timeframe_seconds(args.timeframe) or 60.0) / 60.0  # the same, for the baselines
    if args.judge == "local":
        if args.sweep:
            raise SystemExit("--sweep needs --judge rules (the local model costs seconds per call)")
        try:
            judge: Judge = LocalJudge(args.threads, 60.0, args.audit_every)
        except Exception as exc:  # not installed, or it would not start: say so, no traceback
            print(f"the local model cannot run here: {exc}", file=sys.stderr)
            return 3
    else:
        judge = RulesJudge(grid, tuple(args.latency), args.seed)
    try:
        tol = tolerances(args.timeframe, args.tolerance_scale, args.other_scale)
        ours = run_ours(grid, judge, tolerances=tol, band=args.band, ttl_s=ttl_s, max_asks=args.max_asks)
        baselines: dict[str, Outcome] = {}
        if isinstance(judge, RulesJudge):
            baselines = {
                "none": run_baseline(grid, judge, lambda c: NoCache()),
                "exact (prompt digest)": run_baseline(grid, judge, lambda c: Exact(c, bar_ttl_s)),
                "seed (relative bucket)": run_baseline(grid, judge, lambda c: Seed(c, tol, bar_ttl_s)),
            }
    finally:
        judge.close()
    o = ours.summary()
    fresh_non_hold = (sum(judge.bodies[i].action is not Action.HOLD for i in np.flatnonzero(grid.ask))
                      if isinstance(judge, RulesJudge) else None)
    result: dict[str, Any] = {
        "source": grid.source, "symbol": grid.symbol, "part": args.part, "timeframe": args.timeframe,
        "every_s": args.every / 1000, "judge": judge.name, "model": judge.model, "ttl_s": ttl_s,
        "price_band_atr": args.band, "tolerance_scale": args.tolerance_scale,
        "other_scale": args.tolerance_scale if args.other_scale is None else args.other_scale, "tolerances": tol,
        "sign_features": list(DEFAULT_SIGN_FEATURES), "span_h": ours.span_ms / 3.6e6,
        "bars": ours.span_ms / TIMEFRAMES[args.timeframe], "fresh_non_hold": fresh_non_hold,
        **o,
        **{f"{k}_{name.split()[0]}": v for name, b in baselines.items() for k, v in b.summary().items()
           if k in ("calls_saved", "agreement", "agreement_non_hold", "screen_agreement", "model_calls_per_hour",
                    "decision_age_p50_s", "decision_age_p99_s")},
        **dense_lookup(grid, args.runs, tol, args.band, args.dense_entries),
        **bytes_per_entry(grid, tol, args.band),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    if args.judge == "local":
        result["agreement_sample"] = f"every {args.audit_every}th served answer, asked fresh"
    if args.sweep:
        result["ask_step_shape"] = ask_step_shape(grid)
        result["sweep"] = sweep(grid, judge, ttl_s, args.other_scale)
    if args.json:
        print(json.dumps(result))
        return 0
    print_report(result, ours, baselines)
    return 0


def print_report(r: Mapping[str, Any], ours: Outcome, baselines: Mapping[str, Outcome]) -> None:
    print(f"DecisionCache on {', '.join(r['source'])} [{r['part']}], {r['symbol']}, {r['timeframe']} bars asked every "
          f"{r['every_s']:g} s: {r['asks']} asks over {r['span_h']:.2f} h ({r['bars']:.0f} bars); judge {r['judge']}; "
          f"TTL {r['ttl_s']:g} s at 1m bars; band {fmt(r['price_band_atr'], 2)} ATR; "
          f"tolerances x{r['tolerance_scale']:g} (price moves), x{r['other_scale']:g} (others)")
    if r["fresh_non_hold"] is not None:
        print(f"fresh answers other than HOLD at {r['fresh_non_hold']} of the asks")
    if r.get("agreement_sample"):
        print(f"agreement judged on a sample: {r['agreement_sample']} (n = {r['served_judged']})")
    print()
    print("| cache | calls saved | agreement | non-HOLD (n) | on screen agrees | calls/h | age p50 / p99 s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, out in [("similarity (ours)", ours), *baselines.items()]:
        s = out.summary()
        print(f"| {name} | {fmt(s['calls_saved'])} | {fmt(s['agreement'])} | {fmt(s['agreement_non_hold'])} "
              f"({s['served_non_hold']}) | {fmt(s['screen_agreement'])} | {fmt(s['model_calls_per_hour'], 1)} | "
              f"{fmt(s['decision_age_p50_s'], 1)} / {fmt(s['decision_age_p99_s'], 1)} |")
    print()
    print(f"ours: {r['hits']} HIT + {r['similar']} SIMILAR served, {r['coalesced']} asks coalesced into "
          f"{r['follow_ups']} follow-ups, {r['model_calls']} model calls ({fmt(r['model_calls_per_bar'], 2)} per bar); "
          f"answer age on screen p50 {fmt(r['answer_age_p50_s'], 1)} s, p99 {fmt(r['answer_age_p99_s'], 1)} s")
    print(f"lookup p50 / p99 {fmt(r['replay_lookup_p50_us'], 1)} / {fmt(r['replay_lookup_p99_us'], 1)} µs in the run; "
          f"dense ({r['live_entries']} live answers, {r['dense_lookups']} lookups that search, "
          f"{r['lookup_gc_collections']:.1f} GC collections a run) p50 {fmt(r['lookup_p50_us'], 1)} µs, "
          f"p99 {fmt(r['lookup_p99_us'], 1)} µs (steady {fmt(r['lookup_p99_steady_us'], 1)} µs); "
          f"answers {r['dense_answers']} ({r['dense_answers_sha']}); "
          f"{r['bytes_per_entry']:.0f} B per entry ({r['index_bytes_per_entry']:.0f} B the index)")
    if "sweep" in r:
        print("\nMean |change| of each feature between consecutive asks:")
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in r["ask_step_shape"].items()))
        print("\n| band ATR | tol x | calls saved | agreement | non-HOLD (n) | on screen agrees | calls/h | "
              "age p50 / p99 s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in r["sweep"]:
            print(f"| {fmt(s['band'], 2)} | {s['scale']:g} | {fmt(s['calls_saved'])} | {fmt(s['agreement'])} | "
                  f"{fmt(s['agreement_non_hold'])} ({s['served_non_hold']}) | {fmt(s['screen_agreement'])} | "
                  f"{fmt(s['model_calls_per_hour'], 1)} | {fmt(s['decision_age_p50_s'], 1)} / "
                  f"{fmt(s['decision_age_p99_s'], 1)} |")


if __name__ == "__main__":
    sys.exit(main())
