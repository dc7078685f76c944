"""The local order book follows Binance's snapshot + diff procedure: sequence checks, gaps, resync, buffering before
the snapshot, and on the real capture its top of book equals the exchange's bookTicker at the same update id."""

from __future__ import annotations

import pytest

from app.market.adapters import binance
from app.market.book import OrderBook
from app.market.recording import iter_frames
from app.models import BookUpdate, Quote, Side
from tests.conftest import BINANCE_CAPTURE, require_data

S = "BTCUSDT"


def snap(last_id: int, bids=((100.0, 1.0), (99.0, 2.0)), asks=((101.0, 1.5), (102.0, 3.0)), symbol="") -> BookUpdate:
    return BookUpdate(symbol, tuple(bids), tuple(asks), last_id, last_id, True, 0, 0)


def diff(first: int, last: int, bids=(), asks=(), symbol=S) -> BookUpdate:
    return BookUpdate(symbol, tuple(bids), tuple(asks), first, last, False, 0, 0)


def test_snapshot_then_diffs_in_sequence_and_zero_quantity_deletes():
    b = OrderBook(S)
    assert b.best_bid() is None and b.best_ask() is None and not b.is_valid
    assert b.apply(snap(100))
    assert b.is_valid and b.last_update_id == 100
    assert b.best_bid() == (100.0, 1.0) and b.best_ask() == (101.0, 1.5)
    assert b.apply(diff(99, 103, bids=[(100.5, 0.7)], asks=[(101.0, 0.0)]))  # straddles 101
    assert b.best_bid() == (100.5, 0.7) and b.best_ask() == (102.0, 3.0)
    assert b.apply(diff(104, 104, bids=[(100.5, 0.0), (98.0, 4.0)]))
    assert b.levels(Side.BUY, 10) == [(100.0, 1.0), (99.0, 2.0), (98.0, 4.0)]  # bids, best (highest) first
    assert b.levels(Side.SELL, 10) == [(102.0, 3.0)]
    assert b.levels(Side.BUY, 2) == [(100.0, 1.0), (99.0, 2.0)]
    assert b.taker_levels(Side.BUY) == [(102.0, 3.0)]  # a buy walks the asks
    assert b.taker_levels(Side.SELL, 1) == [(100.0, 1.0)]
    assert b.last_update_id == 104 and b.diffs_applied == 2 and b.gaps == 0
    assert b.mid() == 101.0


def test_diffs_older_than_the_snapshot_are_dropped_and_the_first_must_straddle_it():
    b = OrderBook(S)
    b.apply(snap(100))
    assert not b.apply(diff(90, 100, bids=[(100.0, 9.0)]))  # already in the snapshot
    assert b.best_bid() == (100.0, 1.0) and b.stale == 1 and not b.needs_resync
    assert not b.apply(diff(102, 105))  # 101 is missing
    assert b.needs_resync and b.gaps == 1 and not b.is_valid


def test_gap_marks_resync_ignores_diffs_until_a_new_snapshot_which_replays_the_ones_after_it():
    b = OrderBook(S)
    b.apply(snap(100))
    assert b.apply(diff(101, 105, bids=[(100.0, 5.0)]))
    version = b.version
    assert not b.apply(diff(107, 110, bids=[(100.0, 7.0)]))  # 106 lost
    assert b.needs_resync and b.gaps == 1
    assert not b.apply(diff(111, 112, bids=[(100.0, 8.0)]))  # ignored while out of sync
    assert b.best_bid() == (100.0, 5.0) and b.version == version and b.last_update_id == 105
    # the new REST snapshot is at 110: 107..110 is in it, 111..112 is newer and is replayed from the buffer
    assert b.apply(snap(110, bids=[(100.0, 7.5)], asks=[(101.0, 1.0)]))
    assert not b.needs_resync and b.is_valid
    assert b.best_bid() == (100.0, 8.0) and b.last_update_id == 112
    assert b.apply(diff(113, 113, asks=[(100.9, 0.1)]))
    assert b.best_ask() == (100.9, 0.1)
    assert b.gaps == 1 and b.snapshots == 2


def test_diffs_before_any_snapshot_are_buffered_and_replayed():
    b = OrderBook(S)
    assert not b.apply(diff(95, 100, bids=[(100.0, 9.0)]))  # will be older than the snapshot
    assert not b.apply(diff(101, 104, bids=[(100.0, 2.0)]))
    assert not b.apply(diff(105, 106, asks=[(101.0, 0.0), (101.5, 0.4)]))
    assert b.buffered == 3 and b.best_bid() is None and b.last_update_id is None
    assert b.apply(snap(102))
    assert b.buffered == 0 and b.last_update_id == 106 and b.is_valid
    assert b.best_bid() == (100.0, 2.0) and b.best_ask() == (101.5, 0.4)
    assert b.stale == 1 and b.diffs_applied == 2


def test_pre_snapshot_buffer_is_bounded_and_a_lost_diff_shows_as_a_gap():
    b = OrderBook(S, max_buffer=2)
    for i in range(5):
        b.apply(diff(101 + i, 101 + i, bids=[(100.0 + i, 1.0)]))
    assert b.buffer_dropped == 3 and b.buffered == 2
    b.apply(snap(100))  # needs 101, but only 104 and 105 were kept
    assert b.needs_resync and b.gaps == 1


def test_redelivered_diff_is_ignored_without_a_resync():
    b = OrderBook(S)
    b.apply(snap(100))
    b.apply(diff(101, 102, bids=[(100.0, 3.0)]))
    assert not b.apply(diff(101, 102, bids=[(100.0, 3.0)]))
    assert not b.needs_resync and b.stale == 1
    assert b.apply(diff(103, 103))


def test_other_symbol_is_refused_and_depth_is_capped():
    b = OrderBook(S, max_levels=3)
    assert not b.apply(diff(1, 2, symbol="ETHUSDT")) and b.wrong_symbol == 1
    b.apply(snap(10, bids=[(float(100 - i), 1.0) for i in range(6)], asks=[(float(101 + i), 1.0) for i in range(6)]))
    assert b.levels(Side.BUY, 10) == [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)]
    assert b.levels(Side.SELL, 10) == [(101.0, 1.0), (102.0, 1.0), (103.0, 1.0)]
    assert b.depth_count() == (3, 3)
    b.apply(diff(11, 11, bids=[(100.0, 0.0)]))
    assert b.best_bid() == (99.0, 1.0)  # the trimmed levels are gone for good, as on a depth-limited book


@pytest.mark.realdata
def test_real_capture_top_of_book_equals_book_ticker_at_the_same_update_id():
    first = require_data(BINANCE_CAPTURE / "btcusdt_20240808.gz")
    files = [first] + [p for p in [BINANCE_CAPTURE / "btcusdt_20240809.gz"] if p.exists()]  # one session
    book = OrderBook("BTCUSDT")
    quotes: dict[int, Quote] = {}  # bookTicker is real time and usually arrives before the 100 ms diff
    compared = mismatched = 0
    for path in files:
        for recv_ns, raw in iter_frames(path):
            for ev in binance.parse(raw, recv_ns or 0):
                if isinstance(ev, Quote):
                    quotes[ev.update_id] = ev
                    if len(quotes) > 10_000:
                        quotes.clear()
                    if ev.update_id != book.last_update_id:
                        continue
                elif isinstance(ev, BookUpdate):
                    if not book.apply(ev):
                        continue
                    ev = quotes.get(book.last_update_id)  # type: ignore[assignment]
                    if ev is None:
                        continue
                else:
                    continue
                compared += 1
                if book.best_bid() != (ev.bid, ev.bid_qty) or book.best_ask() != (ev.ask, ev.ask_qty):
                    mismatched += 1
    assert book.snapshots == 1 and book.gaps == 0 and book.is_valid
    assert book.stale == 2  # the two diffs received before the inline REST snapshot and contained in it
    assert compared > 500, compared  # 564 in the first file alone
    assert mismatched == 0, f"{mismatched} of {compared}"
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None and bid[0] < ask[0]
