"""Binance USD-M futures frames (as Binance documents them) parse into the right events, and the local book keeps
itself in sync by the futures rule (``pu``), not spot's."""

from __future__ import annotations

import orjson
import pytest

from app.market.adapters import ParseError, binance, binance_futures
from app.market.book import OrderBook
from app.models import BookUpdate, Quote, Side, Trade

# From Binance's USD-M futures "Partial/Diff. Book Depth Streams", "Individual Symbol Book Ticker Streams",
# "Aggregate Trade Streams" and "Mark Price Stream" pages (ids and times as documented).
DEPTH = {"e": "depthUpdate", "E": 1571889248277, "T": 1571889248276, "s": "BTCUSDT", "U": 390497796,
         "u": 390497878, "pu": 390497794, "b": [["7403.89", "0.002"], ["7403.90", "3.906"]],
         "a": [["7405.96", "3.340"], ["7406.63", "4.525"]]}
BOOK_TICKER = {"e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891, "s": "BNBUSDT",
               "b": "25.35190000", "B": "31.21000000", "a": "25.36520000", "A": "40.66000000"}
AGG_TRADE = {"e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "0.001", "q": "100",
             "f": 100, "l": 105, "T": 123456785, "m": True}
MARK_PRICE = {"e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
              "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}


def _env(stream: str, data: dict) -> bytes:
    return orjson.dumps({"stream": stream, "data": data})


def test_book_ticker_with_an_event_type_is_a_quote_not_an_unknown_event():
    with pytest.raises(ParseError, match="unknown_event"):  # the defect: spot's adapter refuses it
        binance.parse(_env("bnbusdt@bookTicker", BOOK_TICKER), 1)
    [q] = binance_futures.parse(_env("bnbusdt@bookTicker", BOOK_TICKER), 7)
    assert q == Quote("BNBUSDT", 25.3519, 31.21, 25.3652, 40.66, 400900217, 1568014460893, 7)


def test_depth_diff_carries_pu_as_the_previous_diffs_id():
    [d] = binance_futures.parse(_env("btcusdt@depth@100ms", DEPTH), 7)
    assert isinstance(d, BookUpdate) and not d.is_snapshot
    assert (d.first_id, d.last_id, d.prev_id) == (390497796, 390497878, 390497794)
    assert d.bids == ((7403.89, 0.002), (7403.90, 3.906)) and d.asks[0] == (7405.96, 3.340)


def test_agg_trade_and_mark_price():
    [t] = binance_futures.parse(_env("btcusdt@aggTrade", AGG_TRADE), 7)
    assert isinstance(t, Trade) and t.trade_id == 5933014 and t.side is Side.SELL and t.qty == 100.0
    assert binance_futures.parse(_env("btcusdt@markPrice", MARK_PRICE), 7) == []
    with pytest.raises(ParseError):
        binance_futures.parse(_env("btcusdt@markPrice", {**MARK_PRICE, "p": "-1"}), 7)


@pytest.mark.parametrize("field,value", [("pu", True), ("pu", 1e300), ("pu", "x"), ("U", -1), ("E", None)])
def test_bad_ids_are_rejected_with_a_reason(field, value):
    with pytest.raises(ParseError) as err:
        binance_futures.parse(_env("btcusdt@depth@100ms", {**DEPTH, field: value}), 7)
    assert err.value.reason in ("bad_field", "bad_value")


def _diff(first: int, last: int, prev: int, bid: float = 100.0, qty: float = 1.0) -> BookUpdate:
    return BookUpdate("BTCUSDT", ((bid, qty),), ((bid + 1, 1.0),), first, last, False, 0, 1, prev_id=prev)


def _snapshot(last: int) -> BookUpdate:
    return BookUpdate("BTCUSDT", ((99.0, 5.0),), ((101.0, 5.0),), last, last, True, 0, 1)


def test_futures_sync_rule_drops_older_applies_the_straddling_diff_then_follows_pu():
    book = OrderBook("BTCUSDT")
    book.apply(_snapshot(1000))
    assert not book.apply(_diff(900, 990, 880))  # u < lastUpdateId: already in the snapshot
    assert book.stale == 1
    # Futures ids are not contiguous: U = 995 <= 1000 <= u = 1010 is the first applied, though spot wants U <= 1001
    assert book.apply(_diff(995, 1010, 990, bid=99.5))
    # the next one starts far after 1010 (a spot book would call this a gap); pu says it follows 1010
    assert book.apply(_diff(1050, 1080, 1010, bid=99.7))
    assert book.is_valid and book.last_update_id == 1080 and book.gaps == 0
    assert book.best_bid() == (99.7, 1.0)


def test_futures_pu_break_is_a_gap_and_a_fresh_snapshot_resyncs():
    book = OrderBook("BTCUSDT")
    book.apply(_snapshot(1000))
    book.apply(_diff(995, 1010, 990))
    assert not book.apply(_diff(1050, 1080, 1020))  # pu 1020 != 1010: a diff in between was lost
    assert book.needs_resync and book.gaps == 1 and not book.is_valid
    book.apply(_diff(1090, 1100, 1080))  # buffered meanwhile
    book.apply(_snapshot(1095))
    assert book.is_valid and book.last_update_id == 1100


def test_first_diff_must_straddle_the_snapshot_under_the_futures_rule():
    book = OrderBook("BTCUSDT")
    book.apply(_snapshot(1000))
    assert not book.apply(_diff(1001, 1010, 1000))  # spot would take it (U <= 1001); futures needs U <= 1000
    assert book.needs_resync
