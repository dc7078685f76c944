"""Keyboard flows in a real window: the terminal as a subprocess on the built-in exchange with the offline rules,
on Xvfb with openbox (focus works there), keys sent with xdotool; asserted on the smoke run's JSON and the journal
file. A floating dock is checked there too: its title bar in the accent, and back on top when reopened."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ui.x_display import poll, x_display

ROOT = Path(__file__).resolve().parents[2]
DOCKS = ["Watchlist", "Order book", "Trades", "Decisions", "Orders", "Account · Ticket", "Performance", "Log"]


def _env(display, tmp: Path) -> dict[str, str]:
    env = dict(display.env)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        folder = tmp / name.lower()
        folder.mkdir(exist_ok=True)
        env[name] = str(folder)
    env["TRADING_TERMINAL_DECISIONS"] = "rules"
    env.pop("OPENAI_API_KEY", None)
    return env


def _manual_buys(journal: Path) -> list[tuple]:
    if not journal.exists():
        return []
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT symbol, side, type, qty, limit_price, status FROM orders "
                              "WHERE origin = 'MANUAL' AND side = 'BUY'").fetchall()
    except sqlite3.OperationalError:  # not created yet, or busy for a moment
        return []


# The run's own cap is long: the test ends it with SIGINT once the keys have done their work, and on a loaded
# machine a short cap could end the terminal before the keys land. The test's timeout covers its waits' sum.
@pytest.mark.timeout(240)
def test_buy_at_ask_and_help_keys_in_a_real_window(tmp_path):
    with x_display(tmp_path) as display:
        journal = tmp_path / "journal.sqlite3"
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--smoke-test", "300", "--json", "--journal", str(journal),
             "--config", str(tmp_path / "settings.toml"), "--ticket-qty", "0.01"],
            cwd=ROOT, env=_env(display, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wid = display.window_named("AI Trading Terminal", timeout=40)
            display.xdotool("windowactivate", "--sync", wid)
            poll(lambda: display.xdotool("getactivewindow") == wid, 10, "the terminal to have the focus")

            def buy() -> list[tuple]:
                # The key goes to the focused window; until the book has a touch the ticket says why and sends
                # nothing, so the key is pressed again until the journal has the order.
                if not _manual_buys(journal):
                    display.xdotool("key", "--clearmodifiers", "ctrl+shift+b")
                return _manual_buys(journal)

            orders = poll(buy, 30, "an order placed by Ctrl+Shift+B", every=0.5)
            display.xdotool("key", "F1")
            display.window_named("Keyboard shortcuts", timeout=10)
            proc.send_signal(2)  # SIGINT ends a smoke run early with its counters
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    counters = json.loads(out.strip().splitlines()[-1])
    # The key's order: a limit at the ask for the ticket's quantity, filled or still working when the run ended
    # (the ask may have moved away), never refused.
    state = counters["state"]
    assert state["positions"].get("BTCUSDT", {}).get("qty") == "0.01" or state["open_orders"], state
    assert counters["docks"] == DOCKS
    assert "Keyboard shortcuts" in counters["windows"]
    (symbol, side, type_, qty, limit, status) = orders[0]
    assert status != "REJECTED"
    assert (symbol, side, type_, qty) == ("BTCUSDT", "BUY", "LIMIT", "0.01") and limit  # a limit at the ask


FLOAT_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    from PySide6 import QtWidgets
    app = QtWidgets.QApplication([])
    from app.config import Settings
    from app.session import Session
    from app.ui.log_dock import BufferingHandler
    from app.ui.main_window import MainWindow, apply_theme

    def wait(cond, timeout=10.0):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)
        app.processEvents()
        return cond()

    apply_theme(app)
    session = Session(Settings(journal_path=Path(tempfile.mkdtemp()) / "j.sqlite3", history_bars=0))
    w = MainWindow(session, BufferingHandler())
    w.resize(1200, 680)
    w.show()
    wait(lambda: w.isActiveWindow())
    dock = w.perf_dock
    docked = dock.grab().toImage().pixelColor(160, 3).name()
    dock.setFloating(True)
    wait(lambda: dock.isFloating() and dock.isVisible())
    floating = dock.grab().toImage().pixelColor(160, 3).name()
    toggle = dock.toggleViewAction()
    toggle.trigger()
    wait(lambda: not dock.isVisible())
    w.activateWindow()
    wait(lambda: QtWidgets.QApplication.activeWindow() is w)
    toggle.trigger()
    active = wait(lambda: QtWidgets.QApplication.activeWindow() is dock)
    print(json.dumps({"docked": docked, "floating": floating, "active": active,
                      "dock_id": int(dock.winId()), "main_id": int(w.winId())}))
    session.journal.close()
""")


def test_a_floating_dock_looks_floating_and_is_on_top_when_reopened(tmp_path):
    with x_display(tmp_path) as display:
        out = subprocess.run([sys.executable, "-c", FLOAT_SCRIPT], cwd=ROOT, env=_env(display, tmp_path),
                             capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["docked"] == "#0d1117"  # the docked title bar
        assert result["floating"] == "#3a2f0b"  # floating: the accent's tint, never mistaken for docked
        assert result["active"], "the reopened dock did not come to the front"
    assert os.environ.get("DISPLAY") != display.name  # the test's own display, not the developer's
