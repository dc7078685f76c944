"""The decision panel as the trader sees it: cards newest first, badges, inert model text, errors as errors."""

from __future__ import annotations

import pytest
from PySide6 import QtCore

from app.llm.cache import DecisionCache
from app.llm.providers import OfflineProvider, OpenAIProvider
from app.llm.schema import CacheStatus
from app.llm.service import DecisionService
from app.ui.decisions import DecisionCard, DecisionsPanel
from tests.llm.dev_server import load as load_dev_server
from tests.llm.test_service import SYMBOL, market_with_bars


@pytest.mark.asyncio
async def test_ask_now_button_adds_an_offline_card_newest_first(qtbot):
    svc = DecisionService(OfflineProvider(), market_with_bars(), timeframe="1s")
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    panel.show()
    assert "OFFLINE RULES" in panel.model_label.text()
    for _ in range(2):
        qtbot.mouseClick(panel.ask_button, QtCore.Qt.MouseButton.LeftButton)
        await svc._in_flight[SYMBOL]
    panel.refresh()
    cards = panel.cards
    assert len(cards) == 2
    assert all(c.badge.text() == "OFFLINE" for c in cards)
    assert cards[0].decision is svc.decisions[-1]  # newest on top
    assert cards[0].action_label.text() == svc.decisions[-1].body.action.value


@pytest.mark.asyncio
async def test_injected_rationale_is_inert_plain_text_and_cache_badges_show(qtbot):
    server = load_dev_server().start_server(fault="injection", fault_rate=1.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s", cache=DecisionCache())
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    try:
        await svc.ask_now(SYMBOL)
        await svc.ask_now(SYMBOL)
        panel.refresh()
        newest, oldest = panel.cards
        assert oldest.badge.text() == "MISS"
        assert newest.badge.text().startswith("HIT")
        rationale = svc.decisions[0].body.rationale
        assert "ignore" in rationale.lower()
        assert oldest.rationale.text() == rationale
        assert oldest.rationale.textFormat() == QtCore.Qt.TextFormat.PlainText
        assert "1 hit" in panel.cache_label.text() and "1 miss" in panel.cache_label.text()
    finally:
        await svc.aclose()
        await provider.aclose()
        server.stop()


@pytest.mark.asyncio
async def test_a_failed_request_is_an_error_card_without_numbers(qtbot):
    server = load_dev_server().start_server(fault="schema", fault_rate=1.0)
    provider = OpenAIProvider(server.url, "dev-model", timeout_s=5, max_retries=0)
    svc = DecisionService(provider, market_with_bars(), timeframe="1s")
    panel = DecisionsPanel(svc, SYMBOL)
    qtbot.addWidget(panel)
    try:
        await svc.ask_now(SYMBOL)
        panel.refresh()
        (card,) = panel.cards
        assert isinstance(card, DecisionCard)
        assert card.action_label.text() == "ERROR" and card.badge.text() == "ERROR"
        assert card.decision.meta.cache_status is CacheStatus.ERROR and card.decision.body is None
        assert "schema" in card.rationale.text()
    finally:
        await provider.aclose()
        server.stop()


def test_a_rationale_without_spaces_wraps_inside_a_narrow_card(qtbot):
    """A tiny model can answer "100,000,000,..." for a whole rationale: the card must still fit the panel, with the
    text kept (not cut) and the ordinary words left as they were."""
    from app.llm.schema import Action, Decision, DecisionBody, DecisionMeta

    digits = ",".join(["100"] * 30)  # 119 characters, no space
    body = DecisionBody(action=Action.HOLD, size_pct=0, confidence=0.5, rationale=f"Held: {digits}")
    meta = DecisionMeta(provider="local", model="m", prompt_version="v", latency_ms=1.0,
                        cache_status=CacheStatus.MISS)
    card = DecisionCard(Decision(symbol="BTCUSDT", timeframe="1m", state_ms=0, body=body, meta=meta))
    qtbot.addWidget(card)
    card.setFixedWidth(300)
    card.show()
    assert card.rationale.minimumSizeHint().width() <= 300
    assert card.rationale.text().replace("\u200b", "") == f"Held: {digits}"
    assert card.rationale.text().startswith("Held: ")
