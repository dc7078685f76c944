"""The command line as a user runs it: a real process, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui

ROOT = Path(__file__).resolve().parents[2]


def run_terminal(*args: str, timeout: float = 90.0, extra_env: dict[str, str] | None = None):
    # A private data dir: the terminal's journal and exports must not land in the tester's home.
    data_home = ROOT / ".pytest_cache" / "xdg-data"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=str(data_home), **(extra_env or {}))
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def has_colour(img: QtGui.QImage, rgb: str, tolerance: int = 12, min_pixels: int = 20) -> bool:
    img = img.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    raw = np.frombuffer(img.constBits(), dtype=np.uint8).reshape(img.height(), img.bytesPerLine())
    bgr = raw[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].astype(np.int16)
    c = QtGui.QColor(rgb)
    target = np.array([c.blue(), c.green(), c.red()], dtype=np.int16)
    close = np.all(np.abs(bgr - target) <= tolerance, axis=2)
    return int(close.sum()) >= min_pixels


def test_smoke_test_exits_zero_and_screenshot_shows_both_candle_colours(tmp_path):
    shot = tmp_path / "shot.png"
    proc = run_terminal("--smoke-test", "4", "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test passed" in proc.stdout
    img = QtGui.QImage(str(shot))
    assert not img.isNull() and img.width() >= 800
    from app.ui.theme import DARK

    assert has_colour(img, DARK.up) and has_colour(img, DARK.down), "expected rising and falling candles"
    assert "Traceback" not in proc.stderr


def test_missing_replay_file_is_one_line_error_and_exit_2(tmp_path):
    proc = run_terminal("--replay", str(tmp_path / "nope.gz"), "--smoke-test", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read recording"), proc.stderr


def test_replay_with_a_live_exchange_is_refused_not_ignored(binance_capture):
    proc = run_terminal("--replay", str(binance_capture), "--exchange", "kraken", "--smoke-test", "1")
    assert proc.returncode == 2
    assert "--replay plays a recording through the built-in exchange" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_busy_simulator_port_is_reported_not_a_traceback():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_terminal("--sim-port", str(port), "--smoke-test", "1")
    assert proc.returncode == 2
    assert f"port {port}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.realdata
def test_replay_of_real_capture_draws_candles(binance_capture, tmp_path):
    proc = run_terminal("--replay", str(binance_capture), "--speed", "0", "--timeframe", "1s", "--smoke-test", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke test passed" in proc.stdout


def test_terminal_against_the_dev_model_server_shows_model_answers_and_never_prints_the_key(tmp_path):
    from tests.llm.dev_server import load as load_dev_server

    secret = "sk-test-SECRET-7f3a9c"
    server = load_dev_server().start_server(api_key=secret, fault="500", fault_count=1)
    try:
        env_key = {"OPENAI_API_KEY": secret}
        proc = run_terminal("--llm-url", server.url, "--model", "dev-model", "--decision-timeframe", "1s",
                            "--smoke-test", "5", extra_env=env_key)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert server.stats.answered >= 1, "the terminal never got an answer from the model server"
    assert server.stats.faults["500"] == 1  # the first request failed: an error card, then the service went on
    assert secret not in proc.stdout and secret not in proc.stderr
    assert "Traceback" not in proc.stderr


def last_json_line(stdout: str) -> dict:
    import json

    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in the output:\n{stdout}"
    return json.loads(lines[-1])


def test_smoke_test_json_prints_the_runs_counters_on_one_line(tmp_path):
    proc = run_terminal("--smoke-test", "4", "--json", "--journal", str(tmp_path / "j.sqlite3"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counters = last_json_line(proc.stdout)
    assert counters["ok"] is True and counters["task_faults"] == 0 and counters["faults"] == {}
    assert counters["frames"] > 0
    assert set(counters["trades"]) >= {"BTCUSDT"} and sum(counters["trades"].values()) > 0
    for key in ("gaps", "duplicates", "reconnects", "orders"):
        assert isinstance(counters[key], int), key
    assert isinstance(counters["rejected"], dict) and isinstance(counters["decisions"], dict)
    assert set(counters["decisions"]) <= {"HIT", "SIMILAR", "MISS", "OFFLINE", "ERROR"}
    assert counters["model"] == "OFFLINE RULES"
    assert "Decisions" in counters["docks"] and "Performance" in counters["docks"]


def test_a_task_fault_fails_the_smoke_test_and_writes_a_crash_report(tmp_path):
    """A part of the terminal that died (here: a fault injected into the market task through the documented
    test hook) fails the smoke test even though the task was restarted and the window stayed up."""
    from app.supervision import INJECT_FAULT_ENV

    state = tmp_path / "state"
    proc = run_terminal("--smoke-test", "4", "--json", "--journal", str(tmp_path / "j.sqlite3"),
                        extra_env={INJECT_FAULT_ENV: "market", "XDG_STATE_HOME": str(state)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "smoke test FAILED" in proc.stdout and "task fault" in proc.stdout
    counters = last_json_line(proc.stdout)
    assert counters["ok"] is False and counters["task_faults"] == 1 and counters["faults"] == {"market": 1}
    assert sum(counters["trades"].values()) > 0, "the market task was restarted and went on"
    reports = list(state.rglob("crash-*.txt"))
    assert len(reports) == 1 and "task market" in reports[0].read_text(encoding="utf-8")
