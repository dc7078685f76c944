"""The session tells the decision service whether market data is live: a dropped feed is not a quiet market. Real
parts: the built-in exchange on 127.0.0.1, the feed connection, the offline rules."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.llm.schema import CacheStatus
from app.models import FeedState
from app.session import Session
from tests.conftest import wait_until


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_no_decision_is_asked_while_the_feed_reconnects_and_ask_now_says_why(tmp_path):
    session = Session(Settings(symbol="BTCUSDT", symbols=["BTCUSDT"], sim_process=False, history_bars=0,
                               decision_source="rules", decision_timeframe="1s", decision_interval_s=0.5,
                               sim_trades_per_s=50.0,
                               journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    try:
        svc = session.decisions
        await wait_until(lambda: session.feed.state is FeedState.LIVE and svc.stats.requests >= 2, timeout=20,
                         what="decisions asked while the feed is live")
        assert session.why_not_live("BTCUSDT") is None
        await session.simulator.stop()  # the exchange goes away: the feed reconnects, in vain
        await wait_until(lambda: session.feed.state is not FeedState.LIVE, timeout=10, what="the feed down")
        requests = svc.stats.requests
        await wait_until(lambda: svc.stats.skipped_not_live >= 2, timeout=10, what="scheduled asks skipped")
        assert svc.stats.requests == requests, "no decision from a market that stopped coming"
        assert svc.ask_now("BTCUSDT") is None
        card = svc.decisions[-1]
        assert card.meta.cache_status is CacheStatus.ERROR
        assert card.meta.error == f"no_live_data: no live market data: {session.feed.state.name}"
    finally:
        await session.stop()
