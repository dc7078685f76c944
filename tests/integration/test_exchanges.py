"""The terminal's session on each exchange protocol, against the built-in exchange speaking that protocol."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.models import FeedState
from app.session import Session
from tests.conftest import wait_until


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["binance", "binance-futures", "coinbase", "kraken"])
async def test_session_streams_five_symbols_over_each_protocol(protocol, tmp_path):
    settings = Settings(sim_protocol=protocol, sim_trades_per_s=60.0, history_bars=20,
                        journal_path=tmp_path / "j.sqlite3")
    session = Session(settings)
    assert len(session.symbols) == 5
    await session.start()
    try:
        await wait_until(lambda: all(session.market[s].trades > 0 and session.market[s].quote is not None
                                     for s in session.symbols), timeout=20, what="trades and quotes for all symbols")
        assert session.feed.state is FeedState.LIVE
        assert session.feed.rejected_total == 0
        for s in session.symbols:
            q = session.market[s].quote
            assert q.bid < q.ask
            assert session.desk.last_price(s) is not None
        assert session.history_loaded["BTCUSDT 1m"] == 20  # the built-in exchange serves history to every dialect
    finally:
        await session.stop()
