"""The Order book dock offscreen: the ladder as the trader reads it (asks above, bids below, the touch beside the
spread line), rows built once and updated in place at the refresh rate, a click on a level putting its price in the
ticket in the instrument's precision, a book that resyncs showing nothing to click, and a dock that never asks for
the whole ladder's height."""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore

from app.market.book import OrderBook
from app.market.instruments import Instrument
from app.ui.order_book import OrderBookPanel
from app.view.book import book_ladder
from tests.test_view_book import BTC, XRP, btc_book, snapshot


def panel(qtbot, depth: int = 20, size=(260, 800)) -> OrderBookPanel:
    w = OrderBookPanel(depth=depth)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


def shown(rows) -> list[tuple[str, ...]]:
    return [r.texts for r in rows if any(r.texts)]


def test_asks_above_bids_below_with_the_touch_next_to_the_spread(qtbot):
    w = panel(qtbot, depth=5)
    w.render(book_ladder(btc_book(), BTC, depth=5))
    asks, bids = w.ask_rows(), w.bid_rows()
    assert [r.texts for r in asks] == [("", "", ""), ("", "", ""), ("61,840.10", "4.00000", "5.25000"),
                                       ("61,838.00", "0.25000", "1.25000"), ("61,837.63", "1.00000", "1.00000")]
    assert shown(bids) == [("61,837.62", "0.50000", "0.50000"), ("61,837.50", "1.50000", "2.00000"),
                           ("61,830.00", "2.00000", "4.00000")]
    assert asks[-1].bold and bids[0].bold and not bids[1].bold  # the touch stands out
    # the best ask sits just above the spread line, the best bid just below it
    spread = w.view.spread.geometry()
    assert asks[-1].geometry().bottom() < spread.top() and bids[0].geometry().top() > spread.bottom()
    assert asks[-1].geometry().bottom() + 1 == spread.top()
    assert w.spread_text() == "61,837.62   1 tick · <0.1 bps"
    assert "mid 61,837.625" in w.view.spread.toolTip() and "spread 0.01 USDT" in w.view.spread.toolTip()
    assert "BTCUSDT" in w.status.text() and "synced" in w.status.text()
    assert asks[2].bar == 1.0 and 0 < bids[0].bar < asks[2].bar  # size bars on one scale


def test_a_refresh_updates_the_same_rows_in_place(qtbot):
    w = panel(qtbot, depth=20)
    book = btc_book()
    w.render(book_ladder(book, BTC, depth=20))
    rows = [*w.ask_rows(), *w.bid_rows()]
    children = len(w.findChildren(QtCore.QObject))
    book.apply(snapshot("BTCUSDT", bids=[(61837.70, 3.0)], asks=[(61837.71, 0.5), (61838.0, 2.0)], last_id=101))
    w.render(book_ladder(book, BTC, depth=20))
    assert [*w.ask_rows(), *w.bid_rows()] == rows  # the very same row widgets
    assert len(w.findChildren(QtCore.QObject)) == children  # nothing built, nothing left behind
    assert shown(w.ask_rows()) == [("61,838.00", "2.00000", "2.50000"), ("61,837.71", "0.50000", "0.50000")]
    assert shown(w.bid_rows()) == [("61,837.70", "3.00000", "3.00000")]
    # an unchanged ladder repaints nothing
    assert not any(r.show_level(r.level) for r in rows)


def test_a_click_on_a_level_puts_its_price_in_the_ticket_in_the_instruments_precision(qtbot):
    w = panel(qtbot, depth=5)
    book = OrderBook("XRPUSDT")
    book.apply(snapshot("XRPUSDT", bids=[(0.5901, 100.0), (0.59, 5.0)], asks=[(0.5903, 10.3)]))
    w.render(book_ladder(book, XRP, depth=5))
    bid2 = w.bid_rows()[1]
    with qtbot.waitSignal(w.price_chosen) as got:
        qtbot.mouseClick(bid2, QtCore.Qt.MouseButton.LeftButton)
    assert got.args == [Decimal("0.5900")] and isinstance(got.args[0], Decimal)
    assert str(got.args[0]) == "0.5900"
    with qtbot.waitSignal(w.price_chosen) as got:
        qtbot.mouseClick(w.ask_rows()[-1], QtCore.Qt.MouseButton.LeftButton)
    assert got.args == [Decimal("0.5903")]
    assert "0.5903" in w.ask_rows()[-1].toolTip()
    with qtbot.assertNotEmitted(w.price_chosen):  # an empty row is not a price
        qtbot.mouseClick(w.ask_rows()[0], QtCore.Qt.MouseButton.LeftButton)


def test_a_book_that_resyncs_empties_the_ladder_and_says_so(qtbot):
    w = panel(qtbot, depth=10)
    book = btc_book()
    w.render(book_ladder(book, BTC, depth=10))
    book.mark_gap()
    w.render(book_ladder(book, BTC, depth=10))
    assert shown(w.ask_rows()) == shown(w.bid_rows()) == []
    assert w.spread_text() == "resyncing: waiting for a fresh snapshot"
    assert "resyncing" in w.status.text()
    with qtbot.assertNotEmitted(w.price_chosen):
        qtbot.mouseClick(w.bid_rows()[0], QtCore.Qt.MouseButton.LeftButton)


def test_a_short_dock_keeps_the_touch_in_the_middle_and_asks_for_little_height(qtbot):
    w = panel(qtbot, depth=25, size=(260, 240))
    book = OrderBook("BTCUSDT")
    book.apply(snapshot("BTCUSDT", bids=[(100.0 - i / 100, 1.0) for i in range(1, 40)],
                        asks=[(100.0 + i / 100, 1.0) for i in range(30)]))
    w.render(book_ladder(book, BTC, depth=25))
    visible_asks = [r for r in w.ask_rows() if r.isVisible()]
    visible_bids = [r for r in w.bid_rows() if r.isVisible()]
    assert 2 <= len(visible_asks) == len(visible_bids) < 25
    assert visible_asks[-1].texts[0] == "100.00" and visible_bids[0].texts[0] == "99.99"  # the touch stays on screen
    assert all(w.rect().contains(r.geometry().translated(w.view.pos())) for r in (*visible_asks, *visible_bids))
    assert w.minimumSizeHint().height() < 200  # a dock of 25 levels a side does not force a tall window
    assert w.minimumSizeHint().width() < 200


def test_a_deeper_ladder_rebuilds_once(qtbot):
    w = panel(qtbot, depth=5)
    w.render(book_ladder(btc_book(), BTC, depth=5))
    w.render(book_ladder(btc_book(), BTC, depth=30))
    assert w.depth == 30 and len(w.ask_rows()) == len(w.bid_rows()) == 30
    assert shown(w.bid_rows())[0] == ("61,837.62", "0.50000", "0.50000")
    thin = Instrument.from_steps("BTCUSDT", Decimal("0.01"), Decimal("0.00001"))
    rows = w.ask_rows()
    w.render(book_ladder(btc_book(), thin, depth=30))
    assert w.ask_rows() == rows


def test_the_trader_chooses_the_price_step_of_a_level(qtbot):
    w = panel(qtbot, depth=10)
    book = btc_book()
    w.render(book_ladder(book, BTC, depth=10, group=w.group))
    assert w.group == 1
    assert [w.step.itemText(i) for i in range(w.step.count())] == ["0.01", "0.10", "1.00", "10.00", "100.00"]
    with qtbot.waitSignal(w.group_changed) as got:
        w.step.setCurrentIndex(2)
    assert got.args == [100] and w.group == 100
    w.render(book_ladder(book, BTC, depth=10, group=w.group))
    assert shown(w.ask_rows()) == [("61,841.00", "4.00000", "5.25000"), ("61,838.00", "1.25000", "1.25000")]
    assert w.step.currentText() == "1.00"
    xrp = OrderBook("XRPUSDT")
    xrp.apply(snapshot("XRPUSDT", bids=[(0.5901, 100.0)], asks=[(0.5903, 10.3)]))
    w.render(book_ladder(xrp, XRP, depth=10, group=w.group))  # another symbol: the steps follow its tick
    assert [w.step.itemText(i) for i in range(w.step.count())][:3] == ["0.0001", "0.0010", "0.0100"]
    assert w.step.currentText() == "0.0100" and w.group == 100


def test_at_a_narrow_dock_the_spread_line_is_whole_and_big_sizes_go_compact_not_elided(qtbot):
    w = panel(qtbot, depth=5, size=(240, 400))
    w.render(book_ladder(btc_book(), BTC, depth=5))
    assert "…" not in "".join(w.view.spread.drawn_texts())  # "1 tick · <0.1 bps", not "0.01 · 1 tick · 0.0…"
    book = OrderBook("XRPUSDT")
    book.apply(snapshot("XRPUSDT", bids=[(0.6159, 17_254.3), (0.6158, 1_254_000.0)], asks=[(0.6160, 950.5)]))
    w.render(book_ladder(book, XRP, depth=5))
    best, second = w.bid_rows()[:2]
    assert best.texts == ("0.6159", "17,254.3", "17,254.3")  # the full texts are what the row holds
    drawn = second.drawn_texts()
    assert "…" not in "".join(drawn) and drawn[1:] == ("1.25M", "1.27M")
    assert "1,254,000.0" in second.toolTip() and "1,271,254.3" in second.toolTip()  # full in the tooltip
    w.resize(420, 400)
    QtCore.QCoreApplication.processEvents()
    assert best.drawn_texts() == ("0.6159", "17,254.3", "17,254.3")  # room enough: full


def test_a_change_at_one_level_repaints_that_level_and_what_it_moves_not_the_whole_ladder(qtbot):
    w = panel(qtbot, depth=5, size=(240, 400))
    bids = [(100.00, 0.5), (99.99, 0.3), (99.98, 1.0)]
    asks = [(100.01, 0.4), (100.02, 0.2), (100.03, 0.6)]
    book = OrderBook("BTCUSDT")
    book.apply(snapshot("BTCUSDT", bids=bids, asks=asks))
    w.render(book_ladder(book, BTC, depth=5))
    QtCore.QCoreApplication.processEvents()
    repainted = []
    for row in [*w.ask_rows(), *w.bid_rows()]:
        row.update = lambda row=row: repainted.append(row.texts[0])  # type: ignore[method-assign]

    # the biggest level, the farthest bid, grows by 0.2 %: its own row changes (size and total); every other bar
    # moves by less than a pixel, no other text changes
    book.apply(snapshot("BTCUSDT", bids=[*bids[:2], (99.98, 1.002)], asks=asks, last_id=101))
    w.render(book_ladder(book, BTC, depth=5))
    assert repainted == ["99.98"]

    repainted.clear()
    w.render(book_ladder(book, BTC, depth=5))
    assert repainted == [], "the same book: nothing repainted"
