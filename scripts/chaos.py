"""Fault suite against the real terminal: forced exchange restarts, then SIGKILLs of the terminal while it trades.

    .venv/bin/python scripts/chaos.py [--restarts 20] [--kills 5] [--quick] [--json]

1. Exchange restarts. The built-in exchange runs as its own process on a fixed loopback port; the terminal
   (``--exchange binance --ws-url ... --rest-url ...``, a ``--smoke-test N --json`` run) streams from it. The exchange
   is stopped and started again ``--restarts`` times. Each exchange process reports at exit the trade frames it
   wrote (``stats`` line); the terminal's JSON says how many trades it delivered per symbol. Every trade sent must
   be delivered exactly once: ``trades_lost`` and ``duplicates_delivered`` are the differences, per symbol. Each new
   exchange process starts a new trade-id space, so the terminal's ``gaps`` (id jumps) may be at most one per symbol
   per restart (``restart_seams``); one more would be a trade lost mid-stream.
   ``recoveries`` counts restarts after which the terminal was connected again.
2. Terminal kills. The terminal trades (offline rules, auto-approve, 1 s decisions) on a journal and is SIGKILLed
   ``--kills`` times. After each kill the journal must pass ``PRAGMA integrity_check``, and a restarted terminal must
   start from exactly the state the journal holds (positions, cash, open orders, risk state): the
   ``restored_state`` the restarted terminal prints must equal ``app.trading.restore.summarize_journal`` of the file
   and agree with an independent reading of its rows (``rows_state``: sums of fills, open non-market orders, the
   last KILL / RESUME), and that run must pass its smoke test with no task fault. The last round runs with a daily
   loss limit one fee exceeds, so the risk state it restores is REDUCING once that round has a fill
   (``risk_states_restored`` lists what each restart started with).

Prints a table, or with ``--json`` one JSON object. Exit status 0 when nothing was lost, duplicated or corrupted,
the terminal saw no gap but at restart seams and no task fault, and every state was restored, else 1. Everything
runs in a temporary folder; the trader's settings, journal and logs are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.market.sim.cli import READY_PREFIX, STATS_PREFIX  # noqa: E402

TERMINAL_START_S = 30.0  # a cold start on a busy machine: imports, window, first connection
TIGHT_LOSS_LIMIT = "0.01"  # the last kill round's daily loss limit (see terminal_kills)
RECOVERY_S = 45.0  # longest wait for the terminal to reconnect after a restart (its backoff tops out at 30 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout_s`` passed (processes outside this one: nothing to await)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


class Exchange:
    """One built-in exchange process on ``port``."""

    def __init__(self, port: int, symbols: list[str], rate: float, env: dict[str, str]) -> None:
        cmd = [sys.executable, "-m", "app.market.sim", "--port", str(port), "--symbols", ",".join(symbols),
               "--rate", str(rate)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith(READY_PREFIX):
            self.proc.kill()
            raise RuntimeError(f"the exchange did not start: {line!r}")

    def stop(self) -> Counter[str]:
        """SIGTERM (a clean close, as an exchange's maintenance restart); the trades it wrote, per symbol."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        for line in out.splitlines():
            if line.startswith(STATS_PREFIX):
                return Counter(json.loads(line.removeprefix(STATS_PREFIX))["trades_sent"])
        raise RuntimeError("the exchange printed no stats line at exit")


def connected(pid: int, port: int) -> bool:
    """Has process ``pid`` an established TCP connection to ``port`` on loopback?"""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in conns)


def terminal_cmd(port: int, symbols: list[str], journal: Path, *extra: str) -> list[str]:
    # The offline rules propose: they trade within seconds at a 1 s cadence, where the tiny local model mostly holds
    # and takes the CPU the fault suite needs.
    return [sys.executable, "-m", "app", "--exchange", "binance", "--ws-url", f"ws://127.0.0.1:{port}",
            "--rest-url", f"http://127.0.0.1:{port}", "--symbols", ",".join(symbols), "--journal", str(journal),
            "--model", "rules", *extra]


def last_json(stdout: str) -> dict | None:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def exchange_restarts(n: int, up_s: float, port: int, symbols: list[str], rate: float, env: dict[str, str],
                      work: Path) -> dict:
    sent: Counter[str] = Counter()
    exchange = Exchange(port, symbols, rate, env)
    # A long smoke test, ended by SIGTERM once the last exchange has stopped: the terminal then prints its
    # counters, and every trade the exchanges sent has had its chance to arrive.
    term = subprocess.Popen(terminal_cmd(port, symbols, work / "restarts.sqlite3", "--smoke-test", "3600",
                                         "--json"), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    restarts = recoveries = 0
    try:
        if not wait_for(lambda: connected(term.pid, port), TERMINAL_START_S):
            raise RuntimeError("the terminal never connected to the exchange")
        for _ in range(n):
            time.sleep(up_s)  # streaming from this exchange for a while
            sent += exchange.stop()
            exchange = Exchange(port, symbols, rate, env)
            restarts += 1
            # The terminal backs off when connections keep dying young (< 5 s): give it that time.
            if wait_for(lambda: connected(term.pid, port), RECOVERY_S):
                recoveries += 1
        time.sleep(up_s)
    finally:
        sent += exchange.stop()
    time.sleep(1.0)  # frames already received are applied within milliseconds; leave a wide margin
    term.send_signal(signal.SIGTERM)
    out, err = term.communicate(timeout=60)
    counters = last_json(out) or {}
    delivered = Counter(counters.get("trades", {}))
    symbols_seen = set(sent) | set(delivered)
    return {
        "restarts": restarts,
        "recoveries": recoveries,
        "terminal_exit": term.returncode,
        "task_faults": counters.get("task_faults"),
        "reconnects": counters.get("reconnects"),
        "gaps": counters.get("gaps"),
        "missing_trades": counters.get("missing_trades"),
        "rejected": counters.get("rejected"),
        "trades_sent": sum(sent.values()),
        "trades_delivered": sum(delivered.values()),
        "trades_lost": sum(max(0, sent[s] - delivered[s]) for s in symbols_seen),
        "duplicates_delivered": sum(max(0, delivered[s] - sent[s]) for s in symbols_seen),
        "terminal_stderr_tail": err.strip().splitlines()[-3:] if term.returncode else [],
    }


def journal_orders(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM orders").fetchone()[0]
    except sqlite3.Error:
        return 0


def integrity_ok(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def expected_state(path: Path, symbols: list[str], daily_loss_limit: Decimal | None = None) -> dict:
    """The state the journal holds as the terminal's own restore reads it (``summarize_journal``)."""
    from app.config import Settings
    from app.trading.restore import summarize_journal

    s = Settings()
    limit = s.daily_loss_limit if daily_loss_limit is None else daily_loss_limit
    return summarize_journal(path, starting_cash=s.starting_cash, symbols=symbols,
                             daily_loss_limit=limit, now_ms=int(time.time() * 1000))


def rows_state(path: Path) -> dict:
    """The same state read from the journal's rows without the terminal's code, so a wrong restore rule cannot
    agree with itself: positions are the sums of signed fill quantities, cash the starting cash plus every fill's
    cash flow, open orders the limit and stop orders whose last status is open (a market order in flight at a kill
    cannot resume), and a kill switch is on when the last KILL / RESUME event is a KILL."""
    from app.config import Settings

    qty: dict[str, Decimal] = {}
    cash = Settings().starting_cash
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for symbol, side, q, price, fee in db.execute("SELECT symbol, side, qty, price, fee FROM fills"):
            signed = Decimal(q) if side == "BUY" else -Decimal(q)
            qty[symbol] = qty.get(symbol, Decimal(0)) + signed
            cash += -signed * Decimal(price) - Decimal(fee)
        open_ids = sorted(r[0] for r in db.execute(
            "SELECT id FROM orders WHERE status IN ('NEW', 'PARTIALLY_FILLED') AND type != 'MARKET'"))
        last_control = db.execute(
            "SELECT kind FROM risk_events WHERE kind IN ('KILL', 'RESUME') ORDER BY id DESC LIMIT 1").fetchone()
    return {"positions": {s: q for s, q in qty.items() if q != 0}, "cash": cash, "open_orders": open_ids,
            "halted": last_control is not None and last_control[0] == "KILL"}


def agrees(restored: dict | None, rows: dict) -> bool:
    """Does a restored summary (Decimals as text) hold the state the rows give?"""
    if not restored:
        return False
    positions = {s: Decimal(p["qty"]) for s, p in restored.get("positions", {}).items()}
    return (positions == rows["positions"] and Decimal(restored["cash"]) == rows["cash"]
            and restored["open_orders"] == rows["open_orders"]
            and (restored["risk_state"] == "HALTED") == rows["halted"])


def terminal_kills(n: int, trade_s: float, port: int, symbols: list[str], rate: float, env: dict[str, str],
                   work: Path) -> dict:
    journal = work / "kills.sqlite3"
    # The last round runs with a daily loss limit a single fee exceeds: once it has a fill its risk state is
    # REDUCING, and the restarted terminal must start REDUCING too, not ACTIVE.
    tight = work / "tight-loss-limit.toml"
    tight.write_text(f"daily_loss_limit = {TIGHT_LOSS_LIMIT}\n", encoding="utf-8")
    exchange = Exchange(port, symbols, rate, env)
    kills = intact = restored = 0
    orders_at_kill: list[int] = []
    mid_trade = 0  # kills that came right after a new order reached the journal (else after trade_s)
    risk_states: list[str | None] = []
    mismatches: list[dict] = []
    check_faults = check_failures = 0
    try:
        for i in range(n):
            last = i == n - 1
            config = ("--config", str(tight)) if last else ()
            before = journal_orders(journal)
            term = subprocess.Popen(
                terminal_cmd(port, symbols, journal, *config, "--smoke-test", "600", "--auto-approve",
                             "--decision-timeframe", "1s"),
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not wait_for(lambda t=term: connected(t.pid, port), TERMINAL_START_S):
                term.kill()
                raise RuntimeError("the terminal never connected to the exchange")
            # Kill it while it trades: once a new order is in the journal, or after trade_s at most.
            if wait_for(lambda b=before: journal_orders(journal) > b, trade_s, poll_s=0.1):
                mid_trade += 1
            term.send_signal(signal.SIGKILL)
            term.wait(timeout=20)
            kills += 1
            orders_at_kill.append(journal_orders(journal))
            if not integrity_ok(journal):
                continue
            intact += 1
            expected = expected_state(journal, symbols, Decimal(TIGHT_LOSS_LIMIT) if last else None)
            rows = rows_state(journal)
            check = subprocess.run(terminal_cmd(port, symbols, journal, *config, "--smoke-test", "2", "--json"),
                                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            counters = last_json(check.stdout) or {}
            got = counters.get("restored_state")
            risk_states.append((got or {}).get("risk_state"))
            check_faults += counters.get("task_faults", 0) or 0
            check_failures += check.returncode != 0
            # Restored as the restore rule reads the journal, and as the raw rows say, and the run was healthy.
            if got == expected and agrees(got, rows) and check.returncode == 0:
                restored += 1
            else:
                mismatches.append({"expected": expected, "rows": str(rows), "restored": got,
                                   "exit": check.returncode})
    finally:
        exchange.stop()
    return {
        "kills": kills,
        "integrity_ok": intact == kills and kills > 0,
        "state_restored": restored == kills and kills > 0,
        "orders_in_journal": orders_at_kill,
        "kills_mid_trade": mid_trade,
        "risk_states_restored": risk_states,
        "state_mismatches": mismatches[:2],
        "restart_check_faults": check_faults,
        "restart_check_failures": check_failures,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--restarts", type=int, default=20, help="forced exchange restarts (default 20)")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of the terminal while it trades (default 5)")
    p.add_argument("--up-s", type=float, default=5.5,
                   help="seconds the exchange streams between restarts (default 5.5: over 5 s the terminal counts "
                   "a connection as healthy and reconnects at once; shorter runs test its backoff)")
    p.add_argument("--trade-s", type=float, default=60.0,
                   help="longest wait for a new order before a kill (the offline rules trade when the market moves)")
    p.add_argument("--rate", type=float, default=20.0, help="trades per second per symbol")
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    p.add_argument("--quick", action="store_true", help="a smaller run: 5 restarts, 2 kills, 2 s up, 20 s to trade")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if args.quick:
        args.restarts, args.kills, args.up_s = min(args.restarts, 5), min(args.kills, 2), min(args.up_s, 2.0)
        args.trade_s = min(args.trade_s, 20.0)
    symbols = [s for s in args.symbols.split(",") if s]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            env[var] = str(work / var.lower())  # no settings file, layout, logs or keyring of the trader's
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
        env.pop("OPENAI_API_KEY", None)
        t0 = time.monotonic()
        result = exchange_restarts(args.restarts, args.up_s, port, symbols, args.rate, env, work)
        result |= terminal_kills(args.kills, args.trade_s, port, symbols, args.rate, env, work)
        result["seconds"] = round(time.monotonic() - t0, 1)
    # Each restarted exchange draws a new trade-id space, so the terminal sees one id jump per symbol at each seam
    # (a gap when it jumps up, an id reset when down). More gaps than seams would be trades lost mid-stream.
    result["restart_seams"] = args.restarts * len(symbols)
    ok = (result["trades_lost"] == 0 and result["duplicates_delivered"] == 0
          and (result["gaps"] or 0) <= result["restart_seams"] and result["integrity_ok"] and result["state_restored"]
          and result["recoveries"] == result["restarts"] and result["trades_sent"] > 0
          and result["task_faults"] == 0 and result["terminal_exit"] == 0
          and result["restart_check_faults"] == 0 and result["restart_check_failures"] == 0)
    result["ok"] = ok
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key in sorted(result):
            print(f"{key:22} {result[key]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
