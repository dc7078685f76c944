"""Binance USD-M futures market streams: URLs, REST paths and ``parse``.

The frames are spot's with three differences that matter (Binance's "How to manage a local order book correctly"
for futures):

- ``bookTicker`` carries ``"e": "bookTicker"`` (and the event and transaction times ``E``, ``T``);
- ``depthUpdate`` carries ``pu``, the ``u`` of the previous diff of the stream. Continuity is ``pu == previous u``
  (ids are not contiguous between diffs), and the first diff after a snapshot must have
  ``U <= lastUpdateId <= u`` (spot: ``U <= lastUpdateId + 1 <= u``). ``pu`` becomes ``BookUpdate.prev_id`` and the
  local ``OrderBook`` applies the futures rule to any diff that has one;
- there is no raw ``@trade`` stream: trades come as ``aggTrade`` (one per taker order and price).

``markPriceUpdate`` frames are accepted and carry nothing the terminal uses yet (no event). Everything else (the
envelope, kline and REST shapes, the strict field checks) is spot's, shared from ``adapters.binance``.
"""

from __future__ import annotations

from typing import Any

from app.market.adapters import binance as spot
from app.market.adapters import checked_id, checked_time_ms, reasoned
from app.models import BookUpdate, MarketEvent, Quote

NAME = "binance-futures"
WS_BASE = "wss://fstream.binance.com"
REST_BASE = "https://fapi.binance.com"
DEPTH_PATH = "/fapi/v1/depth"
KLINES_PATH = "/fapi/v1/klines"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
DEPTH_STREAM = "depth@100ms"

stream_url = spot.stream_url
subscribe_message = spot.subscribe_message
parse_depth_snapshot = spot.parse_depth_snapshot  # /fapi/v1/depth: spot's shape plus E and T
parse_klines = spot.parse_klines


def streams_for(symbol: str, kline_interval: str = "1m") -> list[str]:
    s = symbol.lower()
    return [f"{s}@aggTrade", f"{s}@bookTicker", f"{s}@{DEPTH_STREAM}", f"{s}@kline_{kline_interval}"]


def parse(raw: bytes | str, recv_ns: int) -> list[MarketEvent]:
    return reasoned(_parse_payload, spot.payload(raw), recv_ns)


def _parse_payload(d: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
    kind = d.get("e")
    if kind == "depthUpdate":
        return [
            BookUpdate(
                symbol=spot._symbol(d["s"]),
                bids=spot._levels(d["b"]),
                asks=spot._levels(d["a"]),
                first_id=checked_id(d["U"]),
                last_id=checked_id(d["u"]),
                is_snapshot=False,
                exchange_ms=checked_time_ms(d["E"]),
                recv_ns=recv_ns,
                prev_id=checked_id(d["pu"]),
            )
        ]
    if kind == "bookTicker":
        return [
            Quote(
                symbol=spot._symbol(d["s"]),
                bid=spot._price(d["b"]),
                bid_qty=spot._qty(d["B"]),
                ask=spot._price(d["a"]),
                ask_qty=spot._qty(d["A"]),
                update_id=checked_id(d["u"]),
                exchange_ms=checked_time_ms(d["E"]),
                recv_ns=recv_ns,
            )
        ]
    if kind == "markPriceUpdate":
        spot._price(d["p"])  # checked like any price, so a hostile frame is counted, not silently taken
        return []
    if kind == "trade":  # not a documented futures stream; taken if a proxy or recorder sends it anyway
        return [spot._trade(d, d["t"], recv_ns)]
    # aggTrade, kline, REST snapshots and request replies are spot's
    return spot._parse_payload(d, recv_ns)

