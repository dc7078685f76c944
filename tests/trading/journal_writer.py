"""Crash-test helper: records journal events in a loop and acknowledges each one on stdout only after its record
call has returned, so every acknowledged event must be in the file whenever the process is killed.

    python -m tests.trading.journal_writer DBPATH [--start N] [--count N]

Run from the project root. Each line is ``ACK <table> <id> [<detail>]``: ``proposal P<i>``, ``order O<i> <status>``,
``fill F<i>``, ``review P<i> <kind>``, ``balance <i>``, ``risk R<i>``. Even iterations are approved and traded
(order NEW, fill, order FILLED), odd ones rejected. The loop ends after ``--count`` iterations or when the parent
process goes away.
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal
from pathlib import Path

from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import MarketState
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.trading.journal import Journal

STATE = MarketState(
    symbol="BTCUSDT", timeframe="1m", exchange_ms=1_700_000_000_000, bar_close_ms=1_700_000_000_000,
    last_price=60_000.5, ema_fast=60_010.25,
    ema_slow=59_990.125, vwap=60_001.0, ret_1=0.01, ret_5=0.05, ret_15=-0.1, ret_60=0.3, ema_spread_pct=0.033,
    rsi=55.5, atr_pct=0.12, vwap_dist_pct=-0.001, volume_ratio=1.4, spread_bps=0.17, move_pct=0.002,
)
DECISION = Decision(
    symbol="BTCUSDT", timeframe="1m", state_ms=STATE.exchange_ms,
    body=DecisionBody(action=Action.BUY, size_pct=1.0, stop_loss_pct=1.0, take_profit_pct=2.0, confidence=0.7,
                      rationale="crash test"),
    meta=DecisionMeta(provider="offline", model="rules", prompt_version="v1", cache_status=CacheStatus.OFFLINE),
)


def ack(*words: object) -> None:
    print("ACK", *words, flush=True)


def run(path: Path, start: int, count: int) -> None:
    parent = os.getppid()
    with Journal(path) as j:
        for i in range(start, start + count):
            if os.getppid() != parent:
                return  # the test died: do not write forever
            pid = f"P{i}"
            price = Decimal(60_000) + Decimal(i) / 100
            j.record_proposal(pid, DECISION, STATE, created_ms=i, expires_ms=i + 30_000)
            ack("proposal", pid)
            if i % 2 == 0:
                j.record_review(pid, "APPROVED", i, original={"qty": "0.001"}, decision_time_ms=812.5)
                ack("review", pid, "APPROVED")
                req = OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, Decimal("0.001"),
                                   origin=OrderOrigin.MODEL, proposal_id=pid)
                order = Order(f"O{i}", req, OrderStatus.NEW, created_ms=i, updated_ms=i)
                j.record_order(order)
                ack("order", order.id, order.status.value)
                fill = Fill(f"F{i}", order.id, "BTCUSDT", Side.BUY, Decimal("0.001"), price,
                            Decimal("0.00006"), Liquidity.TAKER, i)
                j.record_fill(fill)
                ack("fill", fill.id)
                order.status, order.filled_qty, order.avg_price, order.fees = (
                    OrderStatus.FILLED, fill.qty, fill.price, fill.fee)
                j.record_order(order)
                ack("order", order.id, order.status.value)
            else:
                j.record_review(pid, "REJECTED", i, reason="crash test", decision_time_ms=99.0)
                ack("review", pid, "REJECTED")
            j.record_balance(i, Decimal("100000") - Decimal(i), Decimal("100000.5"), {"BTCUSDT": (Decimal(i), price)})
            ack("balance", i)
            if i % 5 == 0:
                j.record_risk_event(i, "VETO", f"R{i}", "crash test veto", {"qty": "1"})
                ack("risk", f"R{i}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", type=Path)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    run(args.db, args.start, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
