"""The Decisions dock's read model, without Qt: what the trader reads (pending proposals in the symbol's precision
with countdown and order value, one line per symbol, the history, the cache line in plain words) and what the keys
A / R / M act on. Real service, real cache, real proposal book; an explicit clock instead of waiting."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal as D

import pytest

from app.llm import prompt
from app.llm.cache import CacheStats, DecisionCache
from app.llm.providers import OfflineProvider
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.llm.service import DecisionService
from app.market.features import MarketState
from app.market.instruments import Instrument, Instruments
from app.market.state import MarketData
from app.models import Side, Trade
from app.trading.proposals import ProposalBook
from app.view.decisions import audit_text, badge_text, cache_line, decision_board, duration_text, key_target

T0 = 1_700_000_000_000
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_notional=D("5"))
BUY = DecisionBody(action=Action.BUY, size_pct=5.0, stop_loss_pct=1.0, take_profit_pct=2.0, confidence=0.8,
                   rationale="momentum above VWAP\nsecond line not shown")


class Clock:
    """A clock the test moves: the service, the cache and the proposal book share it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Scripted:
    """A model that answers BUY in 1.8 s for 1 cent: the one scripted part."""

    name = "scripted"
    model = "scripted-model"
    prompt_version = prompt.PROMPT_VERSION

    def __init__(self, body: DecisionBody = BUY) -> None:
        self.body = body
        self.calls = 0

    async def decide(self, state: MarketState) -> Decision:
        self.calls += 1
        meta = DecisionMeta(provider=self.name, model=self.model, prompt_version=self.prompt_version,
                            latency_ms=1800.0, cost_usd=0.01, prompt_tokens=500, completion_tokens=50,
                            cache_status=CacheStatus.MISS)
        return Decision.about(state, self.body, meta)


def market(symbols=("XRPUSDT", "BTCUSDT"), seconds: int = 90) -> MarketData:
    """``seconds`` one-second bars of XRP near 0.6012 (the other symbols get no trades: no answer yet)."""
    m = MarketData(list(symbols), capacity=10_000)
    trades = [Trade("XRPUSDT", 0.6012 + (i % 5) * 0.0001, 100.0, Side.BUY, i, T0 + i * 1000, 0)
              for i in range(seconds)]
    m.apply(trades)
    return m


def service(clock: Clock, *, cache: bool = True, provider=None) -> DecisionService:
    mk = market()
    return DecisionService(provider or Scripted(), mk, timeframe="1s", clock=clock,
                           # 1 s bars: the cache scales its TTL to the bar (ttl_s is for 1m bars), so 75 s here
                           cache=DecisionCache(clock=clock, ttl_s=75.0 * 60) if cache else None,
                           market_ms=lambda: mk.last_exchange_ms)


def meta(status: CacheStatus, latency_ms: float, age_s: float | None = None) -> DecisionMeta:
    return DecisionMeta(provider="p", model="m", prompt_version="v", latency_ms=latency_ms, cache_status=status,
                        cache_age_s=age_s)


def test_a_cached_answer_shows_its_own_latency_in_microseconds_and_the_original_answers_age():
    d = Decision(symbol="XRPUSDT", timeframe="1m", state_ms=0, body=BUY, meta=meta(CacheStatus.SIMILAR, 0.014, 34.0))
    assert badge_text(d) == "SIMILAR · 14 µs · answer 34 s old"
    assert badge_text(d, extra_age_s=60) == "SIMILAR · 14 µs · answer 2 min old"  # the answer keeps ageing
    fresh = Decision(symbol="XRPUSDT", timeframe="1m", state_ms=0, body=BUY, meta=meta(CacheStatus.MISS, 1234.0))
    assert badge_text(fresh) == "MISS · 1,234 ms"
    assert [duration_text(s) for s in (14, 180, 4320)] == ["14 s", "3 min", "1.2 h"]


@pytest.mark.asyncio
async def test_symbol_lines_count_cache_confirmations_and_the_history_keeps_only_news():
    clock = Clock()
    svc = service(clock)
    await svc.ask_now("XRPUSDT")  # a model call
    for _ in range(2):
        clock.t += 5
        await svc.ask_now("XRPUSDT")  # the same market: answered from the cache
    clock.t += 3
    board = decision_board(svc, ProposalBook(clock=clock), Instruments(loaded={"XRPUSDT": XRP}), clock.t,
                           symbols=svc.market.symbols)
    xrp, btc = board.symbols
    assert (xrp.symbol, xrp.action, xrp.confirmations, xrp.fresh) == ("XRPUSDT", "BUY", 2, False)
    assert xrp.age_s == 3.0 and xrp.action_age_s == 13.0  # from the explicit clock, not the wall
    assert xrp.standing_text == "BUY for 13 s · confirmed ×2 by the cache"
    assert re.fullmatch(r"HIT · [\d,]+ µs · answer 1[03] s old", xrp.badge_text), xrp.badge_text
    assert xrp.rationale == "momentum above VWAP"  # the first line
    assert (btc.action, btc.badge_text, btc.age_s) == ("—", "no answer yet", None)  # no data yet, still a line
    assert [(h.action, h.badge) for h in board.history] == [("BUY", "MISS")]  # confirmations are not news
    assert board.keys[1] == ("XRPUSDT", "BTCUSDT")


@pytest.mark.asyncio
async def test_the_cache_line_says_in_plain_words_what_the_cache_did_in_the_last_hour():
    clock = Clock()
    svc = service(clock)
    await svc.ask_now("XRPUSDT")
    for _ in range(2):
        clock.t += 5
        await svc.ask_now("XRPUSDT")
    assert cache_line(svc) == ("last hour: 2 of 3 asks answered from the cache · 1 model call · saved 4 s and $0.02 "
                               "· audit (since start): no checks yet")
    # The audit counts since start, not in the hour, and its checks are model calls the hour's count leaves out.
    assert audit_text(CacheStats(audits=35, audits_agreed=34)) == (
        "audit (since start): agrees 97 % of 35 checks, each a model call")
    assert audit_text(CacheStats(audits=1, audits_agreed=1)) == (
        "audit (since start): agrees 100 % of 1 check, a model call")
    clock.t += 2 * 3600  # an hour later the window is empty again
    assert cache_line(svc).startswith("last hour: 0 of 0 asks answered from the cache · 0 model calls")


def test_without_a_cache_the_line_says_why():
    clock = Clock()
    assert cache_line(service(clock, cache=False, provider=OfflineProvider())) == (
        "offline rules: no cache, answers in microseconds")
    assert cache_line(service(clock, cache=False)) == "cache off: every ask is a model call"


def _proposal(book: ProposalBook, symbol: str, state: MarketState | None, body: DecisionBody = BUY):
    d = Decision(symbol=symbol, timeframe="1m", state_ms=T0, body=body, meta=meta(CacheStatus.MISS, 900.0))
    return book.add(d, state)


@pytest.mark.asyncio
async def test_a_pending_row_has_price_order_value_and_countdown_in_the_symbols_precision():
    clock = Clock()
    svc = service(clock)
    await svc.ask_now("XRPUSDT")
    book = ProposalBook(clock=clock, expiry_s=30, instruments=Instruments(loaded={"XRPUSDT": XRP}))
    p = _proposal(book, "XRPUSDT", svc.current["XRPUSDT"].state)
    price = D(str(svc.current["XRPUSDT"].state.last_price))
    clock.t += 12

    def order_of(q):
        return book.implied_edits(q, equity=D("10000"), price=price, position_qty=D(0))

    board = decision_board(svc, book, book.instruments, clock.t, symbols=svc.market.symbols,
                           order_of=order_of, price_of=lambda s: price)
    (row,) = board.pending
    qty = order_of(p).qty  # 5 % of 10,000 at the price, down to XRP's 0.1 lot
    assert row.key == p.id and row.symbol == "XRPUSDT" and row.action == "BUY"
    assert row.price == XRP.fmt_price(price) and len(row.price.split(".")[1]) == 4  # 0.6012, never 0.60
    assert row.order_value == f"{XRP.fmt_money(qty * price)} USDT"
    assert row.order_text.startswith(f"BUY {XRP.fmt_qty(qty)} XRP") and "SL 1.00%" in row.order_text
    assert row.countdown_s == 18.0 and not row.held
    assert next(r for r in board.symbols if r.symbol == "XRPUSDT").pending
    book.hold(p)
    clock.t += 60  # held: past its deadline, still pending and shown as held
    book.expire_due()
    (row,) = decision_board(svc, book, book.instruments, clock.t).pending
    assert row.held and row.key == p.id


def test_the_keys_act_on_the_symbol_on_screen_else_the_selected_card_never_an_unseen_one():
    clock = Clock()
    book = ProposalBook(clock=clock)
    btc = _proposal(book, "BTCUSDT", None)
    # XRPUSDT on screen, only a BTCUSDT proposal: nothing (the old code approved BTCUSDT here).
    assert key_target(book.pending(), "XRPUSDT", None) == (None, "no pending proposal for XRPUSDT")
    # The trader clicked the BTCUSDT card: that one.
    assert key_target(book.pending(), "XRPUSDT", btc.id)[0] == btc.id
    # A proposal for the symbol on screen comes first, the newest of them.
    xrp_old = _proposal(book, "XRPUSDT", None)
    xrp_new = _proposal(book, "XRPUSDT", None, BUY.model_copy(update={"size_pct": 2.0}))
    assert key_target(book.pending(), "XRPUSDT", btc.id) == (xrp_new.id, "the newest pending proposal for XRPUSDT")
    assert xrp_old.id != xrp_new.id


@pytest.mark.asyncio
async def test_asks_that_waited_for_a_running_model_call_are_not_counted_as_answered_from_the_cache():
    # A slow model folds the asks that arrive while it thinks into one follow-up: those were answered by that call,
    # not by the cache, and the cache line says so apart (it said "N of M answered from the cache" for all of them).
    clock = Clock()
    release = asyncio.Event()

    class Slow(Scripted):
        async def decide(self, state: MarketState) -> Decision:
            await release.wait()
            return await super().decide(state)

    svc = service(clock, provider=Slow())
    task = svc.ask_now("XRPUSDT")
    for _ in range(3):  # the first asks for a follow-up, the next two fold into it
        svc.ask_now("XRPUSDT")
    release.set()
    await task
    w = svc.recent()
    assert (w.asks, w.model_calls, w.folded, w.served - w.folded) == (4, 1, 2, 1)  # the follow-up: from the cache
    assert cache_line(svc).startswith(
        "last hour: 1 of 4 asks answered from the cache, 2 by a call already running · 1 model call ·")
