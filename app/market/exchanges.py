"""Which adapter, URLs and subscribe messages each exchange needs: the one table the session reads.

Binance (spot and USD-M futures) subscribes through the URL (combined streams); Coinbase Advanced Trade and Kraken
v2 take subscribe messages after connecting. Candle history and book snapshots over REST are Binance's (spot
``/api/v3``, futures ``/fapi/v1``); the built-in exchange serves them whatever dialect it speaks. For the real
Coinbase and Kraken the chart starts from live trades and the book comes from the stream.

``ws_url`` / ``rest_url`` (``--ws-url`` / ``--rest-url``) point the feed at another endpoint: a testnet, a proxy,
a recorder, a test server. ``ws_url`` is what the exchange documents as its WebSocket address: for Binance the
base (``/stream?streams=...`` is added), for Coinbase and Kraken the full URL. ``rest_url`` is one thing for every
exchange: the base of *that exchange's own* REST API, in its own dialect. Binance's serves instruments, candle
history and depth snapshots; Coinbase's and Kraken's serve the instruments only (``/api/v3/brokerage/...``,
``/0/public/AssetPairs``), so nothing Binance-shaped is ever asked of them. The built-in exchange is the one case
of a Binance REST API under another WebSocket dialect (``simulated``): everything REST loads from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from app.market.adapters import binance, binance_futures, coinbase, kraken

EXCHANGES = ("binance", "binance-futures", "coinbase", "kraken")

SPOT_DEPTH_PATH = "/api/v3/depth"
SPOT_KLINES_PATH = "/api/v3/klines"


@dataclass(frozen=True, slots=True)
class FeedPlan:
    adapter: ModuleType
    url: str
    subscribe: list[bytes]
    rest_base: str | None  # a REST base serving Binance-style klines and depth, or None (no history, no snapshots)
    instruments_api: str = "binance"  # whose REST API the instruments are read from (instruments.load_instruments)
    instruments_base: str | None = None  # that API's base; None: the exchange's official one
    depth_path: str = SPOT_DEPTH_PATH
    klines_path: str = SPOT_KLINES_PATH
    # Book diffs carry sequence ids the local OrderBook can check. Kraken's carry none (a CRC32 checksum
    # instead, see adapters/kraken.KrakenBook), so the paper broker fills from quotes there rather than from a
    # book whose diffs it cannot verify.
    sequenced_book: bool = True
    # The book's snapshots come from the REST depth endpoint (Binance). Coinbase's come on the level2 channel itself,
    # in the same sequence as its updates (a REST snapshot from the built-in exchange would be in Binance's ids).
    book_from_rest: bool = True

    @property
    def rest_history(self) -> bool:
        return self.rest_base is not None


# Binance's spot testnet (testnet.binance.vision): market data of its own, beside its order API.
BINANCE_TESTNET_WS = "wss://stream.testnet.binance.vision"
BINANCE_TESTNET_REST = "https://testnet.binance.vision"


def plan(
    exchange: str,
    symbols: list[str],
    *,
    ws_url: str | None = None,
    rest_url: str | None = None,
    simulated: bool = False,
    testnet: bool = False,
) -> FeedPlan:
    """``simulated``: ``ws_url`` and ``rest_url`` are the built-in exchange's (Kraken's path ``/v2`` is added); its
    REST API is Binance's whatever dialect its WebSocket speaks. ``testnet``: live trading on Binance's spot testnet
    charts the testnet's own market (its prices are not the real market's: orders there fill at its prices, and the
    drift check must compare with them); explicit ``ws_url`` / ``rest_url`` still win."""
    if exchange == "binance":
        streams = [st for s in symbols for st in binance.streams_for(s)]
        url = binance.stream_url(ws_url or (BINANCE_TESTNET_WS if testnet else binance.WS_BASE), streams)
        base = rest_url or (BINANCE_TESTNET_REST if testnet else binance.REST_BASE)
        return FeedPlan(binance, url, [], base, instruments_base=base)
    if exchange == "binance-futures":
        streams = [st for s in symbols for st in binance_futures.streams_for(s)]
        url = binance_futures.stream_url(ws_url or binance_futures.WS_BASE, streams)
        base = rest_url or binance_futures.REST_BASE
        # The built-in exchange lists its instruments at spot's path only.
        return FeedPlan(binance_futures, url, [], base, depth_path=binance_futures.DEPTH_PATH,
                        klines_path=binance_futures.KLINES_PATH,
                        instruments_api="binance" if simulated else "binance-futures", instruments_base=base)
    binance_rest = rest_url if simulated else None  # history and depth: only from a Binance-speaking REST API
    api = "binance" if simulated else exchange
    if exchange == "coinbase":
        return FeedPlan(coinbase, ws_url or coinbase.WS_URL, coinbase.subscribe_messages(symbols), binance_rest,
                        instruments_api=api, instruments_base=rest_url, book_from_rest=False)
    if exchange == "kraken":
        url = f"{ws_url}/v2" if simulated and ws_url else ws_url or kraken.WS_URL
        return FeedPlan(kraken, url, kraken.subscribe_messages(symbols), binance_rest, sequenced_book=False,
                        instruments_api=api, instruments_base=rest_url)
    raise ValueError(f"unknown exchange {exchange!r}; expected one of {', '.join(EXCHANGES)}")
