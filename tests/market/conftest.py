"""Market tests run with the market events' fields write-once: the classes are not frozen (building a frozen
dataclass costs several times more on the feed's hot path), so these tests are what holds the rule that nothing
mutates an event every subscriber shares (app/models.py)."""

from __future__ import annotations

import pytest

from app.models import guard_market_events


@pytest.fixture(autouse=True, scope="session")
def _market_events_write_once():
    guard_market_events(True)
    yield
    guard_market_events(False)
