"""The ccxt client the live broker builds, without any network: URLs (testnet, the built-in exchange on loopback
with no way left to the internet), exchanges without a testnet, and ccxt kept out of start-up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal as D
from typing import Any

import pytest

from app.market.instruments import Instruments
from app.trading.live_broker import LiveBroker, LiveBrokerError, LiveEndpoints
from app.trading.live_exchange import (
    ClientSetupError,
    balances_of,
    instruments_from_markets,
    make_client,
    parse_order,
    parse_trade,
)


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    return []


def test_binance_testnet_and_mainnet_urls() -> None:
    async def build() -> tuple[Any, Any]:
        test = make_client("binance", "k" * 20, "s" * 20, testnet=True, rest=None, ws_api=None)
        main = make_client("binance", "k" * 20, "s" * 20, testnet=False, rest=None, ws_api=None)
        await test.close()
        await main.close()
        return test, main

    test, main = asyncio.run(build())
    assert test.urls["api"]["public"] == test.urls["api"]["private"] == "https://testnet.binance.vision/api/v3"
    assert test.urls["api"]["ws"]["ws-api"]["spot"].startswith("wss://ws-api.testnet.binance.vision/")
    assert main.urls["api"]["private"] == "https://api.binance.com/api/v3"
    assert (test.options["fetchCurrencies"], test.options["fetchMargins"]) == (False, False)  # no sapi calls
    assert test.options["fetchMarkets"]["types"] == ["spot"]


def test_the_built_in_exchange_replaces_every_url() -> None:
    async def build() -> Any:
        c = make_client("built-in", "k" * 20, "s" * 20, testnet=True, rest="http://127.0.0.1:5/",
                        ws_api="ws://127.0.0.1:5/ws-api/v3")
        await c.close()
        return c

    c = asyncio.run(build())
    assert c.urls["api"]["public"] == c.urls["api"]["private"] == "http://127.0.0.1:5/api/v3"
    assert c.urls["api"]["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:5/ws-api/v3"
    assert all(u.startswith(("http://127.0.0.1:5/", "ws://127.0.0.1:5/")) for u in strings(c.urls["api"]))
    assert "test" not in c.urls and not c.isSandboxModeEnabled


@pytest.mark.parametrize("exchange", ["coinbase", "kraken"])
def test_exchanges_without_a_testnet_say_so(exchange: str) -> None:
    with pytest.raises(ClientSetupError, match=r"has no testnet that ccxt can reach: live trading there is on the "
                                               r"real account only"):
        make_client(exchange, "k" * 20, "s" * 20, testnet=True, rest=None, ws_api=None)

    async def build() -> str:  # mainnet: a client is built (no request made; untested beyond this)
        c = make_client(exchange, "k" * 20, "s" * 20, testnet=False, rest=None, ws_api=None)
        await c.close()
        return c.id

    assert asyncio.run(build()) == exchange


def test_constructor_refusals_are_sentences() -> None:
    kw: dict[str, Any] = dict(testnet=True, instruments=Instruments(), id_prefix="L")
    with pytest.raises(LiveBrokerError, match="does not support the exchange 'bitmex'"):
        LiveBroker(exchange="bitmex", api_key="k", secret="s", **kw)
    with pytest.raises(LiveBrokerError, match="No API key and secret for Binance"):
        LiveBroker(exchange="binance", api_key="", secret="s", **kw)
    with pytest.raises(LiveBrokerError, match="prefix"):
        LiveBroker(exchange="binance", api_key="k", secret="s", **{**kw, "id_prefix": "a b"})
    b = LiveBroker(exchange="binance", api_key="k", secret="s", **kw)
    assert (b.mode, b.label) == ("LIVE", "LIVE · Binance testnet")
    b2 = LiveBroker(exchange="built-in", api_key="k", secret="s", endpoints=LiveEndpoints("http://x", "ws://x"), **kw)
    assert b2.label == "LIVE · built-in exchange"
    # Real money is named as such: the label every screen shows never reads like a test on the real account.
    main = LiveBroker(exchange="binance", api_key="k", secret="s", **{**kw, "testnet": False})
    assert main.label == "LIVE · Binance MAINNET"


def test_submit_before_connect_is_rejected_not_raised() -> None:
    from app.models import OrderRequest, OrderStatus, OrderType, Side

    b = LiveBroker(exchange="binance", api_key="k", secret="s", testnet=True, instruments=Instruments(), id_prefix="L")
    order = asyncio.run(b.submit(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, D("0.1"))))
    assert (order.status, order.reject_reason) == (OrderStatus.REJECTED,
                                                   "the live broker is not connected to the exchange")


def test_importing_the_live_broker_does_not_import_ccxt() -> None:
    code = "import sys, app.trading.live_broker; print(json.dumps([m for m in sys.modules if m.startswith('ccxt')]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_paper_session_and_its_window_import_nothing_of_live_trading() -> None:
    # Start-up must not pay for ccxt (~0.5 s), aiohttp or the built-in exchange's trading API unless live starts.
    code = ("import sys, json, app.__main__, app.session, app.ui.main_window; "
            "print(json.dumps(sorted({m.split('.')[0] if not m.startswith('app.') else m for m in sys.modules "
            "if m.startswith(('ccxt', 'aiohttp', 'app.trading.live_broker', 'app.market.sim.order_api'))})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_exact_amounts_from_binance_text_and_other_exchanges_floats() -> None:
    raw = {"info": {"orderId": 7, "clientOrderId": "L1", "origQty": "0.10000000", "executedQty": "0.03000000",
                    "status": "PARTIALLY_FILLED", "price": "60000.01", "type": "LIMIT", "side": "BUY"},
           "id": "7", "clientOrderId": "L1", "amount": 0.1, "filled": 0.03, "status": "open", "side": "buy"}
    o = parse_order(raw, "BTCUSDT")
    assert (o.qty, o.filled, o.price, o.status, o.exchange_id) == (D("0.10000000"), D("0.03000000"),
                                                                   D("60000.01"), "PARTIALLY_FILLED", "7")
    kraken = {"info": {"status": "open"}, "id": "OABC", "clientOrderId": None, "amount": 0.1, "filled": 0.0,
              "status": "canceled", "side": "sell", "type": "limit", "price": 70000.5}
    k = parse_order(kraken, "BTCUSD")
    assert (k.status, k.qty, k.price, k.side.value) == ("CANCELED", D("0.1"), D("70000.5"), "SELL")
    assert balances_of({"info": {"balances": [{"asset": "BTC", "free": "0.5", "locked": "0.25"},
                                              {"asset": "ETH", "free": "0", "locked": "0"}]}}) == {"BTC": D("0.75")}
    assert balances_of({"info": {}, "total": {"USD": 12.5, "XBT": 0}}) == {"USD": D("12.5")}


def test_filters_from_ccxts_markets_for_an_exchange_not_like_binance() -> None:
    """Coinbase and Kraken: the filters come from ccxt's unified precision and limits; a symbol not listed or a
    market without usable numbers costs only that symbol, in words."""
    markets: dict[str, Any] = {
        "BTCUSD": {"precision": {"price": 0.01, "amount": 1e-8}, "limits": {"amount": {"min": 1e-6},
                   "cost": {"min": 1}}, "base": "BTC", "quote": "USD"},
        "ETHUSD": {"precision": {"price": None, "amount": 1e-8}},
        "SOLUSD": {"limits": {}},
    }
    found, problems = instruments_from_markets("kraken", markets, ["btcusd", "ETHUSD", "SOLUSD", "XRPUSD"])
    btc = found["BTCUSD"]
    assert (btc.tick_size, btc.lot_size, btc.min_qty, btc.min_notional, btc.base, btc.quote) == \
        (D("0.01"), D("1E-8"), D("0.000001"), D(1), "BTC", "USD")
    assert problems == {"ETHUSD": "price precision is None", "SOLUSD": "'precision'",
                        "XRPUSD": "the exchange does not list it"}


@pytest.mark.parametrize(("qty", "price"), [("0", "60000"), ("-0.1", "60000"), ("0.1", "0"), ("0.1", "-1")])
def test_a_trade_with_a_quantity_or_price_that_is_not_positive_is_refused(qty: str, price: str) -> None:
    # From a hostile or broken stream: applied as a fill it would turn the position the wrong way.
    raw = {"info": {"t": 9, "i": 7, "S": "BUY", "l": qty, "L": price, "n": "0", "N": "USDT", "T": 1}, "id": "9"}
    with pytest.raises(ValueError, match="must be positive"):
        parse_trade(raw, "BTCUSDT")


def test_ccxts_number_formatting_leaves_the_terminals_decimal_rounding_alone() -> None:
    """ccxt sets the thread's decimal context to ROUND_HALF_UP (and traps Underflow) whenever it formats an amount:
    a price on screen then rounded 61,837.625 to .63 instead of .62, and a tiny amount raised."""
    import decimal

    from app.market.instruments import Instrument
    from app.trading.live_exchange import make_client

    client = make_client("binance", "k", "s", testnet=True, rest=None, ws_api=None)
    try:
        client.decimal_to_precision("0.125", 1, 2)  # ROUND, two decimal places, as ccxt formats an order
        ctx = decimal.getcontext()
        assert ctx.rounding == decimal.ROUND_HALF_EVEN and not ctx.traps[decimal.Underflow]
        assert Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001")).fmt_price(D("61837.625")) == "61,837.62"
    finally:
        import asyncio

        asyncio.run(client.close())
