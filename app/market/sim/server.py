"""The built-in exchange: Binance spot's market-data protocol, served on loopback.

The terminal's real Binance adapter and connection code talk to it exactly as to the exchange: combined
(``/stream?streams=a/b``) and raw (``/ws/<stream>``) WebSocket streams, live SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS requests, and the REST calls the terminal makes at start (``/api/v3/depth``,
``/api/v3/klines``) on the same port through websockets' ``process_request`` hook.

What is served comes from a source (``MarketSource``): ``SyntheticMarket`` generates a market (GARCH
volatility, Poisson trades, a small order book) together with a recent history that ends where the live
market starts; ``ReplaySource`` replays a recorded file. The server pulls batches of frames from the source
and fans each frame out to the connections subscribed to its stream through one bounded outbox per
connection, drained by that connection's own writer task, so a slow client never holds up the others: it is
closed when its outbox overflows (live sources) or stops draining (a replay at full speed, which otherwise
goes exactly as fast as its readers).

No Qt here, and nothing holds the event loop for more than a few milliseconds: the synthetic market advances
in 25 ms ticks, a replay sleeps once per batch, and history is generated with numpy in bounded blocks.

Run alone: ``python -m app.market.sim --port 9000 [--replay FILE --speed 2]``.
"""


from __future__ import annotations

import asyncio
import errno
import http
import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from app.market.sim.protocols import BINANCE_LIKE, PROTOCOLS, FuturesDialect, ProtocolSession, make_session
from app.market.sim.source import Frame, MarketSource, RestError, SimulatorPortInUse, invalid_symbol
from app.market.sim.synthetic import SyntheticMarket

if TYPE_CHECKING:
    from app.market.sim.order_api_setup import TradingSetup, TradingSide

_MAX_STREAMS = 1024  # Binance's limit per connection

_WRITE_YIELD_EVERY = 64  # frames a client's writer sends before it gives the loop a turn
_OUTBOX_MAX = 10_000  # messages queued for one client before a live source gives up on it (default)
_OUTBOX_HIGH = 1_000  # a full-speed replay waits for outboxes above this...
_OUTBOX_LOW = 100  # ...until they are back under this
_SLOW_CLIENT_S = 5.0  # ...for at most this long, then closes that client

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimulatorStats:
    frames_sent: int = 0  # every WebSocket message written (market frames and request replies)
    clients: int = 0  # connections open now
    slow_clients_dropped: int = 0  # closed because they could not keep up
    # Binance-dialect trade frames written, per symbol: what a fault test compares with the trades the terminal
    # delivered (scripts/chaos.py reads it from the ``stats`` line printed at exit).
    trades_sent: Counter[str] = field(default_factory=Counter)


_TRADE_MARK = b'"e":"trade"'
_SYMBOL_FIELD = re.compile(rb'"s":"([^"]+)"')


def _count_trade(stats: SimulatorStats, msg: bytes) -> None:
    if _TRADE_MARK in msg[:96] and (m := _SYMBOL_FIELD.search(msg)) is not None:
        stats.trades_sent[m.group(1).decode()] += 1


class _Client:
    """One WebSocket connection: its subscriptions and its outbox, drained by its own writer task."""

    def __init__(self, ws: ServerConnection, combined: bool) -> None:
        self.ws = ws
        self.combined = combined
        self.streams: dict[str, None] = {}  # an ordered set: LIST_SUBSCRIPTIONS answers in order
        self.drained = asyncio.Event()
        self.drained.set()
        self._outbox: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.proto: ProtocolSession | None = None  # set when the server speaks Coinbase or Kraken (sim_protocols)

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    def push(self, msg: bytes) -> None:
        self._outbox.append(msg)
        if len(self._outbox) > _OUTBOX_HIGH:
            self.drained.clear()
        self._ready.set()

    def discard(self) -> None:
        self._outbox.clear()
        self.drained.set()

    async def write_loop(self, stats: SimulatorStats) -> None:
        sent = 0
        try:
            while True:
                while not self._outbox:
                    self._ready.clear()
                    await self._ready.wait()
                msg = self._outbox.popleft()
                if len(self._outbox) <= _OUTBOX_LOW:
                    self.drained.set()
                await self.ws.send(msg, text=True)  # returns at once while the socket takes it: no turn of the loop
                stats.frames_sent += 1
                _count_trade(stats, msg)
                sent += 1
                if sent % _WRITE_YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the terminal (same loop) in between chunks of a large batch
        except ConnectionClosed:
            pass


def _ws_target(path: str) -> tuple[bool, list[str]] | None:
    """(combined, streams) for a WebSocket path, None for any other path."""
    url = urlsplit(path)
    if url.path == "/stream":
        names = parse_qs(url.query).get("streams", [""])[0]
        return True, [s for s in names.split("/") if s]
    if url.path == "/ws" or url.path.startswith("/ws/"):
        return False, [unquote(s) for s in url.path[4:].split("/") if s]
    return None


def _json_response(status: int, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _error(code: int, msg: str, request_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


def _valid_id(request_id: Any) -> bool:
    if isinstance(request_id, bool):
        return False
    return (
        request_id is None
        or (isinstance(request_id, int) and 0 <= request_id < 2**63)
        or (isinstance(request_id, str) and len(request_id) <= 36)
    )


def _param(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise RestError(
            400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _int_param(params: dict[str, str], name: str, default: int | None, lo: int, hi: int) -> int | None:
    """Binance's parsing: digits only; ``limit`` above its maximum is capped rather than refused."""
    value = params.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 20:
        raise RestError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return min(max(int(value), lo), hi)


class ExchangeSimulator:
    """Serves a ``MarketSource`` as Binance spot does, on ``ws_url`` and ``rest_url`` (the same port)."""

    def __init__(
        self,
        source: MarketSource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_backlog: int = _OUTBOX_MAX,
        protocol: str = "binance",
        trading: TradingSetup | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        # Orders too (order_api.py, on a port of its own): Binance spot's order API over this source's books.
        self.trading: TradingSide | None = None
        if trading is not None:
            if protocol != "binance":
                raise ValueError(f"the built-in exchange trades as Binance spot only, not as {protocol}")
            from app.market.sim.order_api_setup import TradingSide

            self.trading = TradingSide(source, trading, host)
        self.protocol = protocol  # the WebSocket dialect: "binance", or "coinbase"/"kraken" via sim_protocols
        # Binance USD-M futures: spot's protocol with its own frames and ids, rewritten once for all listeners
        self._futures = FuturesDialect() if protocol == "binance-futures" else None
        self.source = source
        self.max_backlog = max_backlog  # messages a client may be behind before a live source drops it
        self.host = host
        self.port = port  # the bound port once started
        self.stats = SimulatorStats()
        self._server: Server | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clients: set[_Client] = set()
        self._subs: dict[str, set[_Client]] = {}  # stream -> clients; its keys are what the source must make
        self._running = asyncio.Event()
        self._running.set()
        self._subscribed = asyncio.Event()
        self._stopped: asyncio.Event | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def trading_url(self) -> str:
        """The trading API's REST base (``http://host:port``; ccxt's api URLs are it + ``/api/v3``); "" if off."""
        return self.trading.rest_url if self.trading is not None else ""

    @property
    def ws_api_url(self) -> str:
        """The trading API's WebSocket API (the user data stream), ``ws://host:port/ws-api/v3``; "" if off."""
        return self.trading.ws_api_url if self.trading is not None else ""

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    async def start(self) -> None:
        if self._server is not None or self._stopped is not None:
            raise RuntimeError("the simulator was already started")
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                compression=None,  # Binance does not compress; on loopback it would only cost CPU
                ping_interval=20,  # Binance pings every 20 s and allows a minute for the pong
                ping_timeout=60,
                close_timeout=2,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or getattr(exc, "winerror", None) == 10048:
                raise SimulatorPortInUse(self.port) from None
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        if self.trading is not None:
            try:
                await self.trading.start()
            except OSError:
                self._server.close()
                await self._server.wait_closed()
                raise
        self._pump_task = asyncio.create_task(self._pump(), name=f"simulator pump :{self.port}")

    async def stop(self) -> None:
        """Closes every client (1001 going away) and the server, and cancels every task it started."""
        if self._stopped is not None:
            await self._stopped.wait()
            return
        self._stopped = asyncio.Event()
        tasks = [t for t in (self._pump_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.trading is not None:
            await self.trading.stop()
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._stopped.set()

    async def __aenter__(self) -> ExchangeSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def drop_clients(self) -> None:
        """Cuts every connection without a closing handshake, as a network failure would."""
        for client in list(self._clients):
            client.ws.transport.abort()

    def pause(self) -> None:
        """Stops sending market frames (the connections stay open and answer pings)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # -- market frames ------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        source = self.source
        if source.wait_for_subscriber:
            await self._subscribed.wait()
        # With trading on, the source also makes the trades resting orders fill on, subscribed or not.
        batches = source.batches(self._subs if self.trading is None else self.trading.wanted(self._subs))
        try:
            while True:
                await self._running.wait()
                batch = await anext(batches, None)
                if batch is None:
                    return
                await self._running.wait()  # a pause that began while the batch was made holds it too
                self._fan_out(batch)
                if not source.paced:
                    await self._throttle()
        except Exception:
            log.exception("the market source failed; the streams stop (the server stays up)")
        finally:
            await batches.aclose()

    def _fan_out(self, batch: list[Frame]) -> None:
        # Judged once a batch: a client still max_backlog behind had a whole tick to catch up. (Checking per
        # frame would drop a healthy client for one large batch its writer has not had a chance to send.)
        for client in [c for c in self._clients if c.backlog >= self.max_backlog]:
            self._drop_slow(client)
        trading = self.trading
        for stream, payload in batch:
            if trading is not None and stream in trading.streams:
                trading.on_frame(stream, payload)
            clients = self._subs.get(stream)
            if not clients:
                continue
            if self._futures is not None:
                payload = self._futures.translate(stream, payload)
            envelope = b'{"stream":"%s","data":%s}' % (stream.encode(), payload)
            for client in clients:
                if client.proto is not None:  # another exchange's dialect (sim_protocols)
                    for message in client.proto.translate(stream, payload):
                        client.push(message)
                    continue
                client.push(envelope if client.combined else payload)

    async def _throttle(self) -> None:
        """A full-speed replay goes as fast as its readers: wait for each congested outbox to drain, but close
        a client that does not within _SLOW_CLIENT_S, so one stuck reader cannot stall the tape."""
        for client in [c for c in self._clients if not c.drained.is_set()]:
            try:
                async with asyncio.timeout(_SLOW_CLIENT_S):
                    await client.drained.wait()
            except TimeoutError:
                self._drop_slow(client)

    def _drop_slow(self, client: _Client) -> None:
        log.warning("closing %s: %d messages behind", client.ws.remote_address, client.backlog)
        self.stats.slow_clients_dropped += 1
        self._forget(client)
        self._track(asyncio.create_task(client.ws.close(1008, "client too slow")))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections --------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # the handshake is done
        combined, streams = _ws_target(ws.request.path) or (False, [])
        client = _Client(ws, combined)
        self._clients.add(client)
        self.stats.clients = len(self._clients)
        self._subscribe(client, streams)
        if self.protocol not in BINANCE_LIKE:  # Coinbase / Kraken dialect: its session answers and translates
            client.proto = make_session(
                self.protocol,
                self.source,
                client.push,
                lambda s: self._subscribe(client, s),
                lambda s: self._unsubscribe(client, s),
            )
            client.proto.start()
        writer = asyncio.create_task(client.write_loop(self.stats))
        self._track(writer)
        try:
            async for message in ws:
                if client.proto is not None:
                    # These dialects send a subscription's snapshot before subscribing its stream, and a replay's
                    # snapshot comes from the tape: the tape must be rolling by then, so a request starts it.
                    self._subscribed.set()
                    try:
                        await client.proto.on_message(message)
                    except RestError as exc:  # a replay without a book yet: an error answer, the connection stays
                        client.proto.fail(exc.msg)
                    continue
                reply = self._answer(client, message)
                if reply is not None:
                    client.push(orjson.dumps(reply))
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)
            writer.cancel()

    def _forget(self, client: _Client) -> None:
        if client not in self._clients:
            return
        self._clients.discard(client)
        self._unsubscribe(client, list(client.streams))
        client.discard()
        self.stats.clients = len(self._clients)

    def _subscribe(self, client: _Client, streams: list[str]) -> None:
        for stream in streams:
            client.streams[stream] = None
            self._subs.setdefault(stream, set()).add(client)
        if streams:
            self._subscribed.set()

    def _unsubscribe(self, client: _Client, streams: list[str]) -> None:
        for stream in streams:
            client.streams.pop(stream, None)
            clients = self._subs.get(stream)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._subs[stream]

    def _answer(self, client: _Client, message: str | bytes) -> dict[str, Any] | None:
        """The reply to one request, with Binance's error codes; the connection stays open either way.
        None when the reply is already queued (SUBSCRIBE queues it ahead of the new streams' frames)."""
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            return _error(3, f"Invalid JSON: {exc}", None)
        if not isinstance(request, dict):
            return _error(2, "Invalid request: expected a JSON object", None)
        request_id = request.get("id")
        if not _valid_id(request_id):
            return _error(2, "Invalid request: request ID must be an unsigned integer", None)
        method = request.get("method")
        if method is None:
            return _error(2, "Invalid request: missing field `method`", request_id)
        params = request.get("params")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return self._change_subscriptions(client, method, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(client.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return _property(client, method, params, request_id)
        expected = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
        return _error(2, f"Invalid request: unknown variant {method}, expected one of {expected}", request_id)

    def _change_subscriptions(
        self, client: _Client, method: str, params: Any, request_id: Any
    ) -> dict[str, Any] | None:
        if not isinstance(params, list) or not all(isinstance(s, str) for s in params):
            return _error(2, "Invalid request: params must be a list of stream names", request_id)
        if method == "UNSUBSCRIBE":
            self._unsubscribe(client, params)
            return {"result": None, "id": request_id}
        unknown = [s for s in params if not self.source.serves(s)]
        if unknown:
            return _error(2, f"Invalid request: unknown stream {unknown[0]!r}", request_id)
        if len(client.streams.keys() | set(params)) > _MAX_STREAMS:
            return _error(2, f"Invalid request: more than {_MAX_STREAMS} streams", request_id)
        # The reply is queued before any frame of the new streams, as Binance sends it.
        client.push(orjson.dumps({"result": None, "id": request_id}))
        self._subscribe(client, params)
        return None

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.protocol not in BINANCE_LIKE and request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # Coinbase ("/") and Kraken ("/v2") connect first and subscribe on the socket
        target = _ws_target(request.path)
        if target is not None:
            streams = target[1]
            unknown = [s for s in streams if not self.source.serves(s)]
            if unknown or len(streams) > _MAX_STREAMS:
                reason = f"unknown stream {unknown[0]!r}" if unknown else f"more than {_MAX_STREAMS} streams"
                return _json_response(400, {"code": -1100, "msg": f"Invalid request: {reason}"})
            return None  # the WebSocket handshake goes on
        url = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            return _json_response(200, await self._rest(url.path, params))
        except RestError as exc:
            return _json_response(exc.status, {"code": exc.code, "msg": exc.msg})

    async def _rest(self, path: str, params: dict[str, str]) -> Any:
        if self._futures is not None and path.startswith("/fapi/v1/"):  # futures' paths, the same answers
            path = "/api/v3/" + path.removeprefix("/fapi/v1/")
        if path == "/api/v3/ping":
            return {}
        if path == "/api/v3/time":
            return {"serverTime": time.time_ns() // 1_000_000}
        if path == "/api/v3/depth":
            symbol = _param(params, "symbol")
            limit = _int_param(params, "limit", 100, 1, 5000)
            assert limit is not None
            snapshot = await self.source.depth_snapshot(symbol, limit)
            return snapshot if self._futures is None else self._futures.snapshot(snapshot)
        if path == "/api/v3/exchangeInfo":
            return _exchange_info(self.source, params)
        if path == "/api/v3/klines":
            symbol, interval = _param(params, "symbol"), _param(params, "interval")
            limit = _int_param(params, "limit", 500, 1, 1000)
            assert limit is not None
            start = _int_param(params, "startTime", None, 0, 2**63 - 1)
            end = _int_param(params, "endTime", None, 0, 2**63 - 1)
            return await self.source.klines(symbol, interval, limit, start, end)
        if path == "/api/v3/ticker/24hr":
            return await _tickers_24h(self.source, params)
        raise RestError(404, -1, f"no such endpoint: {path}")


def _exchange_info(source: Any, params: dict[str, str]) -> dict[str, Any]:
    """``/api/v3/exchangeInfo?symbols=["A","B"]`` (or ``symbol=A``, or all) for the synthetic markets; a replay
    knows no filters and answers as Binance does for a symbol it does not list."""
    markets = getattr(source, "markets", None)
    if markets is None and isinstance(source, SyntheticMarket):
        markets = {source.symbol: source}
    if not markets:
        raise invalid_symbol()
    try:
        wanted = orjson.loads(params["symbols"]) if "symbols" in params else [params.get("symbol") or ""]
    except orjson.JSONDecodeError:
        raise RestError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
    if wanted == [""]:
        wanted = list(markets)
    if not isinstance(wanted, list) or any(not isinstance(w, str) or w.upper() not in markets for w in wanted):
        raise invalid_symbol()
    return {"timezone": "UTC", "serverTime": time.time_ns() // 1_000_000,
            "symbols": [markets[w.upper()].symbol_info() for w in wanted]}


async def _tickers_24h(source: Any, params: dict[str, str]) -> Any:
    """``/api/v3/ticker/24hr`` (``symbol=A``: one object; ``symbols=["A","B"]`` or nothing: a list) from the
    source's own bars: the rolling 24 h as 5 min klines (the first open to the last close). A symbol the source does
    not make is Binance's "invalid symbol"."""
    if "symbol" in params:
        return await _ticker_24h(source, _param(params, "symbol").upper())
    if "symbols" in params:
        try:
            wanted = orjson.loads(params["symbols"])
        except orjson.JSONDecodeError:
            raise RestError(400, -1100, "Illegal characters found in parameter 'symbols'.") from None
        if not isinstance(wanted, list) or not wanted or any(not isinstance(w, str) for w in wanted):
            raise RestError(400, -1100, "Illegal characters found in parameter 'symbols'.")
    else:
        markets = getattr(source, "markets", None)
        wanted = list(markets) if markets else sorted(getattr(source, "symbols_held", ()))
        if not wanted and isinstance(source, SyntheticMarket):
            wanted = [source.symbol]
    return [await _ticker_24h(source, w.upper()) for w in wanted]


async def _ticker_24h(source: Any, symbol: str) -> dict[str, Any]:
    from decimal import Decimal

    if not source.serves(f"{symbol.lower()}@trade"):
        raise invalid_symbol()
    now_ms = time.time_ns() // 1_000_000
    bars = await source.klines(symbol, "5m", 289)  # 288 whole bars and the one forming: 24 h to the bar
    if not bars:
        raise invalid_symbol()
    hi = max(bars, key=lambda b: float(b[2]))[2]
    lo = min(bars, key=lambda b: float(b[3]))[3]
    open_, last = Decimal(bars[0][1]), Decimal(bars[-1][4])
    volume = sum(Decimal(b[5]) for b in bars)
    quote_volume = sum(Decimal(b[7]) for b in bars)
    change = last - open_
    eight = Decimal("1e-8")
    try:
        book = await source.depth_snapshot(symbol, 1)
        bid, ask = (book["bids"] or [["0", "0"]])[0], (book["asks"] or [["0", "0"]])[0]
    except RestError:  # a replay without a book yet
        bid = ask = ["0.00000000", "0.00000000"]
    return {
        "symbol": symbol, "priceChange": f"{change.quantize(eight)}",
        "priceChangePercent": f"{(change / open_ * 100).quantize(Decimal('0.001'))}",
        "weightedAvgPrice": f"{(quote_volume / volume).quantize(eight) if volume else last}",
        "prevClosePrice": bars[0][1], "lastPrice": bars[-1][4], "lastQty": "0.00000000",
        "bidPrice": bid[0], "bidQty": bid[1], "askPrice": ask[0], "askQty": ask[1],
        "openPrice": bars[0][1], "highPrice": hi, "lowPrice": lo,
        "volume": f"{volume.quantize(eight)}", "quoteVolume": f"{quote_volume.quantize(eight)}",
        "openTime": bars[0][0], "closeTime": now_ms, "firstId": -1, "lastId": -1,
        "count": sum(int(b[8]) for b in bars),
    }


def _property(client: _Client, method: str, params: Any, request_id: Any) -> dict[str, Any]:
    """SET_PROPERTY ["combined", bool] / GET_PROPERTY ["combined"]: the one property Binance has."""
    if not isinstance(params, list) or not params or params[0] != "combined":
        return _error(0, "Unknown property", request_id)
    if method == "GET_PROPERTY":
        return {"result": client.combined, "id": request_id}
    if len(params) != 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", request_id)
    client.combined = params[1]
    return {"result": None, "id": request_id}


