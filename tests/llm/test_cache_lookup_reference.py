"""DecisionCache.lookup answers exactly what a plain scan of every live answer answers (the definition in the
module docstring), on thousands of answers stored and asked at random on a lattice where distances land exactly on
the tolerance, values on cell edges and prices on the edge of their band, while answers expire. The search is
optimised (answers grouped by bar and closed-bar features, large groups measured with numpy): whatever it does,
it must serve the same answer, with the same status and distance, to every ask."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

import app.llm.cache as cache_module
from app.llm.cache import DEFAULT_INDEX_FEATURES, DEFAULT_SIGN_FEATURES, DecisionCache
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import FEATURE_NAMES, MarketState, PositionState

# Tolerance 1 on every feature (RSI 5, whose scaling by 1/5 is inexact), on a lattice of quarter steps: distances of
# exactly one tolerance, and values on the cell edges (every even number), happen all the time.
TOL = {name: 1.0 for name in FEATURE_NAMES} | {"rsi": 5.0}
BAND_ATR = 1.0
EPS = 1e-9
MODEL, VERSION = "m", "v1"
BARS = (1_700_000_040_000, 1_700_000_100_000)
CLOSED = ("ret_1", "ret_5", "ret_15", "ret_60", "ema_spread_pct", "rsi", "atr_pct", "volume_ratio")


def quarters(rng: random.Random, lo: float, hi: float) -> float:
    return rng.randint(round(lo * 4), round(hi * 4)) / 4


class Market:
    """Random states that look like the terminal's: each bar has its closed-bar features (now and then revised by a
    late trade), the live ones move; a few states have a feature that is not finite."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.closed = {bar: [self._closed() for _ in range(3)] for bar in BARS}  # the bar's values and 2 revisions

    def _closed(self) -> dict[str, float]:
        r = self.rng
        return {"ret_1": quarters(r, -0.5, 0.5), "ret_5": quarters(r, -1, 1), "ret_15": quarters(r, -1, 1),
                "ret_60": quarters(r, -1, 1), "ema_spread_pct": quarters(r, -1, 1),
                "rsi": 50.0 + 1.25 * r.randint(-4, 4), "atr_pct": r.choice((0.5, 1.0, 2.0)),
                "volume_ratio": quarters(r, 0, 2)}

    def state(self, position: PositionState = PositionState.FLAT) -> MarketState:
        r = self.rng
        bar = r.choice(BARS)
        closed = self.closed[bar][0 if r.random() < 0.85 else r.randint(1, 2)]
        values: dict[str, object] = dict(
            symbol="BTCUSDT", timeframe="1m", exchange_ms=bar + r.randint(0, 59_000), bar_close_ms=bar,
            last_price=100.0 + quarters(r, -1.5, 1.5), ema_fast=1.0, ema_slow=1.0, vwap=1.0, **closed,
            vwap_dist_pct=quarters(r, -2, 2), spread_bps=quarters(r, 0, 1.5), move_pct=quarters(r, -2, 2),
            position=position,
        )
        if r.random() < 0.02:
            values[r.choice(FEATURE_NAMES)] = r.choice((math.nan, math.inf))
        return MarketState(**values)  # type: ignore[arg-type]


def decision(s: MarketState, rng: random.Random) -> Decision:
    return Decision(
        symbol=s.symbol, timeframe=s.timeframe, state_ms=s.exchange_ms,
        body=DecisionBody(action=Action.HOLD, size_pct=0.0, confidence=rng.choice((0.0, 0.5, 1.0)), rationale="t"),
        meta=DecisionMeta(provider="test", model=MODEL, prompt_version=VERSION, latency_ms=1000.0,
                          cache_status=CacheStatus.MISS),
    )


@dataclass
class Stored:
    state: MarketState
    digest: str
    decision: Decision
    stored_at: float
    expires_at: float
    seq: int
    scaled: tuple[float, ...]


def scaled(s: MarketState) -> tuple[float, ...]:
    return tuple(getattr(s, n) * (1.0 / TOL[n]) for n in FEATURE_NAMES)


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def band(s: MarketState) -> float:
    b = BAND_ATR * s.atr_pct / 100.0 * s.last_price
    return b if math.isfinite(b) and b >= 0 else -1.0


def reference(live: list[Stored], query: MarketState, digest: str, now: float):
    """The answer by definition, scanning every answer alive for the query's position: (status, decision,
    distance), or None."""
    alive = [e for e in live if e.expires_at > now and e.state.position is query.position]
    for e in alive:
        if e.digest == digest:
            return CacheStatus.HIT, e.decision, 0.0
    u = scaled(query)
    if not (all(map(math.isfinite, u)) and math.isfinite(query.last_price)):
        return None
    index = [FEATURE_NAMES.index(n) for n in DEFAULT_INDEX_FEATURES]
    signs = [FEATURE_NAMES.index(n) for n in DEFAULT_SIGN_FEATURES]
    best, best_rank = None, None
    for e in alive:
        v = e.scaled
        if not all(map(math.isfinite, v)) or e.state.bar_close_ms != query.bar_close_ms:
            continue
        if any(sign(u[i]) != sign(v[i]) for i in signs):
            continue
        if abs(query.last_price - e.state.last_price) > band(e.state):
            continue
        # The query's cells: the cells of width 2 its window [u - 1, u + 1] overlaps in each index feature.
        if not all(math.floor((u[i] - 1 - EPS) / 2) <= math.floor(v[i] / 2) <= math.floor((u[i] + 1 + EPS) / 2)
                   for i in index):
            continue
        d = max(abs(a - b) for a, b in zip(u, v, strict=True))
        if d > 1 + EPS:
            continue
        # Nearest, then newest, then lowest cell, then first stored.
        rank = (d, -e.stored_at, tuple(math.floor(v[i] / 2) for i in index), e.seq)
        if best_rank is None or rank < best_rank:
            best, best_rank = e, rank
    if best is None:
        return None
    return CacheStatus.SIMILAR, best.decision, min(best_rank[0], 1.0)


@pytest.mark.parametrize("vector_min", [None, 1, 10**9], ids=["as shipped", "numpy for every group", "python only"])
def test_lookup_answers_what_a_plain_scan_answers(monkeypatch: pytest.MonkeyPatch, vector_min: int | None) -> None:
    if vector_min is not None:
        monkeypatch.setattr(cache_module, "_VECTOR_MIN", vector_min)
    rng = random.Random(17)
    market = Market(rng)
    clock = [0.0]
    cache = DecisionCache(TOL, clock=lambda: clock[0], ttl_s=20.0, max_entries=100_000, audit_rate=0.0,
                          price_band_atr=BAND_ATR)
    live: dict[tuple[PositionState, str], Stored] = {}
    seq = 0
    seen: Counter[str] = Counter()
    for op in range(6000):
        if rng.random() < 0.2:  # the clock moves now and then: answers stored at the same instant tie on age
            clock[0] += 0.15
        now = clock[0]
        position = PositionState.LONG if rng.random() < 0.1 else PositionState.FLAT
        if op % 3 == 0:  # store
            s = market.state(position)
            digest = f"d{rng.randint(0, 2500)}"  # a prompt seen again replaces its answer
            d = decision(s, rng)
            assert cache.store(s, model=MODEL, prompt_version=VERSION, prompt_digest=digest, decision=d)
            seq += 1
            live[(position, digest)] = Stored(s, digest, d, now, now + cache.ttl_for(d, s), seq, scaled(s))
            continue
        s = market.state(position)
        alive_digests = [k[1] for k, e in live.items() if k[0] is position]
        digest = rng.choice(alive_digests) if alive_digests and rng.random() < 0.1 else "probe"
        want = reference(list(live.values()), s, digest, now)
        got = cache.lookup(s, model=MODEL, prompt_version=VERSION, prompt_digest=digest)
        if want is None:
            assert got is None, (op, got)
            seen["MISS"] += 1
            continue
        assert got is not None, (op, want)
        assert (got.status, got.distance) == (want[0], want[2]), op
        assert got.stored is want[1], op
        seen[want[0].value] += 1
        seen["at the tolerance"] += want[2] == 1.0
    assert len(cache) == sum(e.expires_at > clock[0] for e in live.values())  # every expired answer is gone
    # The lattice reaches every case; none of the comparisons above was vacuous.
    assert seen["HIT"] > 50 and seen["SIMILAR"] > 1000 and seen["MISS"] > 200, seen
    assert seen["at the tolerance"] > 20, seen
    assert cache.stats.expired > 500  # answers died while the asks went on


def test_the_reference_scan_sees_expiry_band_and_bar() -> None:
    # The reference itself, on three answers a query tells apart: one expired, one outside its band, one of
    # another bar; only the fourth is served.
    rng = random.Random(1)
    market = Market(rng)
    base = market.state()
    while not all(map(math.isfinite, scaled(base))):
        base = market.state()
    moved = {"last_price": base.last_price + 10.0}
    other_bar = {"bar_close_ms": next(b for b in BARS if b != base.bar_close_ms)}
    entries = [
        Stored(base, "a", decision(base, rng), 0.0, 5.0, 1, scaled(base)),  # expired at 10 s
        Stored(s := base.__class__(**{**base.as_dict(), **moved}), "b", decision(base, rng), 9.0, 99.0, 2, scaled(s)),
        Stored(s2 := base.__class__(**{**base.as_dict(), **other_bar}), "c", decision(base, rng), 9.0, 99.0, 3,
               scaled(s2)),
        Stored(base, "d", decision(base, rng), 1.0, 99.0, 4, scaled(base)),
    ]
    got = reference(entries, base, "probe", 10.0)
    assert got is not None and got[1] is entries[3].decision and got[2] == 0.0
