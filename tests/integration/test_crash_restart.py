"""SIGKILL of the trading terminal while it trades, five times: after each kill the journal is intact, and the
restart (the session's own restore path, in a new process) gives back positions, cash, open orders and the risk
state, kill switch included, as an independent reading of the journal's rows says it must."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.trading.restore import MARKET_IN_FLIGHT, summarize_journal
from tests.integration import trading_driver as driver

ROOT = Path(__file__).resolve().parents[2]
LINE_TIMEOUT_S = 60.0  # a generous bound on each line of output: a hung driver fails the test, never hangs CI


class Driver:
    """The driver process, read line by line with a bound on each wait (a hung driver fails the test)."""

    def __init__(self, db: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.trading_driver", str(db), *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._buffer = b""

    def line(self) -> tuple[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], LINE_TIMEOUT_S)
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self.kill()
                raise AssertionError(f"the driver ended or went quiet ({self.proc.returncode}): {self.stderr}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        word, _, rest = line.decode().strip().partition(" ")
        return word, json.loads(rest) if rest else None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        _, err = self.proc.communicate(timeout=30)
        self.stderr = err.decode(errors="replace")[-3000:]


def expected_from_rows(db: Path, halted: bool) -> dict[str, Any]:
    """What a restart must give, read from the journal's rows without the terminal's code: positions are the sum
    of signed fill quantities, cash the starting cash plus every fill's cash flow, open orders the limit and stop
    orders whose last status is open (a market order in flight at the kill cannot resume)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        qty: dict[str, Decimal] = {}
        cash = driver.STARTING_CASH
        for symbol, side, q, price, fee in conn.execute("SELECT symbol, side, qty, price, fee FROM fills"):
            signed = Decimal(q) if side == "BUY" else -Decimal(q)
            qty[symbol] = qty.get(symbol, Decimal(0)) + signed
            cash += -signed * Decimal(price) - Decimal(fee)
        open_ids = sorted(r[0] for r in conn.execute(
            "SELECT id FROM orders WHERE status IN ('NEW', 'PARTIALLY_FILLED') AND type != 'MARKET'"))
    finally:
        conn.close()
    return {
        "positions": {s: q for s, q in qty.items() if q != 0},
        "cash": cash,
        "open_orders": open_ids,
        "risk_state": "HALTED" if halted else "ACTIVE",
    }


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "positions": {s: Decimal(p["qty"]) for s, p in summary["positions"].items()},
        "cash": Decimal(summary["cash"]),
        "open_orders": summary["open_orders"],
        "risk_state": summary["risk_state"],
    }


def rows(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def assert_canceled_at_restart(db: Path, in_flight: list[str]) -> None:
    """Market orders in flight at the last kill ended CANCELED, with the reason, once the terminal restarted."""
    for oid in in_flight:
        assert rows(db, "SELECT status, reject_reason FROM orders WHERE id = ?", oid) == [
            ("CANCELED", MARKET_IN_FLIGHT)], oid


def test_sigkill_while_trading_five_times_then_restart_restores_everything(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite3"
    restore_args = dict(starting_cash=driver.STARTING_CASH, symbols=[driver.SYMBOL],
                        daily_loss_limit=driver.DAILY_LOSS_LIMIT)
    expected: dict[str, Any] | None = None
    in_flight: list[str] = []
    halts = 0
    for round_ in range(5):
        # Rounds 1 and 3: the kill switch is on at the kill, and must be after the restart. The others are killed
        # with a market order in flight, which must end CANCELED at the restart; each at another point of trading.
        halt = round_ in (1, 3)
        proc = Driver(db, "--halt-after", "4") if halt else Driver(db, "--stall-after", str(6 + 5 * round_))
        try:
            word, restored = proc.line()
            assert word == "RESTORED"
            if expected is not None:  # the terminal itself restored what restore() said it would
                assert restored == expected, f"round {round_}"
            assert_canceled_at_restart(db, in_flight)
            states: list[dict[str, Any]] = []
            killed_switch = False
            sent = None
            while not (sent or (killed_switch and len(states) >= 6)):
                word, obj = proc.line()
                if word == "SENT":
                    sent = obj
                elif word == "ACK" and obj == "KILL":
                    killed_switch = True
                elif word == "ACK":
                    assert obj == "RESUME" and round_ - 1 in (1, 3), "resumed without a kill switch to resume from"
                elif word == "STATE":
                    states.append(obj)
        finally:
            proc.kill()
        assert proc.proc.returncode == -signal.SIGKILL, proc.stderr
        halts += killed_switch

        assert rows(db, "PRAGMA integrity_check") == [("ok",)]
        summary = summarize_journal(db, now_ms=int(time.time() * 1000), **restore_args)
        assert comparable(summary) == expected_from_rows(db, halted=halt), f"round {round_}"
        assert summary["positions"] == {} or not halt  # the kill switch flattened
        (fills,) = rows(db, "SELECT COUNT(*) FROM fills")[0]
        assert fills >= states[-1]["fills"], "an acknowledged fill is missing from the journal"
        in_flight = [r[0] for r in rows(db, "SELECT id FROM orders WHERE status = 'NEW' AND type = 'MARKET'")]
        if sent is not None:
            assert sent in in_flight, "the stalled market order should be NEW in the journal at the kill"
        expected = summary

    assert halts == 2
    proc = Driver(db, "--restore-only")
    try:
        assert proc.line() == ("RESTORED", expected)
    finally:
        proc.kill()
    assert_canceled_at_restart(db, in_flight)
    # Every order ends final or working again; every proposal is reviewed.
    open_rows = rows(db, "SELECT id, type FROM orders WHERE status IN ('NEW', 'PARTIALLY_FILLED')")
    assert sorted(oid for oid, _ in open_rows) == expected["open_orders"]
    assert rows(db, "SELECT COUNT(*) FROM proposals WHERE status = 'PENDING'") == [(0,)]
