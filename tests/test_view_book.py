"""The order book ladder and the trades tape as the trader reads them, built without Qt: levels around the touch in
the instrument's precision with their size, cumulative size and bar, mid and spread, the book's state in words (and
no stale levels to click while it resyncs), grouping by a multiple of the tick; the tape newest first with local
times to the millisecond, the aggressor's side, keys that stay unique when an exchange repeats a trade id, big prints
marked. Real books: the local OrderBook fed the Binance capture, and Kraken's checksum-verified book."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import orjson
import pytest

from app.market.adapters import binance
from app.market.book import OrderBook
from app.market.book_guard import KrakenBookGuard
from app.market.instruments import Instrument
from app.market.state import MarketData
from app.models import BookUpdate, Side, Trade
from app.view.book import BookLadder, book_ladder, compact_qty, kraken_book, tape
from tests.conftest import BINANCE_CAPTURE, require_data
from tests.market.test_kraken_adapter import BOOK, MATIC_CRC

BTC = Instrument.from_steps("BTCUSDT", Decimal("0.01"), Decimal("0.00001"))
XRP = Instrument.from_steps("XRPUSDT", Decimal("0.0001"), Decimal("0.1"))
UTC = dt.UTC


def snapshot(symbol: str, bids, asks, last_id: int = 100) -> BookUpdate:
    return BookUpdate(symbol, tuple(bids), tuple(asks), last_id, last_id, True, 0, 0)


def btc_book() -> OrderBook:
    book = OrderBook("BTCUSDT")
    book.apply(snapshot("BTCUSDT",
                        bids=[(61837.62, 0.5), (61837.50, 1.5), (61830.00, 2.0)],
                        asks=[(61837.63, 1.0), (61838.00, 0.25), (61840.10, 4.0)]))
    return book


def texts(levels) -> list[tuple[str, str, str]]:
    return [(lv.price_text, lv.size_text, lv.cum_text) for lv in levels]


# ----- the ladder -----------------------------------------------------------------------------------------------
def test_asks_above_bids_below_the_touch_with_cumulative_size_and_bars():
    lad = book_ladder(btc_book(), BTC, depth=10)
    assert isinstance(lad, BookLadder)
    # asks read top-down as on a ladder: the farthest first, the best ask last, just above the spread
    assert texts(lad.asks) == [("61,840.10", "4.00000", "5.25000"), ("61,838.00", "0.25000", "1.25000"),
                               ("61,837.63", "1.00000", "1.00000")]
    # bids best first, just below the spread
    assert texts(lad.bids) == [("61,837.62", "0.50000", "0.50000"), ("61,837.50", "1.50000", "2.00000"),
                               ("61,830.00", "2.00000", "4.00000")]
    assert [lv.key for lv in lad.asks] == ["61,840.10", "61,838.00", "61,837.63"]  # a level is keyed by its price
    assert lad.asks[-1].best and lad.bids[0].best and not lad.asks[0].best and not lad.bids[1].best
    # the size bar: the largest level shown is full, the others in proportion (both sides on one scale)
    assert lad.asks[0].bar == pytest.approx(1.0)
    assert lad.bids[0].bar == pytest.approx(0.125)
    assert lad.asks[0].cum_bar == pytest.approx(1.0) and lad.bids[-1].cum_bar == pytest.approx(4.0 / 5.25)
    assert {lv.side for lv in lad.asks} == {Side.SELL} and {lv.side for lv in lad.bids} == {Side.BUY}
    # short enough for a 240 px dock; the basis points as the watchlist writes them (never "0.0", as if none)
    assert lad.spread_text == "1 tick · <0.1 bps"
    assert lad.mid_text == "61,837.62"  # the instrument's precision (the exact mid, half a tick, in the tooltip)
    assert "spread 0.01 USDT" in lad.spread_tip and "mid 61,837.625" in lad.spread_tip
    assert "bid 61,837.62" in lad.spread_tip and "ask 61,837.63" in lad.spread_tip
    assert (lad.status, lad.status_text) == ("SYNCED", "synced")
    assert lad.keys == (tuple(lv.key for lv in lad.asks), tuple(lv.key for lv in lad.bids))


def test_a_level_click_price_is_a_decimal_in_the_instruments_precision():
    book = OrderBook("XRPUSDT")
    book.apply(snapshot("XRPUSDT", bids=[(0.5901, 100.0), (0.59, 5.0)], asks=[(0.5903, 10.3)]))
    lad = book_ladder(book, XRP, depth=5)
    assert [lv.price for lv in lad.bids] == [Decimal("0.5901"), Decimal("0.5900")]
    assert str(lad.bids[1].price) == "0.5900"  # the tick's decimals, as the ticket shows it
    assert lad.asks[0].price == Decimal("0.5903") and lad.asks[0].size_text == "10.3"
    assert lad.spread_text == "2 ticks · 3.4 bps"
    assert lad.mid_text == "0.5902"
    assert "spread 0.0002 USDT" in lad.spread_tip


def test_big_sizes_have_a_compact_form_for_a_narrow_column():
    book = OrderBook("XRPUSDT")
    book.apply(snapshot("XRPUSDT", bids=[(0.6159, 17_254.3), (0.6158, 1_254_000.0)], asks=[(0.6160, 950.5)]))
    lad = book_ladder(book, XRP, depth=5)
    best, second = lad.bids
    assert (best.size_text, best.size_short) == ("17,254.3", "17.3K")
    assert (second.size_text, second.size_short) == ("1,254,000.0", "1.25M")
    assert second.cum_text == "1,271,254.3" and second.cum_short == "1.27M"
    assert lad.asks[0].size_short == "950.5"  # under a thousand: as it is
    assert compact_qty(123_456.0) == "123K" and compact_qty(2_500_000_000.0) == "2.50B" and compact_qty(0.0) == "0"


def test_depth_limits_each_side_and_a_thin_book_shows_what_it_has():
    book = OrderBook("BTCUSDT")
    book.apply(snapshot("BTCUSDT", bids=[(100.0 - i / 100, 1.0) for i in range(1, 40)],
                        asks=[(100.0 + i / 100, 1.0) for i in range(30)]))
    lad = book_ladder(book, BTC, depth=20)
    assert len(lad.asks) == len(lad.bids) == 20
    assert lad.asks[-1].price_text == "100.00" and lad.asks[0].price_text == "100.19"
    assert lad.bids[0].price_text == "99.99" and lad.bids[-1].price_text == "99.80"
    assert lad.depth == 20
    one_sided = OrderBook("BTCUSDT")
    one_sided.apply(snapshot("BTCUSDT", bids=[(99.0, 1.0)], asks=[]))
    lad = book_ladder(one_sided, BTC, depth=20)
    assert lad.asks == () and len(lad.bids) == 1
    assert lad.mid_text == "—" and lad.spread_text == "—"


def test_a_book_that_is_not_to_be_trusted_shows_no_levels_and_says_why():
    book = btc_book()
    book.mark_gap()  # a frame lost: the book waits for a fresh snapshot, its levels are stale
    lad = book_ladder(book, BTC, depth=10)
    assert lad.asks == () and lad.bids == ()  # nothing stale to click
    assert lad.status == "RESYNCING"
    assert lad.status_text == "resyncing: waiting for a fresh snapshot"
    for empty in (OrderBook("BTCUSDT"), None):
        lad = book_ladder(empty, BTC, depth=10)
        assert (lad.status, lad.status_text, lad.asks, lad.bids) == ("NO BOOK", "no book yet", (), ())


def test_grouping_by_a_multiple_of_the_tick_sums_levels_asks_up_bids_down():
    book = btc_book()
    lad = book_ladder(book, BTC, depth=10, group=100)  # 1.00 per level
    assert texts(lad.asks) == [("61,841.00", "4.00000", "5.25000"), ("61,838.00", "1.25000", "1.25000")]
    assert texts(lad.bids) == [("61,837.00", "2.00000", "2.00000"), ("61,830.00", "2.00000", "4.00000")]
    assert lad.asks[-1].price == Decimal("61838.00") and lad.bids[0].price == Decimal("61837.00")
    assert lad.group_text == "1.00"
    assert book_ladder(book, BTC, depth=10).group_text == "0.01"


def test_kraken_books_come_from_the_checksum_guard_and_say_when_they_resync():
    sent: list = []
    guard = KrakenBookGuard(["MATICUSD"], sent.extend)
    matic = Instrument.from_steps("MATICUSD", Decimal("0.0001"), Decimal("0.00000001"))
    assert book_ladder(kraken_book(guard, "MATICUSD"), matic, depth=10).status_text == "no book yet"
    guard.on_raw(BOOK % MATIC_CRC, 1)
    lad = book_ladder(kraken_book(guard, "MATICUSD"), matic, depth=10)
    assert lad.status == "SYNCED"
    assert texts(lad.asks) == [("0.5669", "4,655.40412487", "9,066.20182228"),
                               ("0.5668", "4,410.79769741", "4,410.79769741")]
    assert [lv.price for lv in lad.bids] == [Decimal("0.5666"), Decimal("0.5665")]
    guard.on_raw(BOOK.replace(b'"snapshot"', b'"update"') % (MATIC_CRC + 1), 2)  # a wrong checksum
    assert sent  # the guard asked for a fresh snapshot
    lad = book_ladder(kraken_book(guard, "MATICUSD"), matic, depth=10)
    assert (lad.status, lad.asks, lad.bids) == ("RESYNCING", (), ())
    assert kraken_book(None, "MATICUSD") is None and kraken_book(guard, "BTCUSD") is None


@pytest.mark.realdata
def test_the_real_binance_book_read_as_a_ladder():
    path = require_data(BINANCE_CAPTURE / "btcusdt_20240808.gz")
    book = OrderBook("BTCUSDT")
    with gzip.open(path, "rb") as fh:
        for n, line in enumerate(fh):
            ns, raw = line.split(b" ", 1)
            if b'"stream"' not in raw:
                book.apply(binance.parse_depth_snapshot(orjson.loads(raw), "BTCUSDT", int(ns)))
            else:
                for ev in binance.parse(raw, int(ns)):
                    if isinstance(ev, BookUpdate):
                        book.apply(ev)
            if n > 3000 and book.is_valid:
                break
    assert book.diffs_applied > 100
    lad = book_ladder(book, BTC, depth=25)
    assert lad.status == "SYNCED" and len(lad.asks) == len(lad.bids) == 25
    asks = [lv.price for lv in lad.asks]
    bids = [lv.price for lv in lad.bids]
    assert asks == sorted(asks, reverse=True) and bids == sorted(bids, reverse=True)
    assert asks[-1] > bids[0]  # never crossed
    assert asks[-1] == Decimal(str(book.best_ask()[0])).quantize(Decimal("0.01"))
    cums = [Decimal(lv.cum_text.replace(",", "")) for lv in lad.bids]
    assert cums == sorted(cums)
    assert max(lv.bar for lv in (*lad.asks, *lad.bids)) == pytest.approx(1.0)
    assert len(set(lad.keys[0] + lad.keys[1])) == 50
    grouped = book_ladder(book, BTC, depth=10, group=1000)  # 10.00 per level
    assert all(lv.price % Decimal(10) == 0 for lv in (*grouped.asks, *grouped.bids))
    assert grouped.asks[-1].price > grouped.bids[0].price


# ----- the tape -------------------------------------------------------------------------------------------------
T0 = int(dt.datetime(2024, 8, 9, 0, 0, 1, 5000, tzinfo=UTC).timestamp() * 1000)  # 00:00:01.005 UTC


def trade(i: int, price: float, qty: float, side: Side, trade_id: int | None = None) -> Trade:
    return Trade("BTCUSDT", price, qty, side, i if trade_id is None else trade_id, T0 + i * 250, 0)


def test_the_tape_is_newest_first_with_time_to_the_millisecond_and_the_aggressor():
    trades = [trade(1, 61837.63, 0.02, Side.BUY), trade(2, 61837.62, 0.048, Side.SELL),
              trade(3, 61837.5, 1.25, Side.SELL)]
    t = tape(trades, BTC, limit=10, tz=UTC)
    assert [r.key for r in t.rows] == ["3", "2", "1"]
    r = t.rows[0]
    assert (r.time_text, r.price_text, r.qty_text, r.side) == ("00:00:01.755", "61,837.50", "1.25000", Side.SELL)
    assert t.rows[2].time_text == "00:00:01.255" and t.rows[2].side is Side.BUY
    assert t.keys == ("3", "2", "1")
    assert len(tape(trades, BTC, limit=2, tz=UTC).rows) == 2 and tape(trades, BTC, limit=2, tz=UTC).keys == ("3", "2")
    assert tape([], BTC, limit=10).rows == ()


def test_local_time_by_default():
    [r] = tape([trade(1, 1.0, 1.0, Side.BUY)], BTC, limit=5).rows
    local = dt.datetime.fromtimestamp((T0 + 250) / 1000).astimezone()
    assert r.time_text == local.strftime("%H:%M:%S.") + "255"


def test_a_repeated_trade_id_gets_a_key_of_its_own_from_the_sequence():
    trades = [trade(1, 10.0, 1.0, Side.BUY, 7), trade(2, 10.0, 2.0, Side.BUY, 7), trade(3, 10.0, 3.0, Side.SELL, 8)]
    keys = tape(trades, BTC, limit=10, first_seq=40).keys
    assert len(set(keys)) == 3
    assert keys == ("8", "7#41", "7")  # the first keeps its id; a repeat adds its number since start
    # keys stay put as the tape moves on: the same trade, the same key
    moved = tape([*trades, trade(4, 10.0, 1.0, Side.BUY, 9)], BTC, limit=10, first_seq=40).keys
    assert moved[1:] == keys


def test_big_prints_are_the_sizes_above_the_quantile_of_recent_sizes():
    trades = [trade(i, 100.0, 0.01 * (1 + i % 10), Side.BUY) for i in range(100)]
    trades.append(trade(100, 100.0, 5.0, Side.SELL))
    t = tape(trades, BTC, limit=20, big_quantile=0.9)
    assert t.rows[0].big and t.rows[0].key == "100"
    assert not any(r.big for r in t.rows[1:])  # 0.10 is the 90th percentile itself: not above it
    half = tape(trades[:100], BTC, limit=10, big_quantile=0.5)  # the (lower) median of 0.01 .. 0.10 is 0.05
    assert [r.big for r in half.rows] == [float(r.qty_text) > 0.055 for r in half.rows]
    assert any(r.big for r in half.rows) and not all(r.big for r in half.rows)
    assert not any(r.big for r in tape(trades[:3], BTC, limit=20).rows)  # too few trades to call one big


def test_a_new_trade_formats_one_row_the_others_are_the_rows_already_made(monkeypatch):
    from app.view import book

    made = []
    real = book._time_text
    monkeypatch.setattr(book, "_time_text", lambda ms, tz: made.append(ms) or real(ms, tz))
    trades = [trade(i, 100.0 + i, 0.01, Side.BUY, 10_000 + i) for i in range(60)]
    first = tape(trades, BTC, limit=60, tz=UTC)
    made.clear()
    again = tape([*trades[1:], trade(60, 200.0, 0.02, Side.SELL, 10_060)], BTC, limit=60, tz=UTC)
    assert made == [T0 + 60 * 250], "one new trade: one row made"
    assert again.rows[0].price_text == "200.00" and again.rows[1:] == first.rows[:-1]
    assert again.rows[1] is first.rows[0]
    # another precision for the symbol (the exchange's filters arrived): every row is written again in it
    coarse = Instrument.from_steps("BTCUSDT", Decimal("0.1"), Decimal("0.001"))
    assert tape(trades, coarse, limit=60, tz=UTC).rows[0].price_text == "159.0"
    # the same trade id with other values (another session's trade) is not taken for the row already made
    other = tape([trade(59, 300.0, 0.5, Side.SELL, 10_059)], BTC, limit=60, tz=UTC)
    assert (other.rows[0].price_text, other.rows[0].qty_text) == ("300.00", "0.50000")


@pytest.mark.realdata
def test_the_tape_of_real_trades_kept_by_the_market_state():
    path = require_data(BINANCE_CAPTURE / "btcusdt_20240808.gz")
    market = MarketData(["BTCUSDT"], capacity=100)
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if b"@trade" in line:
                ns, raw = line.split(b" ", 1)
                market.apply(binance.parse(raw, int(ns)))
            if market["BTCUSDT"].trades >= 800:
                break
    m = market["BTCUSDT"]
    t = tape(m.recent, BTC, limit=40, first_seq=m.recent_first_seq, tz=UTC)
    assert len(t.rows) == 40 and len(set(t.keys)) == 40
    assert t.rows[0].key == str(m.last_trade.trade_id)
    ids = [int(k) for k in t.keys]
    assert ids == sorted(ids, reverse=True)
    assert {r.side for r in t.rows} <= {Side.BUY, Side.SELL}
    assert all(len(r.time_text) == 12 for r in t.rows)
    assert 0 < sum(r.big for r in t.rows) < 40
