"""scripts/bench_cache.py runs on any recording and any candle file and prints its figures as JSON (the benchmark
itself is not a test: this checks that it runs, on small real inputs, and keeps its keys)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, require_data

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("calls_saved", "agreement", "agreement_non_hold", "served_non_hold", "lookup_p99_us",
        "model_calls_per_hour", "decision_age_p50_s", "decision_age_p99_s")


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cache.py"), *args, "--runs", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def _json(*args: str) -> dict:
    done = _bench(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_candle_file_at_a_cadence_finer_than_its_timeframe() -> None:
    path = require_data(SHARED_DATA / "bitstamp-btcusd-1m" / "bitstamp_btcusd_min_2020_01_01.csv")
    out = _json("--candles", str(path), "--timeframe", "15m", "--every", "5m", "--part", "second")
    assert all(k in out for k in KEYS)
    assert out["timeframe"] == "15m" and out["every_s"] == 300 and out["part"] == "second"
    assert out["asks"] == pytest.approx(1440 / 5 / 2, abs=3)  # the second half of a day of asks every 5 minutes
    assert 0.0 <= out["calls_saved"] <= 1.0
    assert out["model_calls_per_hour"] <= 12  # at most one call per ask
    assert out["decision_age_p50_s"] <= out["decision_age_p99_s"]


def _recording(path: Path, symbol: str, seconds: int) -> Path:
    """A Binance trade stream of ``symbol``, one trade a second, in the capture's line format."""
    t0 = 1_700_000_000_000
    lines = []
    for i in range(seconds):
        price = 2000.0 + 5.0 * ((i // 30) % 4) + (i % 7) * 0.1
        data = {"e": "trade", "E": t0 + i * 1000, "s": symbol, "t": i + 1, "p": f"{price:.2f}", "q": "0.5",
                "T": t0 + i * 1000, "m": i % 2 == 0, "M": True}
        frame = json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})
        lines.append(f"{(t0 + i * 1000) * 1_000_000} {frame}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_recording_of_another_symbol_is_benchmarked_on_its_busiest_symbol(tmp_path: Path) -> None:
    # Before, the symbol was BTCUSDT whatever the recording held: any other one gave "fewer than 2 states".
    path = _recording(tmp_path / "eth.txt", "ETHUSDT", 6 * 60)
    out = _json("--data", str(path))
    assert out["symbol"] == "ETHUSDT"
    assert out["timeframe"] == "1m" and out["every_s"] == 5  # the terminal's default cadence
    assert out["asks"] >= 40  # four minutes after two closed bars, every 5 s
    assert all(k in out for k in KEYS)


def test_too_little_data_is_said_plainly(tmp_path: Path) -> None:
    path = _recording(tmp_path / "short.txt", "ETHUSDT", 90)
    done = _bench("--data", str(path))
    assert done.returncode != 0
    assert "fewer than 2 asks" in done.stderr and "Traceback" not in done.stderr


def test_the_real_capture_at_the_default_cadence_human_report() -> None:
    path = require_data(SHARED_DATA / "binance-spot-btcusdt-capture" / "btcusdt_20240808.gz")
    done = _bench("--data", str(path))
    assert done.returncode == 0, done.stderr
    assert "BTCUSDT, 1m bars asked every 5 s" in done.stdout
    assert "| similarity (ours) |" in done.stdout and "| none |" in done.stdout


def test_a_cadence_the_candle_file_cannot_give_is_refused_not_silently_changed() -> None:
    # Before, --every 5s on 1m candles ran once a minute while the report said "asked every 5 s".
    path = require_data(SHARED_DATA / "bitstamp-btcusd-1m" / "bitstamp_btcusd_min_2020_01_01.csv")
    for every in ("5s", "90s"):
        done = _bench("--candles", str(path), "--every", every)
        assert done.returncode != 0 and "not a multiple of the file's 60 s bars" in done.stderr, (every, done.stderr)
