"""Recorders report the percentiles of known distributions within their stated precision, forget old values after
a minute, and their snapshots survive export and re-import."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from app.perf import metrics as m
from app.perf.metrics import Metrics, Rate, Recorder, StageSnapshot, load_csv, load_json


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def exact_percentile(values: np.ndarray, p: float) -> int:
    """The nearest-rank percentile, as HdrHistogram defines it: the value at rank round(p% of n)."""
    s = np.sort(values)
    rank = max(int(p * len(s) / 100 + 0.5), 1)
    return int(s[rank - 1])


def assert_within_precision(rec: Recorder, got: int, want: int) -> None:
    tolerance = max(want * 10 ** -rec.sig_figs, rec.resolution)
    assert abs(got - want) <= tolerance, f"{got} vs {want} (tolerance {tolerance})"


def record_all(rec: Recorder, values: np.ndarray) -> None:
    for v in values.tolist():
        rec.record(v)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.arange(1, 100_001, dtype=np.int64) * 1_000, id="uniform 1..100000 us"),
        pytest.param(np.full(10_000, 2_345_678, dtype=np.int64), id="constant 2.35 ms"),
        pytest.param(np.concatenate([np.full(9_000, 50_000), np.full(1_000, 40_000_000)]).astype(np.int64),
                     id="two-point 90% 50us / 10% 40ms"),
        pytest.param(np.random.default_rng(7).lognormal(13, 1.5, 50_000).astype(np.int64) + 1_000,
                     id="lognormal"),
    ],
)
def test_percentiles_of_known_distributions_within_precision(values):
    rec = Recorder("stage", clock=FakeClock())
    record_all(rec, values)
    for window in ("1m", "all"):
        s = rec.snapshot(window)
        assert s.count == len(values)
        assert s.max == int(values.max())
        assert s.mean == pytest.approx(values.mean(), rel=1e-12)
        for p, got in ((50, s.p50), (95, s.p95), (99, s.p99)):
            assert_within_precision(rec, got, exact_percentile(values, p))


def test_two_point_mixture_percentiles_land_on_the_right_point():
    rec = Recorder("stage", clock=FakeClock())
    record_all(rec, np.array([50_000] * 9_000 + [40_000_000] * 1_000, dtype=np.int64))
    s = rec.snapshot()
    assert abs(s.p50 - 50_000) <= 512
    assert abs(s.p95 - 40_000_000) <= 40_000  # 0.1 %
    assert s.p99 <= s.max == 40_000_000


def test_vectorised_fold_matches_hdrhistogram_record_value():
    values = np.random.default_rng(3).integers(0, 60_000_000_000, 20_000)
    rec = Recorder("stage", clock=FakeClock())
    record_all(rec, values)
    rec.fold()
    ref = HdrHistogram(1_000, 60_000_000_000, 3)
    for v in values.tolist():
        ref.record_value(v)
    ours = rec.histogram()
    assert np.array_equal(np.ctypeslib.as_array(ours.counts), np.ctypeslib.as_array(ref.counts))
    for p in (50, 95, 99):
        assert min(ref.get_value_at_percentile(p), int(values.max())) == getattr(rec.snapshot("all"), f"p{p}")


def test_out_of_range_values_are_clamped_and_counted():
    rec = Recorder("stage", clock=FakeClock())
    rec.record(-5)
    rec.record(10**12)
    s = rec.snapshot("all")
    assert (rec.negative, rec.clamped, s.count, s.max) == (1, 1, 2, 60_000_000_000)


def test_one_minute_window_forgets_old_values():
    clock = FakeClock(0.0)
    rec = Recorder("stage", clock=clock)
    for _ in range(100):
        rec.record(1_000_000)  # 1 ms, at t = 0
    assert rec.snapshot("1m").count == 100
    clock.t = 30.0
    for _ in range(10):
        rec.record(50_000_000)  # 50 ms, at t = 30
    s = rec.snapshot("1m")
    assert s.count == 110 and s.max == 50_000_000
    clock.t = 65.0  # the t=0 slot (0..10 s) has left the window, the t=30 one has not
    s = rec.snapshot("1m")
    assert s.count == 10
    assert abs(s.p50 - 50_000_000) <= 50_000
    assert rec.snapshot("all").count == 110  # since start keeps everything
    clock.t = 200.0
    assert rec.snapshot("1m") == StageSnapshot()
    assert rec.snapshot("all").count == 110


def test_buffer_folds_by_itself_when_full():
    rec = Recorder("stage", buffer_size=100, clock=FakeClock())
    for _ in range(250):
        rec.record(5_000)
    assert len(rec._buf) == 50 and rec.count == 250


def test_empty_recorder_snapshot_is_zero():
    assert Recorder("x").snapshot() == StageSnapshot(0, 0, 0, 0, 0, 0.0)


def test_rate_over_recent_seconds():
    clock = FakeClock(0.0)
    r = Rate("msgs", window_s=5.0, clock=clock)
    for second in range(1, 11):
        r.add(100 if second <= 5 else 1000)
        clock.t = float(second)
        value = r.per_second()
    assert value == pytest.approx(1000.0)
    total = [0]
    followed = Rate("frames", window_s=2.0, source=lambda: total[0], clock=clock)
    total[0] = 300
    clock.t += 3.0
    assert followed.per_second() == pytest.approx(100.0)


def test_registry_has_the_terminal_stages_and_round_trips_json_and_csv(tmp_path):
    clock = FakeClock()
    metrics = Metrics(clock=clock)
    assert set(m.STAGES) <= set(metrics.recorders)
    assert metrics.recorder(m.UI_FRAME) is metrics.recorders["ui_frame"]
    record_all(metrics.recorder(m.RECEIVE_TO_BUS), np.arange(1, 5_000, dtype=np.int64) * 3_001)
    metrics.recorder(m.MODEL_MISS).record(1_234_567_891)
    metrics.counter("feed_drops").inc(7)
    metrics.rate("msgs").add(10)
    clock.t += 2.0
    snap = metrics.snapshot_all()
    assert snap["stages"]["receive_to_bus"]["1m"].count == 4_999
    assert snap["counters"] == {"feed_drops": 7}

    metrics.export_json(tmp_path / "perf.json", snap)
    assert load_json(tmp_path / "perf.json") == snap
    doc = json.loads((tmp_path / "perf.json").read_text())
    assert "0.1 %" in doc["precision"]["receive_to_bus"]

    metrics.export_csv(tmp_path / "perf.csv", snap)
    assert load_csv(tmp_path / "perf.csv") == snap


def test_load_json_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError):
        load_json(tmp_path / "x.json")
