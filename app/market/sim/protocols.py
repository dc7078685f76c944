"""The built-in exchange's other dialects: Coinbase Advanced Trade, Kraken WebSocket v2, Binance USD-M futures.

``ExchangeSimulator(source, protocol="coinbase"|"kraken")`` serves the same market (synthetic or replayed, made as
Binance frames) in another exchange's protocol, so each adapter is tested against a real loopback server. One
:class:`ProtocolSession` per connection: it answers that exchange's requests (subscribe / unsubscribe / ping),
sends acks and the snapshots the exchange sends on subscribe, and translates each Binance frame of the streams it
subscribed into the exchange's messages. Translation is per connection because both protocols have per-connection
state: Coinbase's ``sequence_num``, Kraken's depth-limited book and its checksum.

How the pieces map (symbols: Binance ``btcusd`` = Coinbase ``BTC-USD`` = Kraken ``BTC/USD``):

=================  ==============================  ==============================================
Binance stream     Coinbase channel                Kraken channel
=================  ==============================  ==============================================
``@trade``         ``market_trades`` (side = maker  ``trade`` (side = taker)
                   side, see ``adapters.coinbase``)
``@bookTicker``    ``ticker``                      ``ticker`` (every BBO change, ``event_trigger: bbo``)
``@depth@100ms``   ``level2`` -> ``l2_data``       ``book`` (depth 10..1000, CRC32 checksum)
``@kline_<i>``     ``candles`` (5m only)           ``ohlc`` (interval 1..1440 minutes)
=================  ==============================  ==============================================

Not simulated: Coinbase's 5 s subscribe deadline and JWT, Kraken's rate limits and trade snapshots (the trade
snapshot is sent empty: the server keeps no trade history). Heartbeats (Coinbase ``heartbeats``, Kraken
``heartbeat``) go out once a second of market time, with the market frames, so a silent market sends none.
REST stays Binance's (the terminal only uses REST against Binance).

Binance USD-M futures (:class:`FuturesDialect`) is Binance spot's protocol with other frames, so it needs no session
of its own: the server rewrites each spot frame once for every listener (``pu`` is the stream's previous ``u``,
whoever listens) and serves the REST paths under ``/fapi/v1`` too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from app.market.adapters import ParseError, binance, coinbase, kraken
from app.models import Quote, Side, Trade

PROTOCOLS = ("binance", "binance-futures", "coinbase", "kraken")
BINANCE_LIKE = ("binance", "binance-futures")  # subscribe through the URL or SUBSCRIBE, no ProtocolSession

Push = Callable[[bytes], None]
Streams = Callable[[list[str]], None]


class Source(Protocol):
    def serves(self, stream: str) -> bool: ...

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]: ...

    async def klines(self, symbol: str, interval: str, limit: int) -> list[list[Any]]: ...


class ProtocolSession(Protocol):
    def start(self) -> None:
        """Called once the connection is open (Kraken greets with a status message)."""

    async def on_message(self, message: str | bytes) -> None:
        """One client request: replies and snapshots are pushed, Binance streams (un)subscribed."""

    def translate(self, stream: str, payload: bytes) -> list[bytes]:
        """One Binance frame of a subscribed stream -> this client's messages (maybe none)."""

    def fail(self, message: str) -> None:
        """A request could not be served (e.g. a replay has no book yet): this dialect's error answer."""


def make_session(
    protocol: str, source: Source, push: Push, subscribe: Streams, unsubscribe: Streams
) -> ProtocolSession:
    if protocol == "coinbase":
        return CoinbaseSession(source, push, subscribe, unsubscribe)
    if protocol == "kraken":
        return KrakenSession(source, push, subscribe, unsubscribe)
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


# ----- shared ----------------------------------------------------------------------------------------------


def _now_rfc3339_ns() -> str:
    ns = time.time_ns()
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def _rfc3339_ms(ms: int, digits: int = 6) -> str:
    base = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{(ms % 1000) * 10 ** (digits - 3):0{digits}d}Z"


def _stream_kind(stream: str) -> tuple[str, str]:
    sym, _, kind = stream.partition("@")
    return sym, kind


def _trim(text: str) -> str:
    """Binance's "60000.12000000" -> "60000.12" (a price as an exchange with a coarser tick writes it)."""
    if "." in text:
        text = text.rstrip("0")
        if text.endswith("."):
            text += "0"
    return text


class _Base:
    def __init__(self, source: Source, push: Push, subscribe: Streams, unsubscribe: Streams) -> None:
        self.source = source
        self.push = push
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._streams: dict[str, int] = {}  # Binance stream -> how many of our channels need it
        self._last_price: dict[str, float] = {}
        self._last_heartbeat_s = 0

    def start(self) -> None:
        return None

    def _need(self, stream: str) -> None:
        self._streams[stream] = self._streams.get(stream, 0) + 1
        if self._streams[stream] == 1:
            self._subscribe([stream])

    def _release(self, stream: str) -> None:
        n = self._streams.get(stream, 0) - 1
        if n <= 0:
            self._streams.pop(stream, None)
            self._unsubscribe([stream])
        else:
            self._streams[stream] = n

    def _heartbeat_due(self) -> bool:
        second = int(time.time())
        if second != self._last_heartbeat_s:
            self._last_heartbeat_s = second
            return True
        return False

    def _events(self, payload: bytes) -> list[Any]:
        try:
            return binance.parse(payload, 0)
        except ParseError:
            return []


# ----- Binance USD-M futures -------------------------------------------------------------------------------

# Update ids as futures sends them: not contiguous between diffs (they are global across symbols there), so a client
# that applied spot's continuity rule (U == previous u + 1) would resync forever, as the real exchange would make
# it. Spot id n becomes FUTURES_ID_SCALE * n; a diff's U is placed just after the previous diff's u with a hole
# between, and a snapshot's lastUpdateId (L' = L * scale + offset) inside the diff holding the snapshot's next
# update, as futures documents: that diff has U' = previous u' + offset <= L' <= u'.
FUTURES_ID_SCALE = 10
_FUTURES_ID_OFFSET = 5


class FuturesDialect:
    """Spot frames -> USD-M futures frames: ``depthUpdate`` gets ``pu`` (and ``T``) and futures' ids, ``bookTicker``
    gets ``"e": "bookTicker"``, ``E`` and ``T``; trades, aggTrades and klines are the same frames."""

    def __init__(self) -> None:
        self._last_u: dict[str, int] = {}  # depth stream -> the previous diff's u (spot ids)

    def translate(self, stream: str, payload: bytes) -> bytes:
        _, kind = _stream_kind(stream)
        if kind.startswith("depth"):
            d = orjson.loads(payload)
            # From the previous diff, not from U: a replayed futures tape has holes between its diffs already.
            prev = self._last_u.get(stream, d["U"] - 1)
            self._last_u[stream] = d["u"]
            first, last = prev * FUTURES_ID_SCALE + _FUTURES_ID_OFFSET, d["u"] * FUTURES_ID_SCALE
            return orjson.dumps({"e": "depthUpdate", "E": d["E"], "T": d["E"], "s": d["s"], "U": first, "u": last,
                                 "pu": prev * FUTURES_ID_SCALE, "b": d["b"], "a": d["a"]})
        if kind == "bookTicker":
            d = orjson.loads(payload)
            now = int(time.time() * 1000)
            return orjson.dumps({"e": "bookTicker", "u": d["u"] * FUTURES_ID_SCALE, "s": d["s"], "b": d["b"],
                                 "B": d["B"], "a": d["a"], "A": d["A"], "T": now, "E": now})
        return payload

    @staticmethod
    def snapshot(snap: dict[str, Any]) -> dict[str, Any]:
        """A ``/api/v3/depth`` answer as ``/fapi/v1/depth`` gives it."""
        now = int(time.time() * 1000)
        last = int(snap["lastUpdateId"]) * FUTURES_ID_SCALE + _FUTURES_ID_OFFSET
        return {"lastUpdateId": last, "E": now, "T": now, "bids": snap["bids"], "asks": snap["asks"]}


# ----- Coinbase Advanced Trade -----------------------------------------------------------------------------


class CoinbaseSession(_Base):
    def __init__(self, source: Source, push: Push, subscribe: Streams, unsubscribe: Streams) -> None:
        super().__init__(source, push, subscribe, unsubscribe)
        self._seq = 0
        self._subs: dict[str, list[str]] = {}  # channel -> products, in subscription order
        self._book_from: dict[str, int] = {}  # symbol -> lastUpdateId of the l2 snapshot sent

    def _send(self, channel: str, events: list[dict[str, Any]]) -> bytes:
        msg = orjson.dumps(
            {"channel": channel, "timestamp": _now_rfc3339_ns(), "sequence_num": self._seq, "events": events}
        )
        self._seq += 1
        return msg

    def _error(self, message: str) -> None:
        self.push(orjson.dumps({"type": "error", "message": message}))

    fail = _error

    async def on_message(self, message: str | bytes) -> None:
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            self._error("failure to parse message")
            return
        if not isinstance(req, dict) or req.get("type") not in ("subscribe", "unsubscribe"):
            self._error("message type must be subscribe or unsubscribe")
            return
        channel, products = req.get("channel"), req.get("product_ids")
        if channel not in coinbase.CHANNELS:
            self._error(f"channel {channel!r} is not supported")
            return
        if channel != "heartbeats" and (
            not isinstance(products, list) or not products or not all(isinstance(p, str) for p in products)
        ):
            self._error("product_ids must be a non-empty list of strings")
            return
        products = [p.upper() for p in products or []]
        unknown = [p for p in products if not self.source.serves(f"{coinbase.to_symbol(p).lower()}@trade")]
        if unknown:
            self._error(f"product {unknown[0]} is not available")
            return
        current = self._subs.setdefault(channel, [])
        if req["type"] == "unsubscribe":
            for p in [p for p in products if p in current]:
                current.remove(p)
                if channel != "heartbeats":
                    self._release(self._stream(channel, p))
            self.push(self._subscriptions())
            return
        new = [p for p in products if p not in current]
        current.extend(new)
        self.push(self._subscriptions())
        for p in new:
            if channel != "heartbeats":
                await self._snapshot(channel, p)  # before the stream: nothing newer may precede it
                self._need(self._stream(channel, p))

    def _subscriptions(self) -> bytes:
        return self._send("subscriptions", [{"subscriptions": {c: ps for c, ps in self._subs.items() if ps}}])

    @staticmethod
    def _stream(channel: str, product: str) -> str:
        sym = coinbase.to_symbol(product).lower()
        return {
            "market_trades": f"{sym}@trade",
            "ticker": f"{sym}@bookTicker",
            "level2": f"{sym}@depth@100ms",
            "candles": f"{sym}@kline_5m",
        }[channel]

    async def _snapshot(self, channel: str, product: str) -> None:
        symbol = coinbase.to_symbol(product)
        if channel == "market_trades":
            self.push(self._send("market_trades", [{"type": "snapshot", "trades": []}]))
        elif channel == "ticker":
            snap = await self.source.depth_snapshot(symbol, 1)
            if snap["bids"] and snap["asks"]:
                (bp, bq), (ap, aq) = snap["bids"][0], snap["asks"][0]
                mid = (float(bp) + float(ap)) / 2
                ticker = self._ticker(product, _trim(bp), bq, _trim(ap), aq, self._last_price.get(symbol, mid))
                self.push(self._send("ticker", [{"type": "snapshot", "tickers": [ticker]}]))
        elif channel == "level2":
            snap = await self.source.depth_snapshot(symbol, 1000)
            self._book_from[symbol] = int(snap["lastUpdateId"])
            now = _rfc3339_ms(int(time.time() * 1000))
            updates = [self._level("bid", p, q, now) for p, q in snap["bids"]]
            updates += [self._level("offer", p, q, now) for p, q in snap["asks"]]
            self.push(self._send("l2_data", [{"type": "snapshot", "product_id": product, "updates": updates}]))
        elif channel == "candles":
            rows = await self.source.klines(symbol, "5m", 10)
            candles = [self._candle(product, r[0], r[1], r[2], r[3], r[4], r[5]) for r in reversed(rows)]
            self.push(self._send("candles", [{"type": "snapshot", "candles": candles}]))

    @staticmethod
    def _level(side: str, price: str, qty: str, event_time: str) -> dict[str, str]:
        return {"side": side, "event_time": event_time, "price_level": _trim(price), "new_quantity": qty}

    @staticmethod
    def _ticker(product: str, bid: str, bid_qty: str, ask: str, ask_qty: str, last: float) -> dict[str, str]:
        return {
            "type": "ticker",
            "product_id": product,
            "price": f"{last:.2f}",
            "volume_24_h": "0",
            "low_24_h": f"{last:.2f}",
            "high_24_h": f"{last:.2f}",
            "low_52_w": f"{last:.2f}",
            "high_52_w": f"{last:.2f}",
            "price_percent_chg_24_h": "0",
            "best_bid": bid,
            "best_ask": ask,
            "best_bid_quantity": bid_qty,
            "best_ask_quantity": ask_qty,
        }

    @staticmethod
    def _candle(product: str, t_ms: int, o: str, h: str, lo: str, c: str, v: str) -> dict[str, str]:
        return {
            "start": str(t_ms // 1000),
            "high": _trim(h),
            "low": _trim(lo),
            "open": _trim(o),
            "close": _trim(c),
            "volume": v,
            "product_id": product,
        }

    def translate(self, stream: str, payload: bytes) -> list[bytes]:
        sym, kind = _stream_kind(stream)
        product = coinbase.to_product(sym)
        out: list[bytes] = []
        if self._subs.get("heartbeats") and self._heartbeat_due():
            now = datetime.now(UTC)
            out.append(
                self._send(
                    "heartbeats",
                    [{"current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"), "heartbeat_counter": self._seq}],
                )
            )
        if kind == "depth@100ms":
            d = orjson.loads(payload)
            start = self._book_from.get(sym.upper())
            if start is None or d["u"] <= start:
                return out  # contained in the snapshot this client got
            t = _rfc3339_ms(d["E"])
            updates = [self._level("bid", p, q, t) for p, q in d["b"]] + [
                self._level("offer", p, q, t) for p, q in d["a"]
            ]
            out.append(self._send("l2_data", [{"type": "update", "product_id": product, "updates": updates}]))
            return out
        for ev in self._events(payload):
            if isinstance(ev, Trade):
                self._last_price[ev.symbol] = ev.price
                maker = Side.SELL if ev.side is Side.BUY else Side.BUY
                side = maker if coinbase.SIDE_IS_MAKER else ev.side
                trade = {
                    "product_id": product,
                    "trade_id": str(ev.trade_id),
                    "price": _trim(f"{ev.price:.8f}"),
                    "size": f"{ev.qty:.8f}",
                    "time": _rfc3339_ms(ev.exchange_ms),
                    "side": side.value,
                }
                out.append(self._send("market_trades", [{"type": "update", "trades": [trade]}]))
            elif isinstance(ev, Quote):
                last = self._last_price.get(ev.symbol, (ev.bid + ev.ask) / 2)
                ticker = self._ticker(
                    product,
                    _trim(f"{ev.bid:.8f}"),
                    f"{ev.bid_qty:.8f}",
                    _trim(f"{ev.ask:.8f}"),
                    f"{ev.ask_qty:.8f}",
                    last,
                )
                out.append(self._send("ticker", [{"type": "update", "tickers": [ticker]}]))
            elif kind == "kline_5m":
                k = orjson.loads(payload)["k"]
                candle = self._candle(product, k["t"], k["o"], k["h"], k["l"], k["c"], k["v"])
                out.append(self._send("candles", [{"type": "update", "candles": [candle]}]))
        return out


# ----- Kraken WebSocket v2 ---------------------------------------------------------------------------------

_KRAKEN_KLINES = {1: "1m", 5: "5m", 15: "15m", 30: "30m", 60: "1h", 240: "4h", 1440: "1d"}


class _ServerBook:
    """The full book as Binance text (price -> (price text, qty text)); what a client sees is its top ``depth``."""

    def __init__(self, depth: int, snapshot: dict[str, Any]) -> None:
        self.depth = depth
        self.last_update_id = int(snapshot["lastUpdateId"])
        self.bids = {Decimal(p): (_trim(p), q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): (_trim(p), q) for p, q in snapshot["asks"]}

    def top(self) -> tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]]:
        bids = {k: self.bids[k] for k in sorted(self.bids, reverse=True)[: self.depth]}
        asks = {k: self.asks[k] for k in sorted(self.asks)[: self.depth]}
        return bids, asks

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for rows, levels in ((bids, self.bids), (asks, self.asks)):
            for p, q in rows:
                key = Decimal(p)
                if Decimal(q) == 0:
                    levels.pop(key, None)
                else:
                    levels[key] = (_trim(p), q)

    def checksum(self) -> int:
        bids, asks = self.top()
        return kraken.book_checksum(list(asks.values()), list(bids.values()))


def _levels_json(levels: list[tuple[str, str]]) -> bytes:
    return b"[" + b",".join(b'{"price":%s,"qty":%s}' % (p.encode(), q.encode()) for p, q in levels) + b"]"


class KrakenSession(_Base):
    def __init__(self, source: Source, push: Push, subscribe: Streams, unsubscribe: Streams) -> None:
        super().__init__(source, push, subscribe, unsubscribe)
        self._subs: dict[tuple[str, str], str] = {}  # (channel, pair) -> Binance stream
        self._books: dict[str, _ServerBook] = {}  # symbol -> book this client subscribed

    def start(self) -> None:
        status = {"api_version": "v2", "connection_id": id(self), "system": "online", "version": "2.0.10"}
        self.push(orjson.dumps({"channel": "status", "type": "update", "data": [status]}))

    def fail(self, message: str) -> None:
        now = _now_rfc3339_ns()
        self.push(orjson.dumps({"error": message, "success": False, "time_in": now, "time_out": now}))

    def _reply(self, method: str, req_id: Any, time_in: str, **fields: Any) -> None:
        msg: dict[str, Any] = {"method": method, **fields, "time_in": time_in, "time_out": _now_rfc3339_ns()}
        if req_id is not None:
            msg["req_id"] = req_id
        self.push(orjson.dumps(msg))

    async def on_message(self, message: str | bytes) -> None:
        time_in = _now_rfc3339_ns()
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            self.push(orjson.dumps({"error": "Malformed request", "success": False, "time_in": time_in}))
            return
        if not isinstance(req, dict):
            self.push(orjson.dumps({"error": "Malformed request", "success": False, "time_in": time_in}))
            return
        method, req_id, params = req.get("method"), req.get("req_id"), req.get("params") or {}
        if method == "ping":
            self._reply("pong", req_id, time_in)
            return
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict):
            self._reply(str(method), req_id, time_in, error="Method not found", success=False)
            return
        channel, pairs = params.get("channel"), params.get("symbol")
        if channel not in kraken.CHANNELS:
            self._reply(method, req_id, time_in, error="Channel not found", success=False)
            return
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, str) for p in pairs):
            self._reply(method, req_id, time_in, error="symbol must be a non-empty list", success=False)
            return
        options: dict[str, Any] = {}
        if channel == "book":
            options["depth"] = params.get("depth", 10)
            if options["depth"] not in kraken.BOOK_DEPTHS:
                self._reply(method, req_id, time_in, error="Invalid depth", success=False)
                return
        elif channel == "ohlc":
            options["interval"] = params.get("interval")
            if options["interval"] not in _KRAKEN_KLINES:
                self._reply(method, req_id, time_in, error="Invalid interval", success=False)
                return
        elif channel == "ticker":
            options["event_trigger"] = params.get("event_trigger", "trades")
        for pair in pairs:
            sym = kraken.to_symbol(pair)
            if "/" not in pair or not self.source.serves(f"{sym.lower()}@trade"):
                self._reply(method, req_id, time_in, error="Currency pair not supported", success=False, symbol=pair)
                continue
            key = (channel, pair)
            if method == "unsubscribe":
                stream = self._subs.pop(key, None)
                if stream is not None:
                    self._release(stream)
                    if channel == "book":
                        self._books.pop(sym, None)
                self._reply(method, req_id, time_in, result={"channel": channel, "symbol": pair}, success=True)
                continue
            if key in self._subs:
                self._reply(method, req_id, time_in, error="Already subscribed", success=False, symbol=pair)
                continue
            result = {"channel": channel, **options, "snapshot": bool(params.get("snapshot", True)), "symbol": pair}
            self._reply(method, req_id, time_in, result=result, success=True)
            stream = await self._snapshot(channel, pair, options, result["snapshot"])
            self._subs[key] = stream
            self._need(stream)

    async def _snapshot(self, channel: str, pair: str, options: dict[str, Any], send: bool) -> str:
        """Sends the channel's snapshot (when asked) and returns the Binance stream that feeds its updates."""
        sym = kraken.to_symbol(pair)
        s = sym.lower()
        if channel == "trade":
            if send:
                self.push(orjson.dumps({"channel": "trade", "type": "snapshot", "data": []}))
            return f"{s}@trade"
        if channel == "ticker":
            snap = await self.source.depth_snapshot(sym, 1)
            if send and snap["bids"] and snap["asks"]:
                (bp, bq), (ap, aq) = snap["bids"][0], snap["asks"][0]
                last = self._last_price.get(sym, (float(bp) + float(ap)) / 2)
                self.push(self._ticker("snapshot", pair, float(bp), float(bq), float(ap), float(aq), last))
            return f"{s}@bookTicker"
        if channel == "book":
            book = self._books[sym] = _ServerBook(options["depth"], await self.source.depth_snapshot(sym, 1000))
            bids, asks = book.top()
            self.push(self._book_msg("snapshot", pair, list(bids.values()), list(asks.values()), book.checksum()))
            return f"{s}@depth@100ms"
        interval = options["interval"]
        if send:
            rows = await self.source.klines(sym, _KRAKEN_KLINES[interval], 10)
            data = [self._ohlc(pair, interval, r[0], r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows]
            self.push(
                orjson.dumps({"channel": "ohlc", "type": "snapshot", "timestamp": _now_rfc3339_ns(), "data": data})
            )
        return f"{s}@kline_{_KRAKEN_KLINES[interval]}"

    @staticmethod
    def _ticker(kind: str, pair: str, bid: float, bid_qty: float, ask: float, ask_qty: float, last: float) -> bytes:
        data = {
            "symbol": pair,
            "bid": bid,
            "bid_qty": bid_qty,
            "ask": ask,
            "ask_qty": ask_qty,
            "last": last,
            "volume": 0.0,
            "vwap": last,
            "low": last,
            "high": last,
            "change": 0.0,
            "change_pct": 0.0,
            "timestamp": _rfc3339_ms(int(time.time() * 1000)),
        }
        return orjson.dumps({"channel": "ticker", "type": kind, "data": [data]})

    @staticmethod
    def _ohlc(pair: str, interval: int, t_ms: int, o: Any, h: Any, lo: Any, c: Any, v: Any, n: int) -> dict[str, Any]:
        return {
            "symbol": pair,
            "open": float(o),
            "high": float(h),
            "low": float(lo),
            "close": float(c),
            "trades": int(n),
            "volume": float(v),
            "vwap": float(c),
            "interval_begin": _rfc3339_ms(t_ms, 9),
            "interval": interval,
            "timestamp": _rfc3339_ms(t_ms + interval * 60_000, 6),
        }

    @staticmethod
    def _book_msg(kind: str, pair: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], crc: int) -> bytes:
        ts = _rfc3339_ms(int(time.time() * 1000)).encode()
        return (
            b'{"channel":"book","type":"%s","data":[{"symbol":"%s","bids":%s,"asks":%s,"checksum":%d,"timestamp":"%s"}]}'
            % (kind.encode(), pair.encode(), _levels_json(bids), _levels_json(asks), crc, ts)
        )

    def translate(self, stream: str, payload: bytes) -> list[bytes]:
        sym, kind = _stream_kind(stream)
        pair = kraken.to_pair(sym)
        out: list[bytes] = []
        if self._subs and self._heartbeat_due():
            out.append(b'{"channel":"heartbeat"}')
        if kind == "depth@100ms":
            book = self._books.get(sym.upper())
            d = orjson.loads(payload)
            if book is None or d["u"] <= book.last_update_id:
                return out
            book.last_update_id = d["u"]
            old_bids, old_asks = book.top()
            book.apply(d["b"], d["a"])
            new_bids, new_asks = book.top()
            changes = []
            for old, new, full in ((old_bids, new_bids, book.bids), (old_asks, new_asks, book.asks)):
                side = [lvl for k, lvl in new.items() if old.get(k) != lvl]
                # A level gone from the book is sent as qty 0; one only pushed out of the window is not (the
                # client truncates to its depth, as Kraken documents).
                side += [(lvl[0], "0") for k, lvl in old.items() if k not in new and k not in full]
                changes.append(side)
            if changes[0] or changes[1]:
                out.append(self._book_msg("update", pair, changes[0], changes[1], book.checksum()))
            return out
        for ev in self._events(payload):
            if isinstance(ev, Trade):
                self._last_price[ev.symbol] = ev.price
                data = {
                    "symbol": pair,
                    "side": "buy" if ev.side is Side.BUY else "sell",
                    "price": ev.price,
                    "qty": ev.qty,
                    "ord_type": "market",
                    "trade_id": ev.trade_id,
                    "timestamp": _rfc3339_ms(ev.exchange_ms),
                }
                out.append(orjson.dumps({"channel": "trade", "type": "update", "data": [data]}))
            elif isinstance(ev, Quote):
                last = self._last_price.get(ev.symbol, (ev.bid + ev.ask) / 2)
                out.append(self._ticker("update", pair, ev.bid, ev.bid_qty, ev.ask, ev.ask_qty, last))
            elif kind.startswith("kline_"):
                k = orjson.loads(payload)["k"]
                interval = next(m for m, i in _KRAKEN_KLINES.items() if i == k["i"])
                data = self._ohlc(pair, interval, k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["n"])
                msg = {"channel": "ohlc", "type": "update", "timestamp": _now_rfc3339_ns(), "data": [data]}
                out.append(orjson.dumps(msg))
        return out
