"""Which decisions become proposals the trader is asked to approve."""

from __future__ import annotations

import pytest

from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.trading.proposals import ProposalBook

META = DecisionMeta(provider="p", model="m", prompt_version="v", latency_ms=1.0, cache_status=CacheStatus.MISS)


def decision(action: Action, size_pct: float) -> Decision:
    body = DecisionBody(action=action, size_pct=size_pct, confidence=0.9, rationale="r")
    return Decision(symbol="BTCUSDT", timeframe="1m", state_ms=0, body=body, meta=META)


@pytest.mark.parametrize("action", [Action.BUY, Action.SELL])
def test_a_trade_of_zero_percent_is_no_proposal(action: Action) -> None:
    book = ProposalBook()
    assert book.add(decision(action, 0), None) is None
    assert book.pending() == []


def test_a_sized_trade_and_a_close_are_proposals_and_a_hold_is_not() -> None:
    book = ProposalBook()
    assert book.add(decision(Action.BUY, 5), None) is not None
    assert book.add(decision(Action.CLOSE, 0), None) is not None  # CLOSE carries no size: it closes what is held
    assert book.add(decision(Action.HOLD, 0), None) is None
    assert len(book.pending()) == 2
