#!/usr/bin/env python3
"""DecisionCache on a real market: calls saved, agreement with fresh answers, lookup time, memory, latency.

The real Binance BTCUSDT capture (../shared/data, both files as one session) is replayed through
``states_from_recording`` and a decision is asked for at every second of market time. ``offline_rules`` stands in
for the model, so the fresh answer at every request is known and every answer the cache serves can be judged
against the fresh answer *at the same moment* (never against the answer it was stored with). The cache's clock is
market time. A miss stores the fresh answer, as ``get_or_compute`` does.

Counting: every request counts once. ``calls_saved`` = (HIT + SIMILAR) / requests. ``agreement`` is over served
answers only (a miss is a fresh answer and agrees by definition): the share whose action equals the fresh action;
``agreement_non_hold`` over the served answers whose fresh action is not HOLD (a cache that misses trades); both
come with their counts, because consecutive seconds are strongly correlated and a few episodes decide them.

Latency: a model call costs a draw from U(2, 8) s; a served answer costs its measured lookup time. Delivery
agreement: a fresh answer arrives that many seconds after it was asked for, so it is compared with the fresh
answer at its arrival, as a served answer is compared with the fresh answer at its (instant) arrival.

Baselines in the same run: an exact-match cache (prompt digest) and the seed design (relative buckets
``round(value / (abs(value) * tol))`` on the same features, which maps every positive value to one bucket).

    .venv/bin/python scripts/bench_cache.py [--data FILE ...] [--timeframe 1s] [--runs 5] [--sweep] [--json]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.llm import prompt  # noqa: E402
from app.llm.cache import (  # noqa: E402
    DEFAULT_INDEX_FEATURES,
    DEFAULT_SIGN_FEATURES,
    CacheLookup,
    DecisionCache,
    tolerances_for,
)
from app.llm.providers import offline_rules  # noqa: E402
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta  # noqa: E402
from app.market.features import FEATURE_NAMES, MarketState, states_from_recording  # noqa: E402

CAPTURE = ROOT.parent / "shared" / "data" / "binance-spot-btcusdt-capture"
DEFAULT_DATA = [CAPTURE / "btcusdt_20240808.gz", CAPTURE / "btcusdt_20240809.gz"]
MODEL, PROMPT_VERSION = "offline-rules", prompt.PROMPT_VERSION
LATENCY_S = (2.0, 8.0)
TTL_S = 75.0
SWEEP_SCALES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)


@dataclass
class Request:
    state: MarketState
    digest: str
    fresh: DecisionBody
    decision: Decision  # the fresh answer as the model would return it (latency = the simulated draw)
    latency_s: float
    arrival: int  # index of the request current when a fresh answer asked now would arrive (-1: after the end)


@dataclass
class Replay:
    requests: int = 0
    hits: int = 0
    similar: int = 0
    served_agree: int = 0
    served_non_hold: int = 0
    served_non_hold_agree: int = 0
    latency_s: float = 0.0  # with the cache: misses pay the model, served answers their lookup time
    delivered: int = 0
    delivered_agree: int = 0
    lookup_ns: list[int] = field(default_factory=list)  # the search, every request
    served_ns: list[int] = field(default_factory=list)  # search + the annotated Decision, served requests

    @property
    def served(self) -> int:
        return self.hits + self.similar

    def summary(self) -> dict[str, float | int | None]:
        return {
            "calls_saved": self.served / self.requests if self.requests else 0.0,
            "agreement": self.served_agree / self.served if self.served else None,
            "agreement_non_hold": (self.served_non_hold_agree / self.served_non_hold if self.served_non_hold
                                   else None),
            "served": self.served,
            "hits": self.hits,
            "similar": self.similar,
            "served_non_hold": self.served_non_hold,
            "delivery_agreement": self.delivered_agree / self.delivered if self.delivered else None,
        }


# ----- the caches under test ---------------------------------------------------------------------------------
class Policy:
    """lookup -> (action served, status) or None; store on a miss. ``now`` is market time in seconds."""

    def lookup(self, req: Request, now: float) -> tuple[Action, CacheStatus] | None:
        raise NotImplementedError

    def store(self, req: Request, now: float) -> None:
        raise NotImplementedError

    def materialize(self) -> None:
        """Build what the caller receives for the last served answer (ours: the Decision with its cache meta)."""


class Ours(Policy):
    def __init__(self, clock: list[float], **kw: object) -> None:
        self.cache = DecisionCache(clock=lambda: clock[0], audit_rate=0.0, **kw)  # type: ignore[arg-type]
        self.last: CacheLookup | None = None

    def lookup(self, req: Request, now: float) -> tuple[Action, CacheStatus] | None:
        got = self.cache.lookup(req.state, model=MODEL, prompt_version=PROMPT_VERSION, prompt_digest=req.digest)
        self.last = got
        if got is None:
            return None
        assert got.stored.body is not None
        return got.stored.body.action, got.status

    def materialize(self) -> None:
        assert self.last is not None
        _ = self.last.decision

    def store(self, req: Request, now: float) -> None:
        self.cache.store(req.state, model=MODEL, prompt_version=PROMPT_VERSION, prompt_digest=req.digest,
                         decision=req.decision)


class Exact(Policy):
    """The exact-match baseline: the prompt digest, with the same TTL."""

    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self.entries: dict[str, tuple[Action, float]] = {}

    def lookup(self, req: Request, now: float) -> tuple[Action, CacheStatus] | None:
        got = self.entries.get(req.digest)
        return (got[0], CacheStatus.HIT) if got is not None and got[1] > now else None

    def store(self, req: Request, now: float) -> None:
        self.entries[req.digest] = (req.fresh.action, now + self.ttl_s)


class Seed(Policy):
    """The design this replaces: bucket = round(value / (abs(value) * tol)), i.e. one bucket per sign."""

    def __init__(self, tolerances: Mapping[str, float], ttl_s: float = TTL_S) -> None:
        self.tol = [tolerances[n] for n in FEATURE_NAMES]
        self.ttl_s = ttl_s
        self.entries: dict[tuple[int, ...], tuple[Action, float]] = {}

    def key(self, state: MarketState) -> tuple[int, ...]:
        out = []
        for v, t in zip(state.features(), self.tol, strict=True):
            out.append(round(v / (abs(v) * t)) if v != 0.0 else 0)
        return (*out, state.position is state.position.FLAT)

    def lookup(self, req: Request, now: float) -> tuple[Action, CacheStatus] | None:
        got = self.entries.get(self.key(req.state))
        return (got[0], CacheStatus.SIMILAR) if got is not None and got[1] > now else None

    def store(self, req: Request, now: float) -> None:
        self.entries[self.key(req.state)] = (req.fresh.action, now + self.ttl_s)


# ----- replay ------------------------------------------------------------------------------------------------
def load(paths: Sequence[Path], timeframe: str, seed: int) -> list[Request]:
    states = list(states_from_recording([str(p) for p in paths], timeframe=timeframe, every_ms=1000))
    rng = random.Random(seed)
    out: list[Request] = []
    n = len(states)
    for i, s in enumerate(states):
        body = offline_rules(s)
        latency = rng.uniform(*LATENCY_S)
        meta = DecisionMeta(provider="offline", model=MODEL, prompt_version=PROMPT_VERSION,
                            latency_ms=latency * 1000.0, cache_status=CacheStatus.MISS)
        d = Decision(symbol=s.symbol, timeframe=s.timeframe, state_ms=s.exchange_ms, body=body, meta=meta)
        j = i + math.floor(latency)
        out.append(Request(s, prompt.digest(prompt.render(s)), body, d, latency, j if j < n else -1))
    return out


def replay(requests: Sequence[Request], policy: Policy, clock: list[float] | None = None) -> Replay:
    r = Replay()
    clock = clock if clock is not None else [0.0]
    timer = time.perf_counter_ns
    for req in requests:
        now = req.state.exchange_ms / 1000.0
        clock[0] = now
        r.requests += 1
        t0 = timer()
        got = policy.lookup(req, now)
        dt = timer() - t0
        r.lookup_ns.append(dt)
        if got is not None:
            policy.materialize()
            dt = timer() - t0
            r.served_ns.append(dt)
        fresh = req.fresh.action
        if got is None:
            policy.store(req, now)
            r.latency_s += req.latency_s
            if req.arrival >= 0:
                r.delivered += 1
                r.delivered_agree += fresh is requests[req.arrival].fresh.action
            continue
        action, status = got
        if status is CacheStatus.HIT:
            r.hits += 1
        else:
            r.similar += 1
        agree = action is fresh
        r.served_agree += agree
        if fresh is not Action.HOLD:
            r.served_non_hold += 1
            r.served_non_hold_agree += agree
        r.latency_s += dt / 1e9  # the search and the annotated Decision
        r.delivered += 1
        r.delivered_agree += agree
    return r


def run_ours(requests: Sequence[Request], **kw: object) -> Replay:
    clock = [0.0]
    return replay(requests, Ours(clock, **kw), clock)


def no_cache_delivery(requests: Sequence[Request]) -> float:
    pairs = [(q.fresh.action is requests[q.arrival].fresh.action) for q in requests if q.arrival >= 0]
    return sum(pairs) / len(pairs)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def lookup_times(requests: Sequence[Request], runs: int, tolerances: Mapping[str, float] | None) -> dict[str, float]:
    """p50/p99 of lookup (µs), median over runs: the replay as it happens, and a dense cache holding every state
    of the session at once (no expiry) probed with a digest that never matches, so every lookup searches."""
    out: dict[str, list[float]] = {k: [] for k in ("lookup_p50_us", "lookup_p99_us", "served_p50_us",
                                                     "served_p99_us", "dense_lookup_p50_us", "dense_lookup_p99_us",
                                                     "dense_served_p99_us")}
    timer = time.perf_counter_ns
    for _ in range(runs):
        r = run_ours(requests, tolerances=tolerances)
        out["lookup_p50_us"].append(percentile(r.lookup_ns, 50) / 1e3)
        out["lookup_p99_us"].append(percentile(r.lookup_ns, 99) / 1e3)
        out["served_p50_us"].append(percentile(r.served_ns, 50) / 1e3 if r.served_ns else math.nan)
        out["served_p99_us"].append(percentile(r.served_ns, 99) / 1e3 if r.served_ns else math.nan)
        clock = [0.0]
        cache = DecisionCache(tolerances, clock=lambda c=clock: c[0], ttl_s=1e9, max_ttl_s=1e9, audit_rate=0.0,
                              max_entries=len(requests) + 1)
        for q in requests:
            cache.store(q.state, model=MODEL, prompt_version=PROMPT_VERSION, prompt_digest=q.digest,
                        decision=q.decision)
        ns, served = [], []
        for _rep in range(5):
            for q in requests:
                t0 = timer()
                got = cache.lookup(q.state, model=MODEL, prompt_version=PROMPT_VERSION, prompt_digest="probe")
                ns.append(timer() - t0)
                if got is not None:
                    _ = got.decision
                    served.append(timer() - t0)
        out["dense_lookup_p50_us"].append(percentile(ns, 50) / 1e3)
        out["dense_lookup_p99_us"].append(percentile(ns, 99) / 1e3)
        out["dense_served_p99_us"].append(percentile(served, 99) / 1e3)
    return {k: statistics.median(v) for k, v in out.items()} | {"dense_entries": len(requests)}


def bytes_per_entry(requests: Sequence[Request], tolerances: Mapping[str, float] | None) -> dict[str, float]:
    """tracemalloc: the cache's own structures per entry, and the stored Decision objects per entry."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    decisions = [q.decision.model_copy(deep=True) for q in requests]
    after_decisions = tracemalloc.get_traced_memory()[0]
    clock = [0.0]
    cache = DecisionCache(tolerances, clock=lambda: clock[0], ttl_s=1e9, max_ttl_s=1e9, audit_rate=0.0,
                          max_entries=len(requests) + 1)
    before = tracemalloc.get_traced_memory()[0]
    for q, d in zip(requests, decisions, strict=True):
        cache.store(q.state, model=MODEL, prompt_version=PROMPT_VERSION, prompt_digest=q.digest, decision=d)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = len(requests)
    index = (after - before) / n
    decision = (after_decisions - base) / n
    return {"bytes_per_entry": index + decision, "index_bytes_per_entry": index, "decision_bytes": decision}


def feature_table(requests: Sequence[Request], tolerances: Mapping[str, float]) -> list[dict[str, float | str]]:
    """Per feature: its mean 1 s change (the shape of the tolerances) and how selective a grid on it is: the mean
    share of the entries alive together (last TTL_S seconds) that a lookup's two probe cells would return."""
    feats = np.array([q.state.features() for q in requests])
    t = np.array([q.state.exchange_ms / 1000.0 for q in requests])
    rows = []
    for k, name in enumerate(FEATURE_NAMES):
        col = feats[:, k]
        step = np.abs(np.diff(col))
        cells = np.floor(col / (2.0 * tolerances[name]))
        lo = np.floor((col / tolerances[name] - 1.0) / 2.0)
        hi = np.floor((col / tolerances[name] + 1.0) / 2.0)
        shares = []
        for i in range(1, len(col)):
            alive = (t[:i] > t[i] - TTL_S)
            if alive.any():
                c = cells[:i][alive]
                shares.append(float(np.mean((c >= lo[i]) & (c <= hi[i]))))
        rows.append({"feature": name, "mean_1s_change": float(step.mean()), "median": float(np.median(col)),
                     "tolerance": tolerances[name], "probe_share": float(np.mean(shares)) if shares else 1.0})
    return rows


def sweep(requests: Sequence[Request], shape: Mapping[str, float]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for sign_features in (DEFAULT_SIGN_FEATURES, ()):
        for scale in SWEEP_SCALES:
            tol = {n: v * scale for n, v in shape.items()}
            s = run_ours(requests, tolerances=tol, sign_features=sign_features).summary()
            rows.append({"scale": scale, "sign": ",".join(sign_features) or "-", **s})
    return rows


def measured_shape(requests: Sequence[Request]) -> dict[str, float]:
    """Mean |1 s change| of each feature on this data: how far a feature usually moves between two requests."""
    feats = np.array([q.state.features() for q in requests])
    steps = np.abs(np.diff(feats, axis=0)).mean(axis=0)
    return {n: float(v) if v > 0 else 1e-6 for n, v in zip(FEATURE_NAMES, steps, strict=True)}


def fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", type=Path, default=DEFAULT_DATA,
                    help="recording file(s) of one session, in order (default: the Binance BTCUSDT capture)")
    ap.add_argument("--timeframe", default="1s")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of the lookup timing (median reported)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the simulated model latencies")
    ap.add_argument("--sweep", action="store_true", help="also print calls_saved / agreement per tolerance scale")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args()

    missing = [str(p) for p in args.data if not p.exists()]
    if missing:
        print(f"recorded data not found: {', '.join(missing)} (expected ../shared/data beside the project)",
              file=sys.stderr)
        return 2
    requests = load(args.data, args.timeframe, args.seed)
    if len(requests) < 2:
        print("the recording gives fewer than 2 states at 1 Hz", file=sys.stderr)
        return 2
    tol = None  # the cache's own defaults, scaled to the timeframe
    scaled_defaults = tolerances_for(args.timeframe)

    ours = run_ours(requests, tolerances=tol)
    exact = replay(requests, Exact())
    seed = replay(requests, Seed(scaled_defaults))
    timing = lookup_times(requests, args.runs, tol)
    memory = bytes_per_entry(requests, tol)
    n = len(requests)
    no_cache_latency = sum(q.latency_s for q in requests) / n
    o, e, s = ours.summary(), exact.summary(), seed.summary()
    fresh_non_hold = sum(q.fresh.action is not Action.HOLD for q in requests)
    # How often the fresh action equals the fresh action one request earlier: the ceiling of any reuse.
    lag1 = sum(a.fresh.action is b.fresh.action for a, b in itertools.pairwise(requests)) / (n - 1)
    result: dict[str, object] = {
        "data": [p.name for p in args.data],
        "timeframe": args.timeframe,
        "requests": n,
        "fresh_non_hold": fresh_non_hold,
        "fresh_lag1_agreement": lag1,
        "ttl_s": TTL_S,
        **o,
        **timing,
        **memory,
        "latency_no_cache_s": no_cache_latency,
        "latency_cache_s": ours.latency_s / n,
        "delivery_agreement_no_cache": no_cache_delivery(requests),
        "exact_calls_saved": e["calls_saved"],
        "exact_agreement": e["agreement"],
        "exact_agreement_non_hold": e["agreement_non_hold"],
        "seed_calls_saved": s["calls_saved"],
        "seed_agreement": s["agreement"],
        "seed_agreement_non_hold": s["agreement_non_hold"],
        "tolerances": scaled_defaults,
        "index_features": list(DEFAULT_INDEX_FEATURES),
        "sign_features": list(DEFAULT_SIGN_FEATURES),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    shape = measured_shape(requests)
    if args.sweep:
        result["shape"] = shape
        result["sweep"] = sweep(requests, shape)
        result["features"] = feature_table(requests, scaled_defaults)
    if args.json:
        print(json.dumps(result))
        return 0

    print(f"DecisionCache on {', '.join(p.name for p in args.data)}, {args.timeframe} bars, {n} requests at 1 Hz "
          f"of market time ({fresh_non_hold} with a fresh action other than HOLD), TTL {TTL_S:g} s default")
    print(f"the fresh action equals the one a second earlier in {lag1:.1%} of requests")
    print()
    print(f"| {'cache':<22} | calls saved | agreement | agreement non-HOLD (n) | delivery agreement |")
    print(f"|{'-' * 24}|------------:|----------:|-----------------------:|-------------------:|")
    rows: list[tuple[str, Mapping[str, object]]] = [("similarity (ours)", o), ("exact (prompt digest)", e),
                                                    ("seed (relative bucket)", s)]
    for name, r in rows:
        print(f"| {name:<22} | {fmt(r['calls_saved']):>11} | {fmt(r['agreement']):>9} | "
              f"{fmt(r['agreement_non_hold']):>15} ({r['served_non_hold']:>4}) | {fmt(r['delivery_agreement']):>18} |")
    print(f"| {'none':<22} | {'0.000':>11} | {'-':>9} | {'-':>22} | "
          f"{fmt(result['delivery_agreement_no_cache']):>18} |")
    print()
    print("| measure | value |")
    print("|---|---:|")
    for label, key, unit in [
        ("lookup p50 (replay)", "lookup_p50_us", "µs"),
        ("lookup p99 (replay)", "lookup_p99_us", "µs"),
        ("lookup + annotated Decision p50 (served)", "served_p50_us", "µs"),
        ("lookup + annotated Decision p99 (served)", "served_p99_us", "µs"),
        (f"lookup p50 (dense: {n} entries alive)", "dense_lookup_p50_us", "µs"),
        (f"lookup p99 (dense: {n} entries alive)", "dense_lookup_p99_us", "µs"),
        ("lookup + annotated Decision p99 (dense)", "dense_served_p99_us", "µs"),
        ("bytes per entry (index + Decision)", "bytes_per_entry", "B"),
        ("  of which the cache's index", "index_bytes_per_entry", "B"),
        ("mean decision latency, no cache", "latency_no_cache_s", "s"),
        ("mean decision latency, with cache", "latency_cache_s", "s"),
    ]:
        v = result[key]
        print(f"| {label} | {fmt(v, 1 if unit == 'B' else 2)} {unit} |")
    print(f"\nlookup: median of {args.runs} runs; latency: misses cost U{LATENCY_S} s, served answers their lookup")
    if args.sweep:
        print("\nTolerance shape: mean |1 s change| of each feature on this data; rows scale it.")
        print("| feature | mean 1 s change | median | default tolerance | probe share |")
        print("|---|---:|---:|---:|---:|")
        for f in result["features"]:  # type: ignore[union-attr]
            print(f"| {f['feature']} | {f['mean_1s_change']:.5g} | {f['median']:.5g} | {f['tolerance']:.5g} | "
                  f"{f['probe_share']:.3f} |")
        print("\n| scale | sign | calls saved | agreement | non-HOLD (n) | delivery agreement |")
        print("|---:|---|---:|---:|---:|---:|")
        for r in result["sweep"]:  # type: ignore[union-attr]
            print(f"| {r['scale']:g} | {r['sign']} | {fmt(r['calls_saved'])} | {fmt(r['agreement'])} | "
                  f"{fmt(r['agreement_non_hold'])} ({r['served_non_hold']}) | {fmt(r['delivery_agreement'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
