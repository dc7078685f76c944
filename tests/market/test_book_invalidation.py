"""A reconnect empties the book until a snapshot from the new connection: nothing from before it is applied."""

from __future__ import annotations

from app.market.book import STALE_RUN_LIMIT, OrderBook
from app.models import BookUpdate


def _snap(last: int, recv_ns: int, bid: float = 99.0) -> BookUpdate:
    return BookUpdate("BTCUSDT", ((bid, 1.0),), ((bid + 2, 1.0),), last, last, True, 0, recv_ns)


def _diff(first: int, last: int, recv_ns: int, bid: float) -> BookUpdate:
    return BookUpdate("BTCUSDT", ((bid, 2.0),), (), first, last, False, 0, recv_ns)


def test_invalidated_book_ignores_what_was_received_before_and_resyncs_from_a_new_snapshot():
    book = OrderBook("BTCUSDT")
    assert book.status == "NO SNAPSHOT"
    book.apply(_snap(1000, recv_ns=10))
    book.apply(_diff(1001, 1005, recv_ns=11, bid=99.5))
    assert book.status == "SYNCED" and book.best_bid() == (99.5, 2.0)

    book.invalidate(since_ns=20)  # the feed reconnected at t=20
    assert not book.is_valid and book.status == "RESYNCING" and book.best_bid() is None
    # Still queued from the old connection: in sequence with the old book, but from before the reconnect.
    assert not book.apply(_diff(1006, 1007, recv_ns=15, bid=99.6))
    assert not book.apply(_snap(1007, recv_ns=19))  # a REST answer requested before the reconnect
    assert book.before_reconnect == 2 and not book.is_valid

    # The exchange restarted: ids far lower than the old book's, and they are taken.
    book.apply(_diff(41, 45, recv_ns=21, bid=50.5))  # buffered until the snapshot
    book.apply(_snap(42, recv_ns=22, bid=50.0))
    assert book.is_valid and book.status == "SYNCED" and book.last_update_id == 45
    assert book.best_bid() == (50.5, 2.0) and book.invalidations == 1


def test_a_book_ahead_of_its_stream_resyncs_instead_of_calling_every_diff_stale():
    """A snapshot whose id is far above the stream's (from an exchange since restarted with lower ids) would make
    every new diff "stale" while the book stayed SYNCED on old levels forever."""
    book = OrderBook("BTCUSDT")
    book.apply(_snap(90_000, recv_ns=10, bid=99.0))  # the old exchange's snapshot
    assert book.is_valid
    for i in range(STALE_RUN_LIMIT):  # the restarted exchange's diffs, ids far lower
        book.apply(_diff(100 + i, 100 + i, recv_ns=11 + i, bid=50.0))
    assert not book.is_valid and book.status == "RESYNCING" and book.stale_resyncs == 1
    book.apply(_snap(100 + STALE_RUN_LIMIT, recv_ns=1000, bid=50.0))  # a snapshot of the stream it follows
    assert book.apply(_diff(101 + STALE_RUN_LIMIT, 101 + STALE_RUN_LIMIT, recv_ns=1001, bid=50.5))
    assert book.is_valid and book.best_bid() == (50.5, 2.0)


def test_diffs_older_than_a_snapshot_are_normal_and_keep_the_book_synced():
    book = OrderBook("BTCUSDT")
    for i in range(3 * STALE_RUN_LIMIT):  # buffered while the snapshot was fetched: older than it
        book.apply(_diff(i + 1, i + 1, recv_ns=i, bid=98.0))
    book.apply(_snap(3 * STALE_RUN_LIMIT + 5, recv_ns=10_000))
    for i in range(STALE_RUN_LIMIT - 1):  # and a few in flight: stale, but fewer than the limit in a row
        book.apply(_diff(3 * STALE_RUN_LIMIT + 5, 3 * STALE_RUN_LIMIT + 5, recv_ns=10_001 + i, bid=98.0))
    assert book.apply(_diff(3 * STALE_RUN_LIMIT + 6, 3 * STALE_RUN_LIMIT + 6, recv_ns=20_000, bid=99.5))
    assert book.is_valid and book.stale_resyncs == 0
