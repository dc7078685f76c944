"""The Order book dock offscreen: the ladder as the trader reads it (asks above, bids below, the touch beside the
spread line), lines made once and updated in place at the refresh rate, all painted by one widget and only where
they changed, a click on a level putting its price in the ticket in the instrument's precision, a book that resyncs
showing nothing to click, and a dock that never asks for the whole ladder's height."""

from __future__ import annotations

from decimal import Decimal

from PySide6 import QtCore, QtGui, QtWidgets

from app.market.book import OrderBook
from app.market.instruments import Instrument
from app.ui import theme
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


def click(qtbot, w: OrderBookPanel, row) -> None:
    """A left click where the trader sees ``row``."""
    qtbot.mouseClick(w.view, QtCore.Qt.MouseButton.LeftButton, pos=row.geometry().center())


def painted(w: OrderBookPanel) -> list[str]:
    """The lines Qt has the ladder paint now (their price or spread text), in paint order."""
    w.view.last_painted = []
    QtCore.QCoreApplication.processEvents()
    return [line.texts[0] or line.texts[-1] for line in w.view.last_painted]


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
        click(qtbot, w, bid2)
    assert got.args == [Decimal("0.5900")] and isinstance(got.args[0], Decimal)
    assert str(got.args[0]) == "0.5900"
    with qtbot.waitSignal(w.price_chosen) as got:
        click(qtbot, w, w.ask_rows()[-1])
    assert got.args == [Decimal("0.5903")]
    assert "0.5903" in w.ask_rows()[-1].toolTip()
    with qtbot.assertNotEmitted(w.price_chosen):  # an empty row is not a price, nor is the spread line
        click(qtbot, w, w.ask_rows()[0])
        click(qtbot, w, w.view.spread)


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
        click(qtbot, w, w.bid_rows()[0])
    assert "resyncing" in w.view.spread.drawn_texts()[1] and w.view.spread.isVisible()


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

    # the biggest level, the farthest bid, grows by 0.2 %: its own line changes (size and total); every other bar
    # moves by less than a pixel, no other text changes
    book.apply(snapshot("BTCUSDT", bids=[*bids[:2], (99.98, 1.002)], asks=asks, last_id=101))
    w.render(book_ladder(book, BTC, depth=5))
    assert painted(w) == ["99.98"]

    w.render(book_ladder(book, BTC, depth=5))
    assert painted(w) == [], "the same book: nothing repainted"
    same = book_ladder(book, BTC, depth=5)
    w.render(same)
    w.render(same)
    assert painted(w) == [], "the same snapshot again: not even compared"


def near(image: QtGui.QImage, rect: QtCore.QRect, colour: str, tolerance: int = 40) -> int:
    """How many pixels of ``rect`` in ``image`` are within ``tolerance`` (per channel) of ``colour``."""
    want = QtGui.QColor(colour)
    n = 0
    for x in range(rect.left(), rect.right() + 1):
        for y in range(rect.top(), rect.bottom() + 1):
            c = image.pixelColor(x, y)
            if (abs(c.red() - want.red()) <= tolerance and abs(c.green() - want.green()) <= tolerance
                    and abs(c.blue() - want.blue()) <= tolerance):
                n += 1
    return n


def test_one_widget_paints_the_ladder_prices_in_their_sides_colour_over_the_size_bars(qtbot):
    w = panel(qtbot, depth=5, size=(300, 400))
    w.render(book_ladder(btc_book(), BTC, depth=5))
    assert w.view.findChildren(QtWidgets.QWidget) == []  # no widget per level: Qt paints one
    image = w.view.grab().toImage()
    t = theme.current()
    best_ask, best_bid = w.ask_rows()[-1], w.bid_rows()[0]
    price_column = QtCore.QRect(0, 0, int(w.view.width() * 0.45), w.view.line_height)

    def price_pixels(row, colour: str) -> int:
        return near(image, price_column.translated(0, row.top), colour)

    assert price_pixels(best_ask, t.down) > 5 and price_pixels(best_ask, t.up) == 0  # an ask in red
    assert price_pixels(best_bid, t.up) > 5 and price_pixels(best_bid, t.down) == 0  # a bid in green
    # the biggest level (61,840.10, 4.0) has a bar across the whole width, the smaller ones end short of the left
    biggest, small = w.ask_rows()[2], w.bid_rows()[0]
    assert biggest.texts[0] == "61,840.10" and biggest.bar == 1.0
    left_edge = QtCore.QRect(1, biggest.top + 3, 2, 2)
    assert image.pixelColor(left_edge.topLeft()) != image.pixelColor(left_edge.topLeft().x(), small.top + 3)


def test_hovering_a_level_shows_its_tooltip_and_the_hand(qtbot):
    w = panel(qtbot, depth=5)
    w.render(book_ladder(btc_book(), BTC, depth=5))
    best_bid = w.bid_rows()[0]
    at = best_bid.geometry().center()
    qtbot.mouseMove(w.view, at)
    assert w.view.cursor().shape() == QtCore.Qt.CursorShape.PointingHandCursor
    QtWidgets.QApplication.sendEvent(w.view, QtGui.QHelpEvent(QtCore.QEvent.Type.ToolTip, at,
                                                              w.view.mapToGlobal(at)))
    tip = QtWidgets.QToolTip.text()
    assert "61,837.62 · size 0.50000 · total 0.50000" in tip and "click: put 61,837.62 in the ticket" in tip
    spread = w.view.spread.geometry().center()
    qtbot.mouseMove(w.view, spread)
    assert w.view.cursor().shape() != QtCore.Qt.CursorShape.PointingHandCursor  # the spread line is no price
    QtWidgets.QApplication.sendEvent(w.view, QtGui.QHelpEvent(QtCore.QEvent.Type.ToolTip, spread,
                                                              w.view.mapToGlobal(spread)))
    assert "spread 0.01 USDT" in QtWidgets.QToolTip.text()
    QtWidgets.QToolTip.hideText()


def test_the_header_and_the_step_stay_at_a_small_window_and_no_line_is_cut(qtbot):
    w = panel(qtbot, depth=20, size=(240, 300))
    w.render(book_ladder(btc_book(), BTC, depth=20))
    h = w.view.line_height
    assert w.view.header.texts == ("Price", "Size", "Total") and w.view.header.top == 0
    lines = [r for r in (*w.ask_rows(), w.view.spread, *w.bid_rows()) if r.isVisible()]
    assert lines[0].top >= h and lines[-1].top + h <= w.view.height()  # under the header, none cut at the bottom
    tops = [r.top for r in lines]
    assert tops == list(range(tops[0], tops[0] + h * len(lines), h))  # one line under the other, no gap
