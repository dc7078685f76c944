"""scripts/soak.py: its calibration hits the asked message rate on the built-in exchange's clock-driven market, and
its real display (--xvfb) leaves no process behind."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import soak  # noqa: E402

START_MS = 1_780_000_000_000  # a window in which the market trades ~1.6x its rate setting: a plain fit misses it
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def generated_msgs_per_s(trades_per_s: float, start_ms: int, seconds: float) -> float:
    """What the server sends over the terminal's streams in that window, generated as the server does."""
    from app.market.adapters import binance
    from app.market.sim.markets import TICK_S, market_for

    total = 0
    step = int(TICK_S * 1000)
    for sym in SYMBOLS:
        market = market_for(sym, trades_per_s, start_ms=start_ms)
        wanted = set(binance.streams_for(sym))
        total += sum(len(market.advance(start_ms + step * k, wanted)) for k in range(1, int(seconds * 1000 / step) + 1))
    return total / seconds


def test_the_calibrated_rate_lands_within_five_percent_of_the_target():
    assert soak.trades_per_rate("BTCUSDT", START_MS, START_MS + 20_000) / 20 > 1.3  # the window is a busy one
    target = 1000.0
    cal = soak.solve_trade_rate(target, SYMBOLS, 20.0, START_MS)
    achieved = generated_msgs_per_s(cal["trades_per_s"], START_MS, 20.0)
    assert achieved == pytest.approx(target, rel=0.05)


def test_the_steady_window_starts_after_the_warm_up():
    args = soak.parse_args(["--minutes", "2", "--warmup", "0.25", "--xvfb", "--decisions", "local"])
    assert args.xvfb and args.decisions == "local" and args.warmup == 0.25
    assert soak.growth([None, 100.0, 103.5, None, 104.0]) == 4.0
    assert soak.growth([None, 100.0]) is None


@pytest.mark.skipif(sys.platform != "linux", reason="Xvfb is an X server for Linux")
def test_the_display_and_its_window_manager_are_gone_afterwards(tmp_path):
    if shutil.which("Xvfb") is None or shutil.which("openbox") is None:
        pytest.fail("needs xvfb and openbox (scripts/test installs them)")
    me = psutil.Process()
    with soak.x_display(tmp_path) as name:
        children = {p.pid: p.name() for p in me.children()}
        assert sorted(children.values()) == ["Xvfb", "openbox"]
        assert Path(f"/tmp/.X11-unix/X{name[1:]}").exists()
        assert "DISPLAY" not in os.environ or os.environ["DISPLAY"] != name  # the caller decides where Qt goes
    assert not [p for p in me.children() if p.pid in children and p.status() != psutil.STATUS_ZOMBIE]


def test_a_failure_inside_stops_the_display_too(tmp_path):
    me = psutil.Process()
    with pytest.raises(RuntimeError, match="boom"), soak.x_display(tmp_path):
        pids = [p.pid for p in me.children()]
        raise RuntimeError("boom")
    assert not [p for p in me.children() if p.pid in pids]


def test_ctrl_c_ends_a_real_window_run_with_everything_it_started(tmp_path):
    """Under Qt a KeyboardInterrupt raised in a signal handler lands in some slot, is printed there and the run goes
    on; the soak must stop cleanly instead: the session, the exchange, the display and its window manager."""
    import signal
    import subprocess
    import time

    if shutil.which("Xvfb") is None or shutil.which("openbox") is None:
        pytest.fail("needs xvfb and openbox (scripts/test installs them)")
    log = tmp_path / "soak.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "soak.py"), "--xvfb", "--minutes", "2",
                                 "--rate", "300", "--symbols", "BTCUSDT", "--decisions", "rules", "--sample-s", "1"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "t=" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # running: the window is up and the feed flows
        started = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        assert {p.name() for p in started} >= {"Xvfb", "openbox"}, log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert "Traceback" not in log.read_text()
