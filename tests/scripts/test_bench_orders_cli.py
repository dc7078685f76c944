"""scripts/bench_orders.py runs end to end (the built-in exchange in its own process with its trading API, the live
broker and bare ccxt side by side) and keeps its JSON keys. The benchmark is not a test: this checks it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_orders_runs_on_loopback_and_reports_both_paths():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_orders.py"), "--orders", "5",
                           "--symbols", "ETHUSDT,DOGEUSDT", "--json"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    for key in ("ours_ack", "ours_fill", "bare_ack", "bare_fill"):
        assert out[key]["n"] == 3 and 0 < out[key]["p50_ms"] <= out[key]["p99_ms"], (key, out[key])
    assert out["ack_p50_ratio"] > 0 and out["fill_p50_ratio"] > 0
    counters = out["live_counters"]
    assert counters["broker"] == "LIVE" and counters["open_orders"] == 0
