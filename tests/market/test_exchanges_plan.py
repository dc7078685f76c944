"""The feed plan: each exchange's own endpoints, or the ones given with --ws-url / --rest-url."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.market import exchanges
from app.market.adapters import binance_futures, coinbase, kraken


def test_default_endpoints_of_each_exchange():
    spot = exchanges.plan("binance", ["BTCUSDT"])
    assert spot.url.startswith("wss://stream.binance.com:9443/stream?streams=btcusdt@trade/")
    assert (spot.rest_base, spot.depth_path) == ("https://api.binance.com", "/api/v3/depth")
    fut = exchanges.plan("binance-futures", ["BTCUSDT"])
    assert fut.adapter is binance_futures and fut.url.startswith("wss://fstream.binance.com/stream?streams=")
    assert "btcusdt@aggTrade" in fut.url and "btcusdt@depth@100ms" in fut.url
    assert (fut.rest_base, fut.depth_path, fut.klines_path) == (
        "https://fapi.binance.com", "/fapi/v1/depth", "/fapi/v1/klines")
    assert exchanges.plan("coinbase", ["BTCUSD"]).rest_base is None  # no Binance-style REST there
    assert exchanges.plan("kraken", ["BTCUSD"]).url == kraken.WS_URL


@pytest.mark.parametrize("exchange", exchanges.EXCHANGES)
def test_given_endpoints_replace_the_exchanges_own(exchange):
    feed = exchanges.plan(exchange, ["BTCUSDT"], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9")
    assert feed.url.startswith("ws://127.0.0.1:9")
    # --rest-url is the exchange's own REST API: its instruments, whatever the exchange
    assert (feed.instruments_api, feed.instruments_base) == (exchange, "http://127.0.0.1:9")
    if exchange in ("coinbase", "kraken"):
        assert feed.url == "ws://127.0.0.1:9"  # the full URL, as given
        assert feed.subscribe == (coinbase if exchange == "coinbase" else kraken).subscribe_messages(["BTCUSDT"])
        assert feed.rest_base is None  # never asked for Binance's klines or depth
    else:
        assert feed.rest_base == "http://127.0.0.1:9"


@pytest.mark.parametrize("protocol", exchanges.EXCHANGES)
def test_the_built_in_exchange_serves_binance_rest_whatever_it_speaks(protocol):
    feed = exchanges.plan(protocol, ["BTCUSDT"], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9",
                          simulated=True)
    assert feed.rest_base == "http://127.0.0.1:9"
    assert (feed.instruments_api, feed.instruments_base) == ("binance", "http://127.0.0.1:9")


def test_endpoint_settings_are_urls_of_the_right_kind_and_per_run():
    s = Settings(exchange="binance", ws_url="wss://stream.testnet.binance.vision/", rest_url="https://x.example")
    assert s.ws_url == "wss://stream.testnet.binance.vision"
    with pytest.raises(ValueError, match="ws or wss URL"):
        Settings(ws_url="https://x.example")
    with pytest.raises(ValueError, match="http or https URL"):
        Settings(rest_url="wss://x.example")
    from app.config import PER_RUN_FIELDS

    assert {"ws_url", "rest_url"} <= PER_RUN_FIELDS  # never written to the settings file


def test_live_trading_on_binance_testnet_charts_the_testnets_own_market():
    # Testnet prices are not the real market's: the chart, the paper-style drift check and the orders must agree.
    p = exchanges.plan("binance", ["BTCUSDT"], testnet=True)
    assert p.url.startswith("wss://stream.testnet.binance.vision/stream?streams=btcusdt@")
    assert p.rest_base == "https://testnet.binance.vision"
    assert p.instruments_base == "https://testnet.binance.vision"
    assert exchanges.plan("binance", ["BTCUSDT"]).rest_base == "https://api.binance.com"
    # An explicit endpoint still wins (a proxy, a recorder in front of the testnet).
    given = exchanges.plan("binance", ["BTCUSDT"], testnet=True, rest_url="http://127.0.0.1:9")
    assert given.rest_base == "http://127.0.0.1:9"
