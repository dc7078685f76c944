"""``--record`` on each exchange protocol writes a recording that ``--replay`` plays back through the built-in
exchange speaking the same protocol: the terminal gets the recorded trades, quotes and a synced book again."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.market.adapters import ParseError, binance, binance_futures, coinbase, kraken
from app.market.recording import iter_frames
from app.models import Trade
from app.session import Session
from tests.conftest import wait_until


@pytest.mark.asyncio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["binance", "binance-futures", "coinbase", "kraken"])
async def test_a_recording_of_each_protocol_replays(protocol, tmp_path):
    tape = tmp_path / f"{protocol}.rec"
    common = dict(symbol="BTCUSDT", symbols=["BTCUSDT"], sim_protocol=protocol, sim_process=False, history_bars=5)
    live = Session(Settings(**common, sim_trades_per_s=80.0, record_path=tape, journal_path=tmp_path / "a.sqlite3"))
    await live.start()
    try:
        await wait_until(lambda: live.market["BTCUSDT"].trades >= 40 and live.market["BTCUSDT"].quote is not None,
                         timeout=30, what="trades to record")
        book = live.desk.books["BTCUSDT"]
        if protocol.startswith("binance"):  # Coinbase's and Kraken's books are not synced from REST snapshots
            await wait_until(lambda: book.is_valid and book.diffs_applied > 5, timeout=30, what="book diffs to record")
    finally:
        await live.stop()
    recorded = recorded_trade_ids(tape, ADAPTERS[protocol])
    assert len(recorded) >= 40

    replay = Session(Settings(**common, replay=tape, replay_speed=5.0, journal_path=tmp_path / "b.sqlite3"))
    trades = replay.bus.subscribe("test: trades delivered", kinds=(Trade,))
    delivered: set[int] = set()

    def all_replayed() -> bool:
        delivered.update(ev.trade_id for ev in trades.drain())
        return delivered >= recorded and replay.market["BTCUSDT"].quote is not None

    await replay.start()
    try:
        if protocol != "kraken":  # from the replay's REST snapshot (Binance) or its level2 snapshot (Coinbase)
            book = replay.desk.books["BTCUSDT"]
            # Diffs checked against it: applied, or already in it (the snapshot is brought up to date with the tape,
            # which may have ended by the time it is asked for).
            await wait_until(lambda: book.is_valid and book.diffs_applied + book.stale > 0, timeout=30,
                             what="a replayed book")
        if protocol == "kraken":  # the replayed book passes Kraken's checksum, recomputed by the built-in exchange
            kbook = replay.kraken_books.books["BTCUSDT"]
            await wait_until(lambda: kbook.has_snapshot and kbook.checked > 5, timeout=30,
                             what="replayed Kraken book updates, checksums verified")
            assert kbook.mismatches == 0 and replay.kraken_books.resyncs == 0
        # The books first (they need diffs still to come), then the whole tape.
        await wait_until(all_replayed, timeout=30, what="every recorded trade and a quote replayed")
        assert delivered == recorded  # nothing lost, nothing invented
        assert replay.feed.duplicates == 0 and replay.feed.gap_count == 0
        assert replay.feed.rejected_total == 0, replay.feed.rejected
    finally:
        await replay.stop()


ADAPTERS = {"binance": binance, "binance-futures": binance_futures, "coinbase": coinbase, "kraken": kraken}


def recorded_trade_ids(tape, adapter) -> set[int]:  # type: ignore[no-untyped-def]
    """The trade ids in a recording, read with the exchange's own adapter (REST snapshots and acks skipped)."""
    ids: set[int] = set()
    for _, raw in iter_frames(tape):
        try:
            ids.update(ev.trade_id for ev in adapter.parse(raw, 0) if isinstance(ev, Trade))
        except ParseError:
            continue
    return ids
