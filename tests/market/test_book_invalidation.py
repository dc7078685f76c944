"""A reconnect empties the book until a snapshot from the new connection: nothing from before it is applied."""

from __future__ import annotations

from app.market.book import OrderBook
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
