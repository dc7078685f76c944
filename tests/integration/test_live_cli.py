"""Live trading from the command line as a scripted run uses it: the built-in exchange in its child process with its
trading API on, a key pair made for the run, confirmed with --confirm-live; without it the run says why and trades
on paper. A real process, offscreen, in private data directories."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), TRADING_TERMINAL_DECISIONS="rules")
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def counters(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1])


def test_live_on_the_built_in_exchange_confirmed_by_flag_trades_on_its_own_journal(tmp_path):
    data = tmp_path / "data" / "ai-trading-terminal"
    data.mkdir(parents=True)
    paper = data / "journal.sqlite3"
    from app.trading.journal import Journal
    from app.trading.journal_owner import PAPER

    with Journal(paper) as journal:  # the paper journal exists and must stay exactly as it is
        journal.stamp_account(PAPER)
    before = paper.read_bytes()
    proc = run(tmp_path, "--exchange", "sim", "--live", "--confirm-live", "--smoke-test", "8", "--json",
               "--auto-approve", "--symbol", "BTCUSDT", "--smoke-order", "0.001")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = counters(proc)
    assert c["ok"] is True and c["broker"] == "LIVE" and c["broker_label"] == "LIVE · built-in exchange"
    assert c["auto_approve"] is True  # --auto-approve on this run's command line
    live = c["live"]
    assert live["reason"] is None and live["reconciliations"] >= 1 and live["errors"] == 0
    assert Path(live["journal"]) == data / "journal-live-built-in.sqlite"
    assert c["orders"] >= 1 and c["fills"] >= 1, c  # the smoke order at least: sent and filled at the exchange
    with sqlite3.connect(live["journal"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reconciliations").fetchone()[0] >= 1
        sent = conn.execute("SELECT id, status, exchange_id FROM orders").fetchall()
        fills = conn.execute("SELECT id, order_id FROM fills").fetchall()
        stamp = conn.execute("SELECT mode, exchange FROM account_stamp").fetchall()
    assert any(status == "FILLED" for _id, status, _x in sent), sent
    # Every order the exchange took has its id there; a take-profit the terminal holds ("-TP") is never sent until
    # reached, so it has none.
    held = [oid for oid, _s, _x in sent if oid.endswith("-TP")]
    assert all(exchange_id for oid, status, exchange_id in sent if status != "REJECTED" and oid not in held), sent
    assert all(exchange_id is None for oid, _s, exchange_id in sent if oid in held), sent
    assert fills and {order_id for _id, order_id in fills} <= {order_id for order_id, _s, _x in sent}
    assert all(fill_id.startswith("built-in:") for fill_id, _o in fills)
    assert stamp == [("LIVE", "built-in")]
    assert paper.read_bytes() == before and not (data / "journal.sqlite3-wal").exists()  # never opened
    assert "live trading confirmed by --confirm-live" in proc.stderr
    assert "auto-approve ON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_scripted_live_run_without_confirm_live_says_why_and_trades_on_paper(tmp_path):
    proc = run(tmp_path, "--exchange", "sim", "--live", "--smoke-test", "4", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = counters(proc)
    assert c["broker"] == "PAPER" and c["broker_label"] == "PAPER"
    assert c["live"]["reason"] == "Live trading on the built-in exchange was not confirmed. Trading on PAPER."
    assert "a scripted run confirms live trading with --confirm-live" in proc.stderr
    data = tmp_path / "data" / "ai-trading-terminal"
    assert not (data / "journal-live-built-in.sqlite").exists()
