"""restore(journal): the risk state a restart takes back, decided from the journal's last kill / resume / state
event; and the summary a fault test or the chaos script compares."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.trading.journal import Journal
from app.trading.restore import restore, summarize_journal
from app.trading.risk import RiskState

DAY = 86_400_000
NOW = 1_723_075_200_000 + 10 * 3_600_000  # 10:00 UTC
ARGS = dict(starting_cash=D("1000"), symbols=["BTCUSDT"], daily_loss_limit=D("50"), now_ms=NOW)


@pytest.mark.parametrize(
    ("events", "state"),
    [
        ([], RiskState.ACTIVE),
        ([("KILL", "kill_switch", NOW - 5)], RiskState.HALTED),
        ([("KILL", "kill_switch", NOW - 5), ("VETO", "HALTED", NOW - 4)], RiskState.HALTED),
        ([("KILL", "kill_switch", NOW - 5), ("RESUME", "resume", NOW - 4)], RiskState.ACTIVE),
        ([("STATE", "REDUCING", NOW - 5)], RiskState.REDUCING),  # the loss limit latched today
        ([("STATE", "REDUCING", NOW - DAY)], RiskState.ACTIVE),  # yesterday's limit: a new day, a new limit
        ([("STATE", "REDUCING", NOW - 5), ("RESUME", "resume", NOW - 4)], RiskState.ACTIVE),
    ],
)
def test_risk_state_from_the_last_control_event(tmp_path: Path, events: list[tuple[str, str, int]],
                                                state: RiskState) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        for kind, code, ms in events:
            j.record_risk_event(ms, kind, code, "test")
        assert restore(j, **ARGS).risk_state is state  # type: ignore[arg-type]


def test_summary_of_a_journal_is_plain_json_values(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.5"), limit_price=D("99.5"),
                           origin=OrderOrigin.MANUAL)
        j.record_order(Order("L", req, OrderStatus.PARTIALLY_FILLED, created_ms=NOW - 10, updated_ms=NOW - 9))
        j.record_fill(Fill("F", "L", "BTCUSDT", Side.BUY, D("0.25"), D("99.5"), D("0.02"), Liquidity.MAKER, NOW - 9))
        j.record_risk_event(NOW - 1, "KILL", "kill_switch", "halt")
    assert summarize_journal(path, **ARGS) == {  # type: ignore[arg-type]
        "positions": {"BTCUSDT": {"qty": "0.25", "avg_price": "99.50000000", "realized_pnl": "-0.02000000"}},
        "cash": "975.10500000",  # 1000 - 0.25 * 99.5 - 0.02
        "open_orders": ["L"],
        "risk_state": "HALTED",
    }
