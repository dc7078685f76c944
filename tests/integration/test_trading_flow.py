"""End to end on the built-in exchange: a proposal appears, the trader approves it with the keyboard, the paper
fill appears in the blotter, the position and PnL update, and the journal holds every step. Modify sends the edited
order and the journal keeps both versions."""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal

import pytest
from PySide6 import QtCore, QtWidgets

from app.config import Settings
from app.llm import prompt
from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import MarketState
from app.session import Session
from app.trading.proposals import ProposalStatus
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from app.ui.reports import show_report
from tests.conftest import wait_until


class ScriptedProvider:
    """Answers what the test says (``body``): the one scripted part. Everything downstream is the real terminal."""

    name = "scripted"
    model = "scripted-model"
    prompt_version = prompt.PROMPT_VERSION

    def __init__(self, body: DecisionBody) -> None:
        self.body = body

    async def decide(self, state: MarketState) -> Decision:
        meta = DecisionMeta(provider=self.name, model=self.model, prompt_version=self.prompt_version,
                            latency_ms=1.0, cache_status=CacheStatus.MISS)
        return Decision.about(state, self.body, meta)

    async def aclose(self) -> None:
        pass


BUY = DecisionBody(action=Action.BUY, size_pct=5.0, stop_loss_pct=1.0, take_profit_pct=2.0, confidence=0.8,
                   rationale="scripted test proposal")
HOLD = DecisionBody(action=Action.HOLD, size_pct=0.0, confidence=0.5, rationale="scripted: nothing to do")


@contextlib.asynccontextmanager
async def open_terminal(tmp_path):
    """The terminal on the built-in exchange, live, with the scripted provider; closed cleanly afterwards."""
    settings = Settings(sim_trades_per_s=100.0, history_bars=60, decision_timeframe="1m",
                        journal_path=tmp_path / "journal.sqlite3")
    session = Session(settings)
    # It holds until a test asks for a proposal (new_proposal): the service asks every few seconds from the start.
    session.decisions.provider = ScriptedProvider(HOLD)
    await session.start()
    window = MainWindow(session, BufferingHandler())
    window.show()
    window.bridge.start()
    await wait_until(lambda: session.market["BTCUSDT"].trades > 5, timeout=15, what="live trades")
    await wait_until(lambda: session.desk.books["BTCUSDT"].has_snapshot, timeout=10, what="a depth snapshot")
    await wait_until(lambda: session.desk.last_price("BTCUSDT") is not None, timeout=10, what="a last price")
    try:
        yield session, window, settings.journal_path
    finally:
        window.close()
        window.deleteLater()
        await session.stop()


async def new_proposal(session, window):
    """A new proposal, made as the service makes one: the model's answer changes from HOLD to BUY."""
    before = len(session.desk.proposals.proposals)
    provider = session.decisions.provider
    for body in (HOLD, BUY):
        provider.body = body
        await session.decisions.ask_now("BTCUSDT")
    provider.body = HOLD  # one proposal: the service's next asks change the decision back, proposing nothing
    await wait_until(lambda: len(session.desk.proposals.proposals) > before, what="a proposal")
    window.bridge.tick()
    window.refresh_slow(0.0)
    return session.desk.proposals.newest_pending()


def journal_rows(path, sql):
    with sqlite3.connect(path) as c:
        c.row_factory = sqlite3.Row
        return [dict(r) for r in c.execute(sql)]


@pytest.mark.asyncio
async def test_approve_with_keyboard_fills_updates_position_and_journals_everything(qtbot, tmp_path):
    async with open_terminal(tmp_path) as (session, window, journal):
        p = await new_proposal(session, window)
        card = window.decisions_panel.cards[0]
        assert card.proposal is p and card.buttons["Approve"].isEnabled()
        assert "expires in" in card.status_label.text()

        qtbot.keyClick(window, QtCore.Qt.Key.Key_A)
        await wait_until(lambda: session.desk.fills, timeout=5, what="the paper fill")
        await wait_until(lambda: session.desk.portfolio.position("BTCUSDT").qty > 0, what="a long position")
        window.refresh_slow(0.0)

        assert p.status is ProposalStatus.APPROVED
        # A market order may walk more than one level of the book: the position is the sum of its fills.
        await wait_until(lambda: p.order_id is not None and not session.desk.broker.get(p.order_id).status.is_open,
                         what="the model's order done")
        pos = session.desk.portfolio.position("BTCUSDT")
        fills = [f for f in session.desk.fills if f.order_id == p.order_id]
        fill = fills[0]
        qty = sum((f.qty for f in fills), Decimal(0))
        assert pos.qty == qty
        assert abs(pos.avg_price - sum((f.qty * f.price for f in fills), Decimal(0)) / qty) < Decimal("1e-9")
        assert window.blotter.fills.rowCount() >= 1 and window.blotter.positions.rowCount() == 1
        # Bracket legs rest at the broker and their prices are drawn on the chart.
        sl, tp = session.desk.bracket_levels("BTCUSDT")
        assert sl is not None and tp is not None and sl < fill.price < tp
        assert window.chart.position_lines["sl"].isVisible() and window.chart.position_lines["entry"].isVisible()
        # Approved, it is no longer pending: its card leaves the pinned section (the card object may already be gone).
        window.decisions_panel.refresh()
        assert all(c.proposal is not p for c in window.decisions_panel.cards)

        proposals = journal_rows(journal, "SELECT * FROM proposals")
        assert p.id in [r["id"] for r in proposals]
        reviews = journal_rows(journal, f"SELECT * FROM reviews WHERE proposal_id = '{p.id}'")
        assert [r["kind"] for r in reviews] == ["APPROVED"]
        orders = journal_rows(journal, "SELECT * FROM orders WHERE origin = 'MODEL'")
        assert len(orders) == 1 and orders[0]["proposal_id"] == p.id
        fills = journal_rows(journal, "SELECT * FROM fills")
        assert fills and Decimal(fills[0]["qty"]) == fill.qty and Decimal(fills[0]["price"]) == fill.price


@pytest.mark.asyncio
async def test_modify_sends_the_edited_order_and_the_journal_keeps_both(qtbot, tmp_path):
    async with open_terminal(tmp_path) as (session, window, journal):
        p = await new_proposal(session, window)
        original = session.desk.implied_edits(p)
        window.proposal_actions.modify(p)
        dialog = window.proposal_actions.dialog
        assert dialog is not None and dialog.isVisible()
        dialog.qty.setText("0.00123")
        dialog.sl.setText("")  # no bracket for this one
        dialog.tp.setText("")
        qtbot.mouseClick(dialog.send_button, QtCore.Qt.MouseButton.LeftButton)
        await wait_until(lambda: p.order_id is not None, timeout=5, what="the modified order")
        await wait_until(lambda: session.desk.fills, timeout=5, what="its fill")

        assert p.status is ProposalStatus.MODIFIED
        order = session.desk.broker.get(p.order_id)
        assert order.request.qty == Decimal("0.00123") and order.request.qty != original.qty
        (review,) = journal_rows(journal, f"SELECT * FROM reviews WHERE proposal_id = '{p.id}'")
        assert review["kind"] == "MODIFIED"
        assert '"0.00123"' in review["edited"] and f'"{original.qty}"' in review["original"]


@pytest.mark.asyncio
async def test_refusals_say_why_and_send_nothing(qtbot, tmp_path):
    async with open_terminal(tmp_path) as (session, window, _):
        desk = session.desk
        sent = len(desk.broker.orders)
        # A quantity below the instrument's minimum (the built-in exchange's BTCUSDT filters) from the order ticket.
        panel = window.trading_panel
        panel.qty.setText("0.000001")
        qtbot.mouseClick(panel.submit, QtCore.Qt.MouseButton.LeftButton)
        await wait_until(lambda: panel.last_result is not None, what="a result")
        assert not panel.last_result.ok and panel.last_result.message == (
            "risk: quantity 0.000001 BTC is below the minimum 0.00001 for BTCUSDT")
        # Not a number.
        panel.qty.setText("abc")
        qtbot.mouseClick(panel.submit, QtCore.Qt.MouseButton.LeftButton)
        assert "not a number" in panel.message.text()
        # An expired proposal cannot be approved.
        p = await new_proposal(session, window)
        p.expires_at = desk.proposals.clock() - 1
        result = await desk.approve(p.id)
        assert not result.ok and "expired" in result.message
        desk.tick()  # what the session does every second: it is marked expired
        # A limit far outside the band.
        panel.qty.setText("0.001")
        panel.type.setCurrentText("LIMIT")
        panel.price.setText("1000")
        panel.last_result = None
        qtbot.mouseClick(panel.submit, QtCore.Qt.MouseButton.LeftButton)
        await wait_until(lambda: panel.last_result is not None, what="a result")
        assert not panel.last_result.ok and "band" in panel.last_result.message
        # A price no market has: refused in words where it is typed (not an arithmetic error from the tick check).
        panel.price.setText("1e30")
        qtbot.mouseClick(panel.submit, QtCore.Qt.MouseButton.LeftButton)
        assert panel.message.text().startswith("limit price 1,000,000,000,000,000,000,000,000,000,000 is too large")
        # After the kill switch nothing new passes.
        await desk.kill_switch()
        p2 = await new_proposal(session, window)
        result = await desk.approve(p2.id)
        assert not result.ok and "halt" in result.message.lower()
        assert len(desk.broker.orders) == sent



@pytest.mark.asyncio
async def test_rejected_proposal_is_in_the_counterfactual_report_and_the_csv_export(qtbot, tmp_path):
    async with open_terminal(tmp_path) as (session, window, _journal):
        rejected = await new_proposal(session, window)
        window.proposal_actions.reject(rejected)
        report = show_report(window, session.journal, session.market, session.desk.portfolio.equity())
        text = report.findChild(QtWidgets.QPlainTextEdit).toPlainText()
        assert rejected.id in text and "REJECTED" in text and "value of your overrides" in text
        report.close()
        paths = session.journal.export_csv(tmp_path / "csv")
        assert {p.name for p in paths} >= {"proposals.csv", "reviews.csv", "orders.csv", "fills.csv"}
        assert rejected.id in (tmp_path / "csv" / "reviews.csv").read_text()
