"""The Decisions dock as the trader sees it: pending proposals pinned on top, one line per symbol, the history; badges
with the answer's own latency, inert model text, errors as errors; rows updated in place; a new proposal announced;
the keys A / R / M acting on the proposal the dock highlights, never another symbol's unseen; Modify holding the
proposal while it is edited."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.config import Settings
from app.llm.cache import DecisionCache
from app.llm.providers import OfflineProvider, OpenAIProvider
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.llm.service import DecisionEvent, DecisionService
from app.models import Quote, Side, Trade
from app.session import Session
from app.trading.proposals import ProposalBook, ProposalStatus
from app.ui import theme
from app.ui.decisions import DecisionsPanel, PendingCard
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from app.ui.proposal_actions import ModifyDialog
from tests.conftest import wait_until
from tests.llm.dev_server import load as load_dev_server
from tests.llm.test_service import SYMBOL, market_with_bars
from tests.trading.test_proposals import state

BUY = DecisionBody(action=Action.BUY, size_pct=5.0, confidence=0.8, rationale="scripted proposal")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def decision(symbol: str, body: DecisionBody = BUY) -> Decision:
    meta = DecisionMeta(provider="p", model="m", prompt_version="v", latency_ms=900.0, cache_status=CacheStatus.MISS)
    return Decision(symbol=symbol, timeframe="1m", state_ms=int(time.time() * 1000), body=body, meta=meta)


def terminal(tmp_path, qtbot, clock: Clock | None = None) -> tuple[Session, MainWindow]:
    """The real window on a session that is not started: proposals are put on its desk by hand."""
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))
    if clock is not None:
        session.desk.proposals.clock = clock
    window = MainWindow(session, BufferingHandler())
    qtbot.addWidget(window)
    window.show()
    return session, window


def press(window: MainWindow, key: str) -> None:
    """A single-key shortcut as the window binds it (offscreen windows get no focus, so no key events)."""
    (action,) = [a for a in window.findChildren(QtGui.QAction) if a.shortcut() == QtGui.QKeySequence(key)]
    action.trigger()


def priced(session: Session, symbol: str, price: float) -> None:
    """A trade and a quote at ``price``: the paper broker fills market orders against the quote."""
    now_ms = int(time.time() * 1000)
    batch = [Trade(symbol, price, 1.0, Side.BUY, 1, now_ms, 0), Quote(symbol, price, 1e6, price, 1e6, 1, now_ms, 0)]
    session.desk.on_market(batch)
    session.desk.broker.on_market(batch)  # the session feeds the paper broker from its own subscription


@pytest.mark.asyncio
async def test_ask_now_fills_the_symbols_line_and_the_history_with_the_rules_answer(qtbot):
    svc = DecisionService(OfflineProvider(), market_with_bars(), timeframe="1s")
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    panel.show()
    assert "OFFLINE RULES" in panel.model_label.text()
    assert panel.cache_label.text() == "offline rules: no cache, answers in microseconds"
    (line,) = panel.lines
    assert line.action_label.text() == "—" and line.badge.isHidden()  # no answer yet, but the line is there
    qtbot.mouseClick(panel.ask_button, QtCore.Qt.MouseButton.LeftButton)
    await svc._in_flight[SYMBOL]
    panel.refresh()
    (line,) = panel.lines
    assert line.action_label.text() == svc.current[SYMBOL].decision.body.action.value
    assert re.fullmatch(r"OFFLINE · [\d,]+ µs", line.badge.text()), line.badge.text()  # the rules' own latency
    (entry,) = panel.history_lines
    assert entry.action_label.text() == line.action_label.text() and SYMBOL in entry.when.text()
    assert not panel.cards  # no proposal without a trading desk


@pytest.mark.asyncio
async def test_injected_rationale_is_inert_and_a_cached_answer_shows_its_own_latency_and_the_answers_age(qtbot):
    server = load_dev_server().start_server(fault="injection", fault_rate=1.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", cache=DecisionCache())
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    try:
        await svc.ask_now(SYMBOL)
        await svc.ask_now(SYMBOL)  # the same market: served from the cache
        panel.refresh()
        (line,) = panel.lines
        # The lookup's microseconds and the stored answer's age, never the original call's milliseconds.
        assert re.fullmatch(r"HIT · [\d,]+ µs · answer \d+ s old", line.badge.text()), line.badge.text()
        assert "confirmed ×1 by the cache" in line.detail.text()
        (entry,) = panel.history_lines  # the confirmation is not news: one line, the model call
        assert entry.badge.text().startswith("MISS · ") and entry.badge.text().endswith(" ms")
        rationale = svc.decisions[0].body.rationale
        assert "ignore" in rationale.lower()
        assert line.detail.textFormat() == QtCore.Qt.TextFormat.PlainText
        assert rationale.strip().splitlines()[0].startswith(line.detail.toolTip().rstrip("…"))
        assert panel.cache_label.text().startswith("last hour: 1 of 2 asks answered from the cache · 1 model call")
    finally:
        await svc.aclose()
        await provider.aclose()
        server.stop()


@pytest.mark.asyncio
async def test_a_failed_request_is_an_error_line_in_the_history_not_a_decision(qtbot):
    server = load_dev_server().start_server(fault="schema", fault_rate=1.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s")
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    try:
        await svc.ask_now(SYMBOL)
        panel.refresh()
        (entry,) = panel.history_lines
        assert entry.action_label.text() == "ERROR" and entry.badge.text() == "ERROR"
        assert "schema" in entry.rationale.text()
        assert panel.lines[0].action_label.text() == "—"  # an error is not the symbol's decision
    finally:
        await provider.aclose()
        server.stop()


def test_a_rationale_without_spaces_wraps_inside_a_narrow_card(qtbot):
    """A tiny model can answer "100,000,000,..." for a whole rationale: the card must still fit the panel, with the
    text kept (not cut) and the ordinary words left as they were."""
    digits = ",".join(["100"] * 30)  # 119 characters, no space
    book = ProposalBook()
    p = book.add(decision("BTCUSDT", BUY.model_copy(update={"rationale": f"Held: {digits}"})), None)
    card = PendingCard(p)
    qtbot.addWidget(card)
    panel_svc = DecisionService(OfflineProvider(), market_with_bars(), timeframe="1s")
    from app.view.decisions import decision_board

    (row,) = decision_board(panel_svc, book, book.instruments, book.clock()).pending
    card.show_row(row, target=False)
    card.setFixedWidth(300)
    card.show()
    assert card.rationale.minimumSizeHint().width() <= 300
    assert card.rationale.text().replace("\u200b", "") == f"Held: {digits}"
    assert card.rationale.text().startswith("Held: ")


@pytest.mark.asyncio
async def test_rows_update_in_place_and_a_new_proposal_is_announced(qtbot, tmp_path, monkeypatch):
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    beeps = []
    monkeypatch.setattr(QtWidgets.QApplication, "beep", staticmethod(lambda: beeps.append(1)))
    session.settings.sound_on_proposal = True
    panel = window.decisions_panel
    arrived = []
    panel.proposal_arrived.connect(arrived.append)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), None)
    window.refresh_slow(0.0)
    (card,) = panel.cards
    assert card.proposal is p and arrived == [p.id] and beeps == [1]
    assert card.property("flash") is True and window.decisions_dock.property("flash") is True
    assert window.pending_label.text() == "1 pending" and window.pending_label.isVisible()
    assert card.status_label.text() == "expires in 30 s" and card.numbers.text().startswith("price ")
    qtbot.waitUntil(lambda: card.property("flash") is False and window.decisions_dock.property("flash") is False,
                    timeout=theme.FLASH_MS * 10)
    # Later refreshes set texts on the same widgets; nothing is rebuilt, nothing announced again.
    rebuilds = (panel.pending.rebuilds, panel.symbols.rebuilds, panel.history.rebuilds)
    lines = panel.lines
    clock.t += 12
    for _ in range(3):
        window.refresh_slow(0.0)
    assert panel.cards == [card] and panel.lines == lines and arrived == [p.id] and beeps == [1]
    assert (panel.pending.rebuilds, panel.symbols.rebuilds, panel.history.rebuilds) == rebuilds
    assert card.status_label.text() == "expires in 18 s"
    # Reviewed: the card leaves the pinned section and the count goes.
    session.desk.reject(p.id)
    window.refresh_slow(0.0)
    assert panel.cards == [] and window.pending_label.isHidden()
    window.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_keys_act_on_the_symbol_on_screen_else_the_selected_card_never_another_symbol_unseen(qtbot, tmp_path):
    """The defect: with XRPUSDT on screen, A approved BTCUSDT's proposal the trader could not see."""
    session, window = terminal(tmp_path, qtbot)
    priced(session, "BTCUSDT", 60_000.0)
    btc = session.desk.on_decision(decision("BTCUSDT"), None)
    window.set_symbol("XRPUSDT")
    window.refresh_slow(0.0)
    (card,) = window.decisions_panel.cards
    assert card.property("target") is False  # nothing highlighted: no key will act on it
    assert "no pending proposal for XRPUSDT" in window.decisions_panel.target_hint.text()
    result = window.trading_panel
    result.last_result = None
    press(window, "A")
    await wait_until(lambda: result.last_result is not None, what="the answer to A")
    assert result.last_result.message == "no pending proposal for XRPUSDT" and not result.last_result.ok
    assert btc.status is ProposalStatus.PENDING
    # The trader clicks the BTCUSDT card: now it is the target, highlighted, and R rejects it.
    qtbot.mouseClick(card, QtCore.Qt.MouseButton.LeftButton)
    assert card.property("target") is True and card.target_label.isVisible()
    press(window, "R")
    assert btc.status is ProposalStatus.REJECTED
    # A proposal for the symbol on screen comes first, whatever was selected before.
    xrp = session.desk.on_decision(decision("XRPUSDT"), None)
    other = session.desk.on_decision(decision("BTCUSDT", BUY.model_copy(update={"action": Action.SELL})), None)
    window.decisions_panel.select(other.id)
    window.refresh_slow(0.0)
    assert window.decisions_panel.card_for(xrp.id).property("target") is True
    assert window.decisions_panel.card_for(other.id).property("target") is False
    press(window, "R")
    assert xrp.status is ProposalStatus.REJECTED and other.status is ProposalStatus.PENDING
    window.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_modify_shows_countdown_price_and_value_and_holds_the_proposal_while_open(qtbot, tmp_path):
    """The defect: the trader's edits were lost with "proposal is expired" when the countdown ran out mid-edit."""
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), None)
    window.refresh_slow(0.0)
    press(window, "M")  # BTCUSDT is on screen
    dialog = window.proposal_actions.dialog
    assert dialog is not None and dialog.isVisible() and dialog.proposal is p
    assert dialog.heading.text() == "BUY BTCUSDT" and "BTCUSDT" in dialog.windowTitle()
    assert dialog.countdown.text() == "held while you edit · 30 s left"
    assert dialog.price_label.text().startswith("60,000.00 now")
    dialog.qty.setText("0.002")
    assert dialog.value_label.text() == "120.00 USDT"  # live: 0.002 × 60,000
    window.refresh_slow(0.0)
    assert window.decisions_panel.cards[0].status_label.text() == "held: being modified"
    clock.t += 45  # the trader takes his time: past the deadline
    session.desk.tick()
    dialog.refresh()
    assert p.status is ProposalStatus.PENDING and "held while you edit" in dialog.countdown.text()
    qtbot.mouseClick(dialog.send_button, QtCore.Qt.MouseButton.LeftButton)
    await wait_until(lambda: p.status is not ProposalStatus.PENDING, what="the modified order")
    assert p.status is ProposalStatus.MODIFIED and p.edits.qty == Decimal("0.002")
    window.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_modify_cancelled_releases_the_proposal_with_a_few_seconds_to_act(qtbot, tmp_path):
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), None)
    window.proposal_actions.modify(p)
    clock.t += 45
    window.proposal_actions.dialog.reject()
    assert not p.held and p.status is ProposalStatus.PENDING and p.remaining_s(clock.t) == 5.0
    window.close()
    session.journal.close()


async def answer_of(window: MainWindow, key: str):
    """Press a proposal key and wait for what the trading panel's message line says."""
    result = window.trading_panel
    result.last_result = None
    press(window, key)
    await wait_until(lambda: result.last_result is not None, what=f"the answer to {key}")
    return result.last_result


@pytest.mark.asyncio
async def test_a_key_acts_on_the_proposal_drawn_not_on_one_that_replaced_it_since(qtbot, tmp_path):
    """The defect: a SELL superseded the highlighted BUY between two refreshes and A approved the SELL unseen."""
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    priced(session, "BTCUSDT", 60_000.0)
    buy = session.desk.on_decision(decision("BTCUSDT"), state())
    window.refresh_slow(0.0)
    assert window.decisions_panel.card_for(buy.id).property("target") is True  # what the trader sees
    sell = decision("BTCUSDT", BUY.model_copy(update={"action": Action.SELL}))
    session.desk.on_decision_event(DecisionEvent(sell, state(), changed=True, fresh=True))  # not drawn yet
    new = session.desk.proposals.pending_for("BTCUSDT")
    assert buy.status is ProposalStatus.EXPIRED and new.action is Action.SELL
    said = await answer_of(window, "A")
    assert not said.ok and "BUY BTCUSDT" in said.message and "superseded by SELL" in said.message
    assert new.status is ProposalStatus.PENDING and not session.desk.broker.orders
    # Now the SELL is on the board, highlighted. Another symbol put on screen takes the highlight off at once.
    window.refresh_slow(0.0)
    assert window.decisions_panel.card_for(new.id).property("target") is True
    window.set_symbol("ETHUSDT")
    said = await answer_of(window, "A")
    assert said.message == "no pending proposal for ETHUSDT" and new.status is ProposalStatus.PENDING
    window.set_symbol("BTCUSDT")  # back: A acts on the SELL it highlights
    assert window.decisions_panel.card_for(new.id).property("target") is True
    said = await answer_of(window, "A")
    assert said.ok and new.status is ProposalStatus.APPROVED
    window.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_the_price_moved_question_holds_the_proposal_until_answered(qtbot, tmp_path):
    """The defect: while "Price moved … Send anyway?" was open the proposal expired, and Yes said so."""
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), state(price=60_000.0))
    priced(session, "BTCUSDT", 61_000.0)  # +1.7 %, beyond the drift bound
    actions = window.proposal_actions
    actions.approve(p)
    await wait_until(lambda: isinstance(actions.dialog, QtWidgets.QMessageBox), what="the price-moved question")
    assert p.held
    clock.t += 45  # the trader thinks it over, past the deadline
    session.desk.tick()
    assert p.status is ProposalStatus.PENDING
    actions.dialog.button(QtWidgets.QMessageBox.StandardButton.Yes).click()
    await wait_until(lambda: p.status is not ProposalStatus.PENDING, what="the confirmed order")
    assert p.status is ProposalStatus.APPROVED and not p.held
    # Answered No (or closed): released, with a few seconds to act.
    q = session.desk.on_decision(decision("ETHUSDT"), state("ETHUSDT", price=3_000.0))
    priced(session, "ETHUSDT", 3_100.0)
    actions.approve(q)
    await wait_until(lambda: isinstance(actions.dialog, QtWidgets.QMessageBox) and q.held, what="the question")
    clock.t += 45
    session.desk.tick()
    actions.dialog.button(QtWidgets.QMessageBox.StandardButton.No).click()
    assert q.status is ProposalStatus.PENDING and not q.held and q.remaining_s(clock.t) == 5.0
    # Answered boxes are deleted, not kept as children of the window.
    await wait_until(lambda: not window.findChildren(QtWidgets.QMessageBox), what="the answered boxes deleted")
    assert actions.dialog is None
    window.close()
    session.journal.close()


@pytest.mark.asyncio
async def test_modify_does_not_open_on_a_proposal_that_is_over(qtbot, tmp_path):
    """The defect: a card stays up to one refresh after its deadline; Modify opened on it and the edits were lost."""
    clock = Clock(100.0)
    session, window = terminal(tmp_path, qtbot, clock)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), None)
    window.refresh_slow(0.0)
    clock.t += 31  # past the deadline; the desk's tick has not marked it yet, the card is still drawn
    said = await answer_of(window, "M")
    assert not said.ok and "expired" in said.message
    assert window.proposal_actions.dialog is None and not p.held
    session.desk.tick()
    assert p.status is ProposalStatus.EXPIRED
    window.proposal_actions.modify(p)  # its card's button, before the next refresh
    assert window.proposal_actions.dialog is None and not window.findChildren(ModifyDialog)
    window.close()
    session.journal.close()


def test_a_closed_modify_dialog_is_deleted(qtbot, tmp_path):
    session, window = terminal(tmp_path, qtbot)
    priced(session, "BTCUSDT", 60_000.0)
    p = session.desk.on_decision(decision("BTCUSDT"), None)
    for _ in range(3):
        window.proposal_actions.modify(p)
        assert isinstance(window.proposal_actions.dialog, ModifyDialog)
        window.proposal_actions.dialog.reject()
    qtbot.waitUntil(lambda: not window.findChildren(ModifyDialog))
    assert window.proposal_actions.dialog is None and p.status is ProposalStatus.PENDING
    window.close()
    session.journal.close()
