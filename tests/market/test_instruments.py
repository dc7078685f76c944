"""Instruments: the exchanges' answers parsed into tick, lot, minimums and display precision (answers shaped as
each exchange documents them), bad answers turned into a clear reason and safe defaults, and the built-in exchange
serving its own exchangeInfo over real HTTP on loopback."""

from __future__ import annotations

from decimal import Decimal as D

import httpx
import pytest

from app.market.instruments import (
    Instrument,
    InstrumentError,
    Instruments,
    amount_problem,
    defaults_for,
    load_instruments,
    parse_binance,
    parse_coinbase,
    parse_kraken,
)
from app.market.sim.markets import MultiMarket
from app.market.sim.server import ExchangeSimulator


def binance_symbol(symbol, base, quote, tick, step, min_qty, min_notional, notional_filter="NOTIONAL"):
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
        "baseAssetPrecision": 8, "quotePrecision": 8,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "9000000.00000000", "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": notional_filter, "minNotional": min_notional, "applyMinToMarket": True},
        ],
    }


EXCHANGE_INFO = {"timezone": "UTC", "serverTime": 1, "symbols": [
    binance_symbol("BTCUSDT", "BTC", "USDT", "0.01000000", "0.00001000", "0.00001000", "5.00000000"),
    binance_symbol("XRPUSDT", "XRP", "USDT", "0.00010000", "0.10000000", "0.10000000", "5.00000000"),
    binance_symbol("ETHBTC", "ETH", "BTC", "0.00001000", "0.00010000", "0.00010000", "0.00010000", "MIN_NOTIONAL"),
]}


def test_binance_exchange_info_gives_each_symbol_its_own_grid_and_precision():
    found, problems = parse_binance(EXCHANGE_INFO, ["BTCUSDT", "XRPUSDT", "ETHBTC", "DOGEUSDT"])
    btc, xrp, eth = found["BTCUSDT"], found["XRPUSDT"], found["ETHBTC"]
    assert (btc.tick_size, btc.lot_size, btc.min_notional) == (D("0.01"), D("0.00001"), D("5"))
    assert (xrp.tick_size, xrp.lot_size, xrp.min_qty, xrp.base, xrp.quote) == (
        D("0.0001"), D("0.1"), D("0.1"), "XRP", "USDT")
    assert eth.min_notional == D("0.0001") and eth.quote == "BTC"  # the older MIN_NOTIONAL filter
    # what the trader reads: XRP at 0.6 is not 0.60
    assert xrp.fmt_price(0.60123) == "0.6012" and btc.fmt_price(61234.5) == "61,234.50"
    assert xrp.fmt_qty(D("100")) == "100.0" and btc.fmt_qty(D("0.01")) == "0.01000"
    assert eth.fmt_price(0.0213) == "0.02130" and eth.fmt_money(D("0.00213")) == "0.00213"
    assert problems == {"DOGEUSDT": "the exchange does not list it"}


@pytest.mark.parametrize(("answer", "why"), [
    ({"code": -1121, "msg": "Invalid symbol."}, "the answer has no list of symbols"),
    ([], "the answer has no list of symbols"),
    ({"symbols": [{"symbol": "XRPUSDT", "filters": []}]}, "PRICE_FILTER or LOT_SIZE filter missing"),
    ({"symbols": [binance_symbol("XRPUSDT", "XRP", "USDT", "0", "0.1", "0.1", "5")]}, "tick_size 0 must be"),
    ({"symbols": [binance_symbol("XRPUSDT", "XRP", "USDT", "NaN", "0.1", "0.1", "5")]}, "not a finite number"),
    ({"symbols": [binance_symbol("XRPUSDT", "XRP", "USDT", True, "0.1", "0.1", "5")]}, "not a number"),
    ({"symbols": [binance_symbol("XRPUSDT", "XRP", "USDT", "0.0001", "-1", "0.1", "5")]}, "lot_size -1 must be"),
])
def test_a_bad_binance_answer_is_a_reason_not_a_crash(answer, why):
    found, problems = parse_binance(answer, ["XRPUSDT"])
    assert found == {} and why in problems["XRPUSDT"]


def test_coinbase_product_and_kraken_asset_pairs():
    product = {"product_id": "XRP-USD", "price": "0.6012", "base_increment": "0.000001", "quote_increment": "0.0001",
               "price_increment": "0.0001", "base_min_size": "1", "quote_min_size": "1", "base_currency_id": "XRP",
               "quote_currency_id": "USD"}
    xrp = parse_coinbase(product, "XRPUSD")
    assert (xrp.tick_size, xrp.lot_size, xrp.min_qty, xrp.min_notional) == (D("0.0001"), D("0.000001"), D("1"),
                                                                             D("1"))
    assert xrp.price_decimals == 4 and xrp.qty_decimals == 6
    with pytest.raises(InstrumentError, match="base_increment"):
        parse_coinbase({"price_increment": "0.01"}, "BTCUSD")
    pairs = {"error": [], "result": {
        "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
                     "lot_decimals": 8, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1"},
        "XXRPZUSD": {"altname": "XRPUSD", "wsname": "XRP/USD", "base": "XXRP", "quote": "ZUSD", "pair_decimals": 5,
                     "lot_decimals": 8, "ordermin": "2", "costmin": "0.5"},
    }}
    found, problems = parse_kraken(pairs, ["BTCUSD", "XRPUSD", "SOLUSD"])
    assert found["BTCUSD"].tick_size == D("0.1") and found["BTCUSD"].min_qty == D("0.0001")
    assert found["XRPUSD"].tick_size == D("0.00001") and found["XRPUSD"].min_notional == D("0.5")
    assert problems == {"SOLUSD": "the exchange does not list it"}
    assert parse_kraken({"error": ["EGeneral:Too many requests"]}, ["BTCUSD"])[1]["BTCUSD"] == (
        "the exchange answered ['EGeneral:Too many requests']")


def test_safe_defaults_follow_the_observed_price_and_are_fixed_at_the_first_one():
    assert defaults_for("XRPUSDT", 0.6012).fmt_price(0.6012) == "0.60120"
    assert defaults_for("BTCUSDT", 61234.5).fmt_price(61234.5) == "61,234.50"
    assert defaults_for("ETHBTC", 0.0213).price_decimals == 6
    registry = Instruments()
    registry.failed(["XRPUSDT"], "the exchange answered HTTP 503")
    assert registry.problems["XRPUSDT"] == ("instrument filters for XRPUSDT could not be loaded: the exchange "
                                            "answered HTTP 503; using safe defaults")
    registry.observe_price("XRPUSDT", 0.6012)
    registry.observe_price("XRPUSDT", 60.12)  # later prices do not move the grid under working orders
    assert registry.get("XRPUSDT").tick_size == D("0.00001") and not registry.get("XRPUSDT").from_exchange


@pytest.mark.asyncio
async def test_the_built_in_exchange_serves_exchange_info_for_its_own_markets():
    source = MultiMarket.for_symbols(["BTCUSDT", "XRPUSDT"], 5.0)
    async with ExchangeSimulator(source) as sim, httpx.AsyncClient(timeout=5) as client:
        got = await load_instruments(client, "binance", ["BTCUSDT", "XRPUSDT"], sim.rest_url)
        assert got.problems == {}
        assert got.get("XRPUSDT").tick_size == D("0.0001") and got.get("BTCUSDT").tick_size == D("0.01")
        assert got.get("XRPUSDT").fmt_price(0.6) == "0.6000"
        unknown = await load_instruments(client, "binance", ["BTCUSDT", "NOPEUSDT"], sim.rest_url)
        assert unknown.problems["NOPEUSDT"] == ("instrument filters for NOPEUSDT could not be loaded: the exchange "
                                                "answered HTTP 400; using safe defaults")


@pytest.mark.asyncio
async def test_no_answer_at_all_leaves_every_symbol_on_safe_defaults_with_a_message():
    async with httpx.AsyncClient(timeout=5) as client:
        # nothing listens on this port: a connection error, said to the trader
        got = await load_instruments(client, "binance", ["XRPUSDT"], "http://127.0.0.1:9")
    assert got.loaded == {} and "could not be loaded" in got.problems["XRPUSDT"]
    assert got.problems["XRPUSDT"].endswith("; using safe defaults")


@pytest.mark.parametrize("value", [D("1e30"), D("1e40"), D("Infinity"), D("NaN")])
def test_grid_helpers_never_raise_on_a_value_beyond_28_digits_or_not_finite(value):
    inst = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"))
    assert inst.on_tick(value) is value.is_finite()  # a whole number of ticks when finite; infinity is on no grid
    assert inst.on_lot(value) is value.is_finite()
    if value.is_finite():
        assert inst.round_price(value) == value and inst.round_qty(value) == value
    else:
        assert not inst.round_price(value).is_finite()  # left for the boundary checks to refuse


def test_a_typed_or_proposed_amount_beyond_any_market_is_refused_in_words():
    assert amount_problem(D("65000.5"), "limit price") is None
    assert amount_problem(D("1e30"), "limit price") == (
        "limit price 1,000,000,000,000,000,000,000,000,000,000 is too large: the largest taken is 1,000,000,000,000")
    assert amount_problem(D("-Infinity"), "quantity") == "quantity must be a finite number"
