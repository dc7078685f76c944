"""Which adapter, URL and subscribe messages each exchange needs: the one table the session reads.

Binance subscribes through the URL (combined streams); Coinbase Advanced Trade and Kraken v2 take subscribe
messages after connecting. Candle history over REST is Binance's klines endpoint (the built-in exchange serves it
whatever dialect it speaks); for the real Coinbase and Kraken the chart starts from live trades.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from app.market.adapters import binance, coinbase, kraken

EXCHANGES = ("binance", "coinbase", "kraken")


@dataclass(frozen=True, slots=True)
class FeedPlan:
    adapter: ModuleType
    url: str
    subscribe: list[bytes]
    rest_history: bool  # the REST base serves Binance-style klines and depth
    # Book diffs carry sequence ids the local OrderBook can check. Kraken's carry none (a CRC32 checksum
    # instead, see adapters/kraken.KrakenBook), so the paper broker fills from quotes there rather than from a
    # book whose diffs it cannot verify.
    sequenced_book: bool = True


def plan(exchange: str, symbols: list[str], ws_base: str | None = None, *, simulated: bool = False) -> FeedPlan:
    """``ws_base``: the built-in exchange's URL when simulated, else the exchange's own."""
    if exchange == "binance":
        streams = [st for s in symbols for st in binance.streams_for(s)]
        return FeedPlan(binance, binance.stream_url(ws_base or binance.WS_BASE, streams), [], True)
    if exchange == "coinbase":
        return FeedPlan(coinbase, ws_base or coinbase.WS_URL, coinbase.subscribe_messages(symbols), simulated)
    if exchange == "kraken":
        url = f"{ws_base}/v2" if ws_base else kraken.WS_URL
        return FeedPlan(kraken, url, kraken.subscribe_messages(symbols), simulated, sequenced_book=False)
    raise ValueError(f"unknown exchange {exchange!r}; expected one of {', '.join(EXCHANGES)}")
