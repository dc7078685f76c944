"""A depth diff out of sequence: the local book stops trusting itself, resyncs from the exchange's REST snapshot,
and its best bid and ask match the exchange's own again."""

from __future__ import annotations

import time

import pytest

from app.config import Settings
from app.models import BookUpdate
from app.session import Session
from tests.conftest import wait_until


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["binance", "binance-futures"])
async def test_out_of_sequence_diff_triggers_a_resync_and_the_book_matches_the_server(protocol, tmp_path):
    session = Session(Settings(symbols=["BTCUSDT"], sim_trades_per_s=50.0, history_bars=10, sim_protocol=protocol,
                               journal_path=tmp_path / "j.sqlite3"))
    await session.start()
    try:
        book = session.desk.books["BTCUSDT"]
        await wait_until(lambda: book.has_snapshot and not book.needs_resync and book.last_update_id > 0,
                         timeout=15, what="a synced book")
        gaps = book.gaps
        # A diff that skips ids, as when a frame is lost: the book must notice rather than drift. Futures diffs
        # are checked by pu (the previous diff's u): one that follows a diff this book never saw.
        lost = book.last_update_id + 1
        prev = lost + 3 if protocol == "binance-futures" else None
        book.apply(BookUpdate("BTCUSDT", ((1.0, 1.0),), (), lost + 5, lost + 6, False, 0, time.perf_counter_ns(),
                              prev_id=prev))
        assert book.needs_resync and book.gaps == gaps + 1

        await wait_until(lambda: not book.needs_resync, timeout=10, what="a resync from the REST snapshot")

        def matches_ticker() -> bool:
            q = session.market["BTCUSDT"].quote
            return (q is not None and q.update_id == book.last_update_id
                    and book.best_bid()[0] == q.bid and book.best_ask()[0] == q.ask)

        await wait_until(matches_ticker, timeout=10, what="best bid/ask equal to the server's book ticker")
    finally:
        await session.stop()
