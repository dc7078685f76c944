"""Crash-test helper: the real trading session (built-in exchange, paper broker, journal; no window) trading in a
loop, for a test to SIGKILL at any moment and restart on the same journal.

    python -m tests.integration.trading_driver DBPATH [--halt-after N | --stall-after N] [--restore-only]

Run from the project root. It prints, one JSON object per line after a word:

- ``RESTORED {...}`` first: the state the session restored from the journal (``TradingDesk.summary``);
- ``ACK RESUME`` when it found the kill switch on and resumed (a trader would), ``ACK KILL`` after the kill switch;
- ``SENT <order id>`` with ``--stall-after N``: after N actions a market order is sent to a broker that now takes
  a minute to deliver it, so it is surely in flight when the test kills the process;
- ``STATE {...}`` after every action: the summary plus ``fills`` (applied so far), read in one turn of the loop.

It buys and sells at market, rests limit buys below the market (canceling the oldest when five are open), and with
``--halt-after N`` hits the kill switch after N actions, then keeps trying orders (all vetoed). With
``--restore-only`` it prints RESTORED and exits. It stops when the parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.config import Settings
from app.models import OrderOrigin, OrderRequest, OrderType, Side
from app.session import Session
from app.trading.risk import RiskState

SYMBOL = "BTCUSDT"
QTY = Decimal("0.001")
# What the test needs to compute the same restore (summarize_journal) as this session.
STARTING_CASH = Decimal("100000")
DAILY_LOSS_LIMIT = Decimal("1000000")  # the loss limit is not under test here: never reached
PACE_S = 0.02  # the trader's pace between actions, so market data and fills move on in between


def settings(db: Path) -> Settings:
    return Settings(
        symbols=[SYMBOL], sim_process=False, sim_trades_per_s=200.0, history_bars=0, journal_path=db,
        starting_cash=STARTING_CASH, daily_loss_limit=DAILY_LOSS_LIMIT,
    )


def say(word: str, obj: Any = None) -> None:
    print(word if obj is None else f"{word} {json.dumps(obj, separators=(',', ':'))}", flush=True)


async def trade(session: Session, halt_after: int, stall_after: int) -> None:
    desk = session.desk
    parent = os.getppid()
    step = 0
    while os.getppid() == parent:
        price = desk.last_price(SYMBOL)
        assert price is not None
        kind = step % 3
        if kind == 0:
            await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, QTY, origin=OrderOrigin.MANUAL))
        elif kind == 1:
            resting = desk.broker.open_orders(SYMBOL)
            if len(resting) >= 5:
                await desk.cancel(resting[0].id)
            below = (price * Decimal("0.97")).quantize(Decimal("0.01"))
            await desk.submit_manual(OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, QTY, limit_price=below,
                                                  origin=OrderOrigin.MANUAL))
        else:
            await desk.submit_manual(OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, QTY,
                                                  origin=OrderOrigin.MANUAL))
        step += 1
        if step == stall_after:
            desk.broker.submit_latency_s = 60.0
            sending = asyncio.ensure_future(desk.submit_manual(
                OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, QTY, origin=OrderOrigin.MANUAL)))
            while not (stalled := [o for o in desk.broker.open_orders(SYMBOL) if o.request.type is OrderType.MARKET]):
                await asyncio.sleep(0)  # registered (and journaled NEW) on the submit's first step
            say("SENT", stalled[0].id)
            await sending
        if step == halt_after:
            await desk.kill_switch()
            say("ACK", "KILL")
        say("STATE", {**desk.summary(), "fills": desk.portfolio.fills_applied})
        await asyncio.sleep(PACE_S)


async def run(db: Path, halt_after: int, stall_after: int, restore_only: bool) -> None:
    session = Session(settings(db))
    desk = session.desk
    say("RESTORED", desk.summary())
    if restore_only:
        await session.stop()
        return
    await session.start()
    try:
        while desk.last_price(SYMBOL) is None or not desk.books[SYMBOL].has_snapshot:
            await asyncio.sleep(0.01)  # the market comes up (the test's timeout bounds this)
        if desk.risk.state is RiskState.HALTED:
            desk.resume()
            say("ACK", "RESUME")
        await trade(session, halt_after, stall_after)
    finally:
        await session.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--halt-after", type=int, default=0, help="hit the kill switch after this many actions (0: never)")
    ap.add_argument("--stall-after", type=int, default=0, help="leave a market order in flight after this many")
    ap.add_argument("--restore-only", action="store_true")
    args = ap.parse_args(argv)
    asyncio.run(run(args.db, args.halt_after, args.stall_after, args.restore_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
