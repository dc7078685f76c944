"""scripts/bench_model.py reads the real candle files into market states (through app.market.candle_files): each
file's layout, time order and price scale (a BTC-quoted pair near 0.002 as well as BTC-USD near 8,000)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import pytest

from app.llm import prompt
from app.market.features import FEATURE_NAMES
from tests.conftest import SHARED_DATA, require_data

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    if "bench_model" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_model", ROOT / "scripts" / "bench_model.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_model"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_model"]


@pytest.mark.parametrize(
    ("relative", "timeframe", "price_range"),
    [
        ("freqtrade-1m/UNITTEST_BTC-1m.json", "1m", (0.001, 0.003)),  # JSON rows, prices near 0.002
        ("bitstamp-btcusd-1m/bitstamp_btcusd_min_2020_01_01.csv", "1m", (6000, 9000)),  # CSV, oldest first
        ("coinbase-btcusd-1h/Coinbase_BTCUSD_1h.csv", "1h", (1000, 30000)),  # banner line, newest first, 09-AM dates
    ],
)
def test_candle_files_become_market_states_in_time_order(relative: str, timeframe: str, price_range) -> None:
    bench = _bench()
    candles = bench.load_candles(require_data(SHARED_DATA / relative))
    assert not candles.skipped  # real exports, no broken bar
    rows = candles.rows
    assert (rows[1:, 0] > rows[:-1, 0]).all()  # oldest first, one bar per open time
    assert bench.candle_timeframe(rows) == timeframe
    states = list(bench.states_from_candles(rows[:400], symbol="X", timeframe=timeframe, every_ms=3_600_000))
    assert len(states) >= 5
    assert all(b.exchange_ms > a.exchange_ms for a, b in itertools.pairwise(states))
    last = states[-1]
    assert price_range[0] < last.last_price < price_range[1]
    assert all(math.isfinite(getattr(last, name)) for name in FEATURE_NAMES)
    assert last.atr_pct > 0  # the scale-free features are in %, whatever the price scale
    assert prompt.parse_state(prompt.render(last)).last_price == pytest.approx(last.last_price, rel=1e-7)


def test_pick_states_takes_one_half_at_a_fixed_cadence() -> None:
    bench = _bench()
    rows = bench.load_candles(require_data(SHARED_DATA / "bitstamp-btcusd-1m/bitstamp_btcusd_min_2020_01_01.csv")).rows
    states = list(bench.states_from_candles(rows, symbol="BTCUSD", timeframe="1m", every_ms=60_000))
    first = bench.pick_states(states, part="first", samples=10, every_s=None)
    second = bench.pick_states(states, part="second", samples=10, every_s=None)
    assert 1 < len(first) <= 10 and 1 < len(second) <= 10
    assert first[-1].exchange_ms < second[0].exchange_ms  # tuned on one half, reported on the other
    gaps = {b.exchange_ms - a.exchange_ms for a, b in itertools.pairwise(second)}
    assert len(gaps) == 1  # a fixed cadence
