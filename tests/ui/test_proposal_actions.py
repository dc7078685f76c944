"""The price-moved question (offscreen, a real paper desk and journal): it names the order it would send (side,
quantity, symbol), the price move (from, to, by how much, and the bound), and its Send button says the same order, so
the trader never confirms an order he cannot see (issue 16: the drift dialog did not name the symbol, side or
quantity)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from PySide6 import QtWidgets

from app.llm.schema import Action, DecisionBody
from app.market.instruments import Instruments
from app.trading.broker import PaperBroker
from app.trading.journal import Journal
from app.trading.proposals import ProposalStatus
from app.ui.proposal_actions import ProposalActions
from tests.conftest import wait_until
from tests.trading.test_auto_approve import scripted, state
from tests.trading.test_desk_commands import BTC, NOW, XRP, make_desk, market


@pytest.fixture
def desk(tmp_path: Path):
    instruments = Instruments.of(XRP, BTC)
    journal = Journal(tmp_path / "journal.sqlite3")
    d = make_desk(PaperBroker(submit_latency_s=0.001, instruments=instruments, clock_ms=lambda: NOW), journal,
                  instruments, ["XRPUSDT", "BTCUSDT"])
    yield d
    journal.close()


@pytest.mark.asyncio
async def test_the_price_moved_question_names_the_order_and_the_move(qtbot, desk):
    market(desk, "XRPUSDT", 0.6012)
    p = desk.on_decision(scripted("XRPUSDT", DecisionBody(action=Action.BUY, size_pct=1, confidence=0.6,
                                                          rationale="t")), state("XRPUSDT"))
    market(desk, "XRPUSDT", 0.6100)  # +1.46 %, beyond the 0.5 % bound
    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    said = []
    actions = ProposalActions(desk, said.append, parent)
    actions.approve(p)
    await wait_until(lambda: isinstance(actions.dialog, QtWidgets.QMessageBox), what="the price-moved question")
    box = actions.dialog
    qty = desk.implied_edits(p).qty
    order = f"BUY {XRP.fmt_qty(qty)} XRPUSDT"
    assert box.windowTitle() == "Price moved · PAPER"
    text = box.text()
    assert text.startswith(f"{order} market: the price moved +1.46 % since the proposal (0.6012 -> 0.6100); "
                           "the bound is 0.5 %"), text
    assert text.endswith(f"Send {order} anyway as a PAPER order?")
    yes = box.button(QtWidgets.QMessageBox.StandardButton.Yes)
    assert yes.text() == f"Send PAPER {order}"
    assert box.defaultButton() is box.button(QtWidgets.QMessageBox.StandardButton.No)
    yes.click()
    await wait_until(lambda: p.status is ProposalStatus.APPROVED, what="the confirmed order")
    await wait_until(lambda: said and said[-1].ok, what="the confirmation")
    assert said[-1].message.startswith(f"PAPER {order} market sent · order")
    assert desk.broker.get(p.order_id).request.qty == qty > D(0)


@pytest.mark.asyncio
async def test_a_falling_price_is_named_with_its_sign_for_a_sell(qtbot, desk):
    market(desk, "BTCUSDT", 61_400.0)
    market(desk, "XRPUSDT", 0.6012)
    p = desk.on_decision(scripted("BTCUSDT", DecisionBody(action=Action.SELL, size_pct=1, confidence=0.6,
                                                          rationale="t")), state("BTCUSDT"))
    market(desk, "BTCUSDT", 60_000.0)
    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    actions = ProposalActions(desk, lambda _r: None, parent)
    actions.approve(p)
    await wait_until(lambda: isinstance(actions.dialog, QtWidgets.QMessageBox), what="the price-moved question")
    qty = desk.implied_edits(p).qty
    assert actions.dialog.text().startswith(
        f"SELL {BTC.fmt_qty(qty)} BTCUSDT market: the price moved -2.28 % since the proposal (61,400.00 -> "
        "60,000.00)")
    actions.dialog.button(QtWidgets.QMessageBox.StandardButton.No).click()
    assert p.status is ProposalStatus.PENDING
