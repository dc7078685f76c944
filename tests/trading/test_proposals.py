"""Which decisions become proposals the trader is asked to approve."""

from __future__ import annotations

import pytest

from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.llm.service import DecisionEvent
from app.market.features import MarketState
from app.trading.proposals import Proposal, ProposalBook, ProposalStatus

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


# ----- which answers become proposals: should_propose --------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def state(symbol: str = "BTCUSDT", price: float = 60_000.0, bar_close_ms: int = 0) -> MarketState:
    return MarketState(symbol=symbol, timeframe="1m", exchange_ms=bar_close_ms, bar_close_ms=bar_close_ms,
                       last_price=price,
                       ema_fast=price, ema_slow=price, vwap=price, ret_1=0.0, ret_5=0.0, ret_15=0.0, ret_60=0.0,
                       ema_spread_pct=0.0, rsi=50.0, atr_pct=0.1, vwap_dist_pct=0.0, volume_ratio=1.0,
                       spread_bps=1.0, move_pct=0.0)


def answer(action: Action, status: CacheStatus = CacheStatus.MISS, *, changed: bool = False, fresh: bool | None = None,
           symbol: str = "BTCUSDT", size_pct: float = 5, bar_close_ms: int = 0) -> DecisionEvent:
    body = DecisionBody(action=action, size_pct=size_pct, confidence=0.9, rationale="r")
    meta = DecisionMeta(provider="p", model="m", prompt_version="v", cache_status=status)
    fresh = status is CacheStatus.MISS if fresh is None else fresh
    at = state(symbol, bar_close_ms=bar_close_ms)
    return DecisionEvent(Decision.about(at, body, meta), at, changed=changed, fresh=fresh)


def offer(book: ProposalBook, event: DecisionEvent) -> Proposal | None:
    """What the desk does with an event: ask should_propose, then add."""
    return book.add(event.decision, event.state) if book.should_propose(event) else None


def test_a_stream_of_cache_confirmed_buys_makes_one_proposal() -> None:
    book = ProposalBook(clock=Clock())
    assert offer(book, answer(Action.BUY, changed=True)) is not None
    for _ in range(20):  # what the cache repeats every few seconds (the service tells only news, but even so)
        assert offer(book, answer(Action.BUY, CacheStatus.SIMILAR)) is None
        assert offer(book, answer(Action.BUY)) is None, "a fresh BUY while the BUY is pending: it stands"
    assert len(book.proposals) == 1


def test_hold_errors_and_zero_sizes_are_never_proposed_even_as_a_change() -> None:
    book = ProposalBook(clock=Clock())
    assert not book.should_propose(answer(Action.HOLD, changed=True))
    assert not book.should_propose(answer(Action.BUY, changed=True, size_pct=0))
    error = DecisionEvent(Decision.about(state(), None, DecisionMeta(provider="p", model="m", prompt_version="v",
                                                                     cache_status=CacheStatus.ERROR, error="x")),
                          state(), changed=False, fresh=False)
    assert not book.should_propose(error)


def test_another_action_supersedes_the_pending_proposal_with_the_reason() -> None:
    book = ProposalBook(clock=Clock())
    buy = offer(book, answer(Action.BUY, changed=True))
    sell = offer(book, answer(Action.SELL, CacheStatus.SIMILAR, changed=True))
    assert sell is not None and book.pending() == [sell]
    assert buy.status is ProposalStatus.EXPIRED and buy.reason == "superseded by SELL"
    assert offer(book, answer(Action.BUY, changed=True, symbol="ETHUSDT")) is not None  # other symbols unaffected
    assert sell.status is ProposalStatus.PENDING


def test_a_fresh_buy_after_the_pending_one_expired_is_proposed_a_confirmed_one_is_not() -> None:
    clock = Clock()
    book = ProposalBook(expiry_s=30.0, clock=clock)
    offer(book, answer(Action.BUY, changed=True))
    clock.t += 31
    assert len(book.expire_due()) == 1
    assert offer(book, answer(Action.BUY, CacheStatus.HIT, fresh=False)) is None
    assert offer(book, answer(Action.BUY)) is not None


MINUTE = 60_000


def test_after_a_rejection_fresh_answers_of_that_action_are_not_proposed_until_the_action_changes() -> None:
    book = ProposalBook(clock=Clock())
    p = offer(book, answer(Action.BUY, changed=True, bar_close_ms=MINUTE))
    book.mark(p, ProposalStatus.REJECTED, reason="rejected by the trader")
    for _ in range(5):
        assert offer(book, answer(Action.BUY, bar_close_ms=MINUTE)) is None
    assert offer(book, answer(Action.HOLD, changed=True, bar_close_ms=2 * MINUTE)) is None
    assert offer(book, answer(Action.BUY, changed=True, bar_close_ms=2 * MINUTE)) is not None, \
        "BUY again after a HOLD on a newer bar: a new idea"


def test_a_one_ask_hold_flicker_does_not_bring_a_rejected_buy_back() -> None:
    book = ProposalBook(clock=Clock())
    p = offer(book, answer(Action.BUY, changed=True, bar_close_ms=MINUTE))
    book.mark(p, ProposalStatus.REJECTED, reason="rejected by the trader")
    assert offer(book, answer(Action.HOLD, changed=True, bar_close_ms=MINUTE)) is None
    assert offer(book, answer(Action.BUY, changed=True, bar_close_ms=MINUTE)) is None, "the same bars: no new idea"
    assert offer(book, answer(Action.BUY, bar_close_ms=2 * MINUTE)) is None, "still BUY on the next bar"


def test_a_rejection_ends_when_the_action_changes_to_another_trade() -> None:
    book = ProposalBook(clock=Clock())
    p = offer(book, answer(Action.BUY, changed=True, bar_close_ms=MINUTE))
    book.mark(p, ProposalStatus.REJECTED, reason="rejected by the trader")
    sell = offer(book, answer(Action.SELL, changed=True, bar_close_ms=MINUTE))
    assert sell is not None
    book.mark(sell, ProposalStatus.REJECTED, reason="rejected by the trader")
    assert offer(book, answer(Action.BUY, changed=True, bar_close_ms=MINUTE)) is not None, \
        "BUY after a SELL, even on the same bars, is a new idea"


def test_a_held_proposal_outlives_its_deadline_and_release_gives_it_5_s() -> None:
    clock = Clock()
    book = ProposalBook(expiry_s=30.0, clock=clock)
    p = offer(book, answer(Action.BUY, changed=True))
    book.hold(p)
    clock.t += 120  # the trader takes his time in the Modify dialog
    assert book.expire_due() == [] and p.status is ProposalStatus.PENDING
    assert book.check_approvable(p, None, confirm_drift=False).ok, "a held proposal is not refused as expired"
    book.release(p)
    assert p.remaining_s(clock()) == pytest.approx(5.0)
    clock.t += 4.9
    assert book.expire_due() == [] and book.pending_for("BTCUSDT") is p
    clock.t += 0.2
    assert book.expire_due() == [p] and book.pending_for("BTCUSDT") is None


def test_a_held_proposal_is_not_superseded_while_the_trader_edits_it() -> None:
    book = ProposalBook(clock=Clock())
    buy = offer(book, answer(Action.BUY, changed=True))
    book.hold(buy)
    sell = offer(book, answer(Action.SELL, changed=True))
    assert buy.status is ProposalStatus.PENDING and sell is not None
    assert book.pending_for("BTCUSDT") is sell  # the newest


def test_a_held_proposal_released_after_a_newer_one_of_another_action_is_superseded() -> None:
    clock = Clock()
    superseded: list[Proposal] = []
    book = ProposalBook(expiry_s=30.0, clock=clock, on_superseded=superseded.append)
    buy = offer(book, answer(Action.BUY, changed=True))
    book.hold(buy)  # the trader opens Modify
    sell = offer(book, answer(Action.SELL, changed=True))
    book.release(buy)  # ... and cancels
    assert buy.status is ProposalStatus.EXPIRED and buy.reason == "superseded by SELL"
    assert superseded == [buy]
    assert book.pending() == [sell]


def test_a_held_proposal_released_with_only_older_or_same_action_proposals_gets_its_grace() -> None:
    clock = Clock()
    book = ProposalBook(expiry_s=30.0, clock=clock, on_superseded=lambda p: pytest.fail("nothing supersedes it"))
    sell = offer(book, answer(Action.SELL, changed=True, symbol="ETHUSDT"))  # another symbol's
    buy = offer(book, answer(Action.BUY, changed=True))
    book.hold(buy)
    clock.t += 60
    book.release(buy)
    assert buy.status is ProposalStatus.PENDING and buy.remaining_s(clock()) == pytest.approx(5.0)
    assert sell.status is ProposalStatus.PENDING
