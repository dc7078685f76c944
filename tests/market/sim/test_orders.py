"""OrderEngine: balances, filters, market and limit matching, maker fills on trades through, cancel, query, events."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from app.market.sim.orders import EngineError, OrderEngine, SymbolRules
from tests.market.sim.fakes import SYMBOL_INFO, Clock, FakeBook

KEY = "k1"


def engine(book: FakeBook | None = None, usdt: str = "10000", btc: str = "1") -> tuple[OrderEngine, list[Any]]:
    e = OrderEngine([SymbolRules.from_symbol_info(SYMBOL_INFO)], book or FakeBook(), Clock())
    e.open_account(KEY, {"USDT": D(usdt), "BTC": D(btc)})
    events: list[Any] = []
    e.add_listener(lambda key, ev: events.append((key, ev)))
    return e, events


def bal(e: OrderEngine, asset: str) -> tuple[D, D]:
    b = e.balances(KEY)[asset]
    return b.free, b.locked


def refused(code: int, fn: Any, *args: Any, **kw: Any) -> EngineError:
    with pytest.raises(EngineError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value
    return info.value


def test_rules_from_symbol_info() -> None:
    r = SymbolRules.from_symbol_info(SYMBOL_INFO)
    assert (r.base, r.quote, r.tick, r.step, r.min_notional) == ("BTC", "USDT", D("0.01"), D("0.00001"), D(5))
    legacy = dict(SYMBOL_INFO, filters=[{"filterType": "MIN_NOTIONAL", "minNotional": "10", "applyToMarket": False}])
    r2 = SymbolRules.from_symbol_info(legacy)
    assert r2.min_notional == D(10) and not r2.min_notional_market


def test_market_buy_walks_levels_and_pays_fee_in_the_base_received() -> None:
    e, events = engine()
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("2"))
    assert o.status == "FILLED" and o.executed == 2
    assert [(f.price, f.qty, f.maker) for f in o.fills] == [(D(100), D(1), False), (D(101), D(1), False)]
    assert [(f.commission, f.commission_asset) for f in o.fills] == [(D("0.001"), "BTC")] * 2
    assert o.cum_quote == D(201)
    assert bal(e, "USDT") == (D(10000) - D(201), 0)  # the quote pays the notional only
    assert bal(e, "BTC") == (D(3) - D("0.002"), 0)  # 2 bought, less 0.1 % of them
    reports = [ev for _, ev in events if ev["e"] == "executionReport"]
    assert [(r["x"], r["X"]) for r in reports] == [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "FILLED")]
    assert reports[-1]["N"] == "BTC" and reports[-1]["n"] == "0.00100000"
    assert reports[-1]["m"] is False and reports[-1]["l"] == "1.00000000"
    positions = [ev for _, ev in events if ev["e"] == "outboundAccountPosition"]
    assert positions and {b["a"] for b in positions[-1]["B"]} == {"BTC", "USDT"}


def test_a_sell_pays_its_commission_in_the_quote() -> None:
    e, events = engine(btc="2")
    o = e.place(KEY, symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("1.5"))
    assert [(f.price, f.qty, f.commission, f.commission_asset) for f in o.fills] == [
        (D(99), D(1), D("0.099"), "USDT"), (D(98), D("0.5"), D("0.049"), "USDT")]
    assert bal(e, "BTC") == (D("0.5"), 0)
    assert bal(e, "USDT") == (D(10000) + D(148) - D("0.148"), 0)
    last = [ev for _, ev in events if ev["e"] == "executionReport"][-1]
    assert (last["n"], last["N"]) == ("0.04900000", "USDT")


def test_market_larger_than_the_book_expires_with_what_filled() -> None:
    e, _ = engine()
    o = e.place(KEY, symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("0.5"))
    assert o.status == "FILLED"
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("5"))
    assert o.status == "EXPIRED" and o.executed == 3


def test_market_by_quote_quantity() -> None:
    e, _ = engine()
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quote_qty=D("150"))
    # 1 BTC at 100, then floor(50 / 101 to the lot) at 101
    assert o.status == "FILLED" and o.fills[0].qty == 1 and o.fills[1].qty == D("0.49504")
    assert o.qty == o.executed and o.quote_qty == 150


def test_market_orders_need_funds_for_the_whole_order_even_if_the_book_fills_part() -> None:
    """Binance refuses a MARKET order the free balance could not fill completely, whatever the book holds."""
    thin = FakeBook(asks=[("100", "1"), ("101", "2")], bids=[("99", "1")])
    e, events = engine(thin, usdt="503.99", btc="1.2")
    # sell 2: the bids take only 1 (which 1.2 BTC covers), but the order is for 2
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D(2))
    # buy 5: the asks cost 100 + 202 = 302 for 3, the 2 they lack at 101 (the last level reached): 504 in all
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D(5))
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quote_qty=D(504))
    # sell for 150 USDT: 1 at 99, the 51 left at 99 again = 0.51515 more: 1.51515 BTC needed
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="SELL", type="MARKET", quote_qty=D(150))
    assert events == [] and bal(e, "USDT") == (D("503.99"), 0) and bal(e, "BTC") == (D("1.2"), 0)
    e.open_account(KEY, {"USDT": D(504)})
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D(5))
    assert (o.status, o.executed) == ("EXPIRED", 3) and bal(e, "USDT") == (D(202), 0)
    o = e.place(KEY, symbol="BTCUSDT", side="SELL", type="MARKET", quantity=D("1.2"))
    assert (o.status, o.executed) == ("EXPIRED", 1)


def test_insufficient_balance_refused_and_nothing_changes() -> None:
    e, events = engine(usdt="50")
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("1"))
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="SELL", type="LIMIT", quantity=D("2"), price=D(200),
            tif="GTC")
    assert bal(e, "USDT") == (D(50), 0) and bal(e, "BTC") == (D(1), 0) and events == []


@pytest.mark.parametrize(("kw", "name"), [
    ({"quantity": D("0.000001"), "price": D(100)}, "LOT_SIZE"),
    ({"quantity": D("0.000015"), "price": D(100)}, "LOT_SIZE"),
    ({"quantity": D("10000"), "price": D(100)}, "LOT_SIZE"),
    ({"quantity": D("1"), "price": D("100.001")}, "PRICE_FILTER"),
    ({"quantity": D("1"), "price": D("0.001")}, "PRICE_FILTER"),
    ({"quantity": D("0.001"), "price": D(100)}, "NOTIONAL"),
])
def test_filters(kw: dict[str, D], name: str) -> None:
    e, _ = engine()
    err = refused(-1013, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", **kw)
    assert err.msg == f"Filter failure: {name}"


def test_bad_requests() -> None:
    e, _ = engine()
    refused(-1121, e.place, KEY, symbol="ETHUSDT", side="BUY", type="MARKET", quantity=D(1))
    refused(-1117, e.place, KEY, symbol="BTCUSDT", side="HOLD", type="MARKET", quantity=D(1))
    refused(-1116, e.place, KEY, symbol="BTCUSDT", side="BUY", type="STOP", quantity=D(1))
    refused(-1102, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D(1), tif="GTC")
    refused(-1102, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D(1), price=D(90))
    refused(-1115, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=D(1), price=D(90), tif="GTX")
    refused(-1106, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D(1), price=D(90))
    refused(-1102, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET")
    refused(-1014, e.place, KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D(1), quote_qty=D(100))
    refused(-2015, e.place, "nobody", symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D(1))


def test_limit_partially_marketable_takes_then_rests_locked() -> None:
    e, _ = engine()
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(2), price=D(100),
                client_id="c1")
    assert o.status == "PARTIALLY_FILLED" and o.executed == 1 and o.working
    assert o.fills[0].price == 100 and not o.fills[0].maker
    free, locked = bal(e, "USDT")
    assert locked == D(100)  # the resting BTC at 100 (its commission will be paid in BTC)
    assert free == D(10000) - D(100) - locked
    assert bal(e, "BTC") == (D(2) - D("0.001"), 0)
    assert [x.order_id for x in e.open_orders(KEY, "BTCUSDT")] == [o.order_id]


def test_resting_fills_only_when_a_trade_goes_through() -> None:
    e, events = engine()
    buy = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(95))
    sell = e.place(KEY, symbol="BTCUSDT", side="SELL", type="LIMIT", tif="GTC", quantity=D("0.5"), price=D(105))
    assert bal(e, "BTC") == (D("0.5"), D("0.5"))
    e.on_trade("BTCUSDT", D(95), D(10))  # at the price: the queue ahead took it
    e.on_trade("BTCUSDT", D(105), D(10))
    assert buy.executed == 0 and sell.executed == 0
    events.clear()
    e.on_trade("BTCUSDT", D("94.99"), D("0.25"))
    assert buy.status == "PARTIALLY_FILLED" and buy.executed == D("0.25") and buy.fills[0].price == 95
    assert buy.fills[0].maker
    e.on_trade("BTCUSDT", D("94"), D(5))
    assert buy.status == "FILLED" and not buy.working
    e.on_trade("BTCUSDT", D("105.01"), D(5))
    assert sell.status == "FILLED"
    assert bal(e, "USDT")[1] == 0 and bal(e, "BTC")[1] == 0
    # USDT: 10000 - 95 + 52.5 - 0.0525 (the sell's commission); BTC: 1 + 1 - 0.001 (the buy's) - 0.5
    assert bal(e, "USDT")[0] == D("9957.4475") and bal(e, "BTC")[0] == D("1.499")
    assert [(f.commission, f.commission_asset) for f in buy.fills] == [(D("0.00025"), "BTC"), (D("0.00075"), "BTC")]
    last = [ev for _, ev in events if ev["e"] == "executionReport"][-1]
    assert last["X"] == "FILLED" and last["m"] is True and last["w"] is False


def test_stop_loss_rests_untriggered_then_executes_like_market_when_a_trade_reaches_it() -> None:
    e, events = engine(FakeBook(bids=[("97", "0.5"), ("96", "2")]))
    e.on_trade("BTCUSDT", D("99.5"), D(1))  # the last price
    stop = e.place(KEY, symbol="BTCUSDT", side="SELL", type="STOP_LOSS", quantity=D("0.8"), stop_price=D(98),
                   client_id="sl1")
    assert (stop.status, stop.working, stop.executed, stop.stop_price) == ("NEW", False, 0, D(98))
    assert bal(e, "BTC") == (D("0.2"), D("0.8"))  # the coins are locked: a second sell of them fails
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="SELL", type="LIMIT", tif="GTC", quantity=D("0.5"),
            price=D(120))
    assert [o.order_id for o in e.open_orders(KEY, "BTCUSDT")] == [stop.order_id]
    e.on_trade("BTCUSDT", D("98.01"), D(5))  # above the stop: nothing
    assert stop.status == "NEW" and not stop.fills
    events.clear()
    e.on_trade("BTCUSDT", D(98), D("0.01"))  # reaches it: a market sell walks the bids, whatever the trade's size
    assert stop.status == "FILLED" and [(f.price, f.qty, f.maker) for f in stop.fills] == \
        [(D(97), D("0.5"), False), (D(96), D("0.3"), False)]
    assert bal(e, "BTC") == (D("0.2"), 0)
    assert bal(e, "USDT") == (D(10000) + D("77.3") - D("0.0773"), 0)
    reports = [ev for _, ev in events if ev["e"] == "executionReport"]
    assert [(r["x"], r["X"], r["o"], r["P"]) for r in reports] == [
        ("TRADE", "PARTIALLY_FILLED", "STOP_LOSS", "98.00000000"), ("TRADE", "FILLED", "STOP_LOSS", "98.00000000")]
    e.on_trade("BTCUSDT", D(90), D(1))  # a filled stop never triggers again
    assert len(stop.fills) == 2


def test_stop_loss_rules_and_a_buy_stop() -> None:
    e, _ = engine()
    stop_kw: dict[str, Any] = {"symbol": "BTCUSDT", "type": "STOP_LOSS", "quantity": D("0.5")}
    refused(-1102, e.place, KEY, side="SELL", **stop_kw)  # no stopPrice
    refused(-1013, e.place, KEY, side="SELL", stop_price=D("90.001"), **stop_kw)  # PRICE_FILTER applies to it
    refused(-1013, e.place, KEY, side="SELL", stop_price=D(5), **stop_kw)  # NOTIONAL at the stop price
    refused(-1106, e.place, KEY, side="SELL", stop_price=D(90), price=D(90), **stop_kw)
    refused(-1106, e.place, KEY, side="SELL", type="LIMIT", tif="GTC", quantity=D(1), price=D(90),
            stop_price=D(90), symbol="BTCUSDT")
    e.on_trade("BTCUSDT", D(100), D(1))
    assert refused(-2010, e.place, KEY, side="SELL", stop_price=D(100), **stop_kw).msg == \
        "Stop price would trigger immediately."
    assert refused(-2010, e.place, KEY, side="BUY", stop_price=D(100), **stop_kw).msg == \
        "Stop price would trigger immediately."
    buy = e.place(KEY, side="BUY", stop_price=D("100.5"), **stop_kw)  # a short's stop: above the market
    assert bal(e, "USDT")[1] == D("50.25")  # 0.5 x 100.5 (the commission is paid in BTC)
    sell = e.place(KEY, side="SELL", stop_price=D(95), **stop_kw)
    e.cancel(KEY, "BTCUSDT", sell.order_id)
    assert bal(e, "BTC") == (D(1), 0)
    e.on_trade("BTCUSDT", D(95), D(1))  # a canceled stop never triggers
    assert sell.status == "CANCELED" and not sell.fills
    e.on_trade("BTCUSDT", D(101), D(1))  # the buy stop: trade >= stop; buys 0.5 at the asks
    assert buy.status == "FILLED" and [(f.price, f.qty) for f in buy.fills] == [(D(100), D("0.5"))]
    assert bal(e, "USDT") == (D(10000) - D(50), 0) and bal(e, "BTC") == (D("1.5") - D("0.0005"), 0)


def test_trade_quantity_shared_by_price_then_time() -> None:
    e, _ = engine()
    a = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(95))
    b = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(96))
    c = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(95))
    e.on_trade("BTCUSDT", D(90), D("1.5"))
    assert (b.executed, a.executed, c.executed) == (D(1), D("0.5"), D(0))


def test_ioc_fok_and_limit_maker() -> None:
    e, _ = engine()
    ioc = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="IOC", quantity=D(2), price=D(100))
    assert ioc.status == "EXPIRED" and ioc.executed == 1
    fok = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="FOK", quantity=D(4), price=D(101))
    assert fok.status == "EXPIRED" and fok.executed == 0
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity=D(1), price=D(100))
    mk = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity=D(1), price=D(99))
    assert mk.status == "NEW" and mk.working
    assert bal(e, "USDT")[1] == D(99)


def test_cancel_releases_and_query_by_client_id() -> None:
    e, events = engine()
    o = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90),
                client_id="mine-1")
    refused(-2010, e.place, KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1),
            price=D(90), client_id="mine-1")
    assert e.get(KEY, "BTCUSDT", client_id="mine-1") is o
    assert e.get(KEY, "BTCUSDT", order_id=o.order_id) is o
    refused(-2013, e.get, KEY, "BTCUSDT", order_id=999)
    refused(-2013, e.get, KEY, "BTCUSDT", client_id="other")
    refused(-2013, e.get, KEY, "BTCUSDT", order_id=o.order_id, client_id="other")
    refused(-1102, e.get, KEY, "BTCUSDT")
    events.clear()
    assert e.cancel(KEY, "BTCUSDT", client_id="mine-1").status == "CANCELED"
    assert bal(e, "USDT") == (D(10000), 0)
    assert [ev["e"] for _, ev in events] == ["executionReport", "outboundAccountPosition"]
    # as Binance: "c" is the cancel request's own id (one made up when it sent none), "C" the order's
    assert events[0][1]["x"] == "CANCELED" and events[0][1]["C"] == "mine-1"
    assert events[0][1]["c"].startswith("cancel-")
    refused(-2011, e.cancel, KEY, "BTCUSDT", order_id=o.order_id)
    e.on_trade("BTCUSDT", D(1), D(100))
    assert o.executed == 0
    other = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90),
                    client_id="mine-2")
    events.clear()
    assert e.cancel(KEY, "BTCUSDT", other.order_id, cancel_id="kill-1").cancel_id == "kill-1"
    assert (events[0][1]["x"], events[0][1]["c"], events[0][1]["C"]) == ("CANCELED", "kill-1", "mine-2")
    # a client id may be reused once its order is done
    again = e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90),
                    client_id="mine-1")
    assert e.get(KEY, "BTCUSDT", client_id="mine-1") is again


def test_cancel_all_and_my_trades() -> None:
    e, _ = engine()
    refused(-2011, e.cancel_all, KEY, "BTCUSDT")
    for p in (90, 91):
        e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(p))
    e.place(KEY, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=D("0.5"))
    assert len(e.cancel_all(KEY, "BTCUSDT")) == 2 and e.open_orders(KEY) == []
    trades = e.my_trades(KEY, "BTCUSDT")
    assert len(trades) == 1 and trades[0].qty == D("0.5")
    assert (trades[0].commission, trades[0].commission_asset) == (D("0.0005"), "BTC")
    assert len(e.all_orders(KEY, "BTCUSDT")) == 3


def test_accounts_are_separate() -> None:
    e, _ = engine()
    e.open_account("k2", {"USDT": D(1000)})
    e.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90), client_id="x")
    assert e.open_orders("k2") == []
    refused(-2013, e.get, "k2", "BTCUSDT", client_id="x")
    e.place("k2", symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90), client_id="x")
