"""The built-in exchange's trading API: Binance spot's order endpoints and the WebSocket API's user data stream,
served on loopback by aiohttp (the market-data server is websockets-based and cannot take POST or DELETE), so
that ccxt's ``binance`` class trades against it exactly as against Binance's spot testnet.

REST (``rest_url`` + ``/api/v3/...``): ping, time, exchangeInfo; signed: account, order (POST / GET / DELETE),
order/test, openOrders (GET / DELETE), allOrders, myTrades; userDataStream (API key only). WebSocket API
(``ws_api_url``): ``userDataStream.subscribe.signature`` (ccxt.pro's spot ``watch_orders`` / ``watch_my_trades``
/ ``watch_balance``), ``userDataStream.unsubscribe``, ``ping``; then ``{"subscriptionId": n, "event": {...}}`` for
each executionReport and outboundAccountPosition of that account. Refusals are Binance's ``{"code", "msg"}``
with its HTTP status (400, 401 for keys); a bad request is never a 500. Unknown paths (404), methods (405) and
requests past the size limits (413; a request line or header up to 64 KiB is read) answer in the same form;
only bytes that are not HTTP at all get aiohttp's plain 400, logged in one line. Each WebSocket API connection's outbox
is bounded: a client that stops reading is cut off (logged and counted) rather than holding the events in memory.

Test hooks: ``drop_next_response(path)`` handles the next request to ``path`` and then cuts the connection
without an answer (an order in flight when the network fails); ``delay_next_response(path, seconds)`` handles the
next request to ``path`` at once and answers only after ``seconds`` (a slow answer while, say, the kill switch
runs); ``drop_user_streams()`` cuts every WebSocket API connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from app.market.sim import order_api_auth as auth
from app.market.sim.order_api_auth import mandatory
from app.market.sim.orders import (
    SIDES,
    TIME_IN_FORCE,
    TYPES,
    ZERO,
    EngineError,
    EngineFill,
    EngineOrder,
    OrderEngine,
    fmt,
)

log = logging.getLogger(__name__)

SIGNED = frozenset({"timestamp", "recvWindow", "signature"})
MAX_REQUEST = 64 * 1024  # body, request line and each header: more than any Binance request needs
OUTBOX_LIMIT = 5_000  # events waiting for one WebSocket API client; an account's events come slowly
RESP_TYPES = ("ACK", "RESULT", "FULL")
_ORDER_PARAMS = SIGNED | {"symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price",
                          "stopPrice", "newClientOrderId", "newOrderRespType", "selfTradePreventionMode", "strategyId",
                          "strategyType"}
_QUERY_PARAMS = SIGNED | {"symbol", "orderId", "origClientOrderId"}
_CANCEL_PARAMS = _QUERY_PARAMS | {"newClientOrderId", "cancelRestrictions"}
_LIST_PARAMS = SIGNED | {"symbol", "orderId", "startTime", "endTime", "fromId", "limit"}
_ACCOUNT_PARAMS = SIGNED | {"omitZeroBalances"}
_SYMBOL_DEFAULTS: dict[str, Any] = {
    "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
    "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS"],
    "icebergAllowed": False,
    "ocoAllowed": False, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
    "cancelReplaceAllowed": False, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
    "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
    "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
}


class OrderApi:
    def __init__(self, engine: OrderEngine, keys: Mapping[str, str], symbol_infos: Sequence[Mapping[str, Any]],
                 host: str = "127.0.0.1", port: int = 0, clock_ms: Callable[[], int] | None = None,
                 outbox_limit: int = OUTBOX_LIMIT) -> None:
        self.engine = engine
        self.keys = dict(keys)
        # An opaque account number, made for this run: nothing about the key can be read back from it.
        uids = set[int]()
        while len(uids) < len(self.keys):
            uids.add(100_000_000 + secrets.randbelow(900_000_000))
        self.uids = dict(zip(self.keys, uids, strict=True))
        self.outbox_limit = outbox_limit
        self.symbols = [{**_SYMBOL_DEFAULTS, **info} for info in symbol_infos]
        self.host, self.port = host, port
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.counts: Counter[str] = Counter()  # requests, refusals by code, dropped, internal errors
        self.calls: Counter[str] = Counter()  # REST requests by "METHOD /path" (what a client asked, for tests)
        self._drop: Counter[str] = Counter()
        self._delays: dict[str, deque[float]] = {}
        self._stopping = asyncio.Event()  # ends every delayed answer at once when the server stops
        self._runner: web.AppRunner | None = None
        self._streams: dict[web.WebSocketResponse, _UserStream] = {}
        self._sub_ids = itertools.count(0)
        engine.add_listener(self._on_event)

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_api_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws-api/v3"

    async def start(self) -> None:
        self._stopping.clear()
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=[_binance_errors])
        app.router.add_route("*", "/api/v3/{name:.+}", self._http)
        app.router.add_get("/ws-api/v3", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, max_line_size=MAX_REQUEST,
                                     max_field_size=MAX_REQUEST, logger=_OneLineLog(log, {}))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self._stopping.set()
        for ws in list(self._streams):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OrderApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- test hooks -------------------------------------------------------------------------------------

    def drop_next_response(self, path: str) -> None:
        """The next request to ``path`` (e.g. ``/api/v3/order``) is handled, then its connection is cut."""
        self._drop[path] += 1

    def delay_next_response(self, path: str, seconds: float) -> None:
        """The next request to ``path`` is handled at once (its effects are visible to every other request and to
        the user stream straight away); its answer leaves only ``seconds`` later. Calls queue up, one per request."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"delay_next_response: {seconds!r} is not a number of seconds")
        self._delays.setdefault(path, deque()).append(seconds)

    def drop_user_streams(self) -> None:
        for stream in list(self._streams.values()):
            stream.cut()

    # -- REST -------------------------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        self.counts["requests"] += 1
        path = request.path
        self.calls[f"{request.method} {path}"] += 1
        try:
            try:
                body = await request.text() if request.can_read_body else ""
            except UnicodeDecodeError:
                raise EngineError(-1100, "Illegal characters found in a parameter.") from None
            except web.HTTPRequestEntityTooLarge:
                raise EngineError(-1100, f"The request is larger than {MAX_REQUEST} bytes.", 413) from None
            query = request.rel_url.raw_query_string
            params = auth.parse_params(query, body)
            result = self._route(request, path, query, body, params)
        except EngineError as exc:
            self.counts[f"refused {exc.code}"] += 1
            result = exc
        except web.HTTPException:
            raise
        except Exception:
            log.exception("trading API: %s %s failed", request.method, path)
            self.counts["internal errors"] += 1
            result = EngineError(-1000, "An unknown error occurred while processing the request.", 500)
        delays = self._delays.get(path)
        if delays:
            self.counts["delayed"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delays.popleft())
        if self._drop[path] > 0:
            self._drop[path] -= 1
            self.counts["dropped"] += 1
            if request.transport is not None:
                request.transport.abort()  # the answer below goes nowhere
            return web.Response(status=204)
        if isinstance(result, EngineError):
            return _json(result.status, {"code": result.code, "msg": result.msg})
        return _json(200, result)

    def _route(self, request: web.Request, path: str, query: str, body: str, params: dict[str, str]) -> Any:
        method = request.method
        name = path.removeprefix("/api/v3/")
        public = {"ping": lambda: {}, "time": lambda: {"serverTime": self.clock_ms()},
                  "exchangeInfo": lambda: self._exchange_info(params)}
        if name in public and method == "GET":
            return public[name]()
        if name == "userDataStream" and method in ("POST", "PUT", "DELETE"):
            auth.api_key_only(request.headers.get("X-MBX-APIKEY"), self.keys)
            return {"listenKey": secrets.token_hex(32)} if method == "POST" else {}
        handlers: dict[tuple[str, str], tuple[frozenset[str], Callable[[str, dict[str, str]], Any]]] = {
            ("GET", "account"): (_ACCOUNT_PARAMS, self._account),
            ("POST", "order"): (_ORDER_PARAMS, self._new_order),
            ("POST", "order/test"): (_ORDER_PARAMS, self._test_order),
            ("GET", "order"): (_QUERY_PARAMS, self._query_order),
            ("DELETE", "order"): (_CANCEL_PARAMS, self._cancel_order),
            ("GET", "openOrders"): (SIGNED | {"symbol"}, self._open_orders),
            ("DELETE", "openOrders"): (SIGNED | {"symbol"}, self._cancel_all),
            ("GET", "allOrders"): (_LIST_PARAMS, self._all_orders),
            ("GET", "myTrades"): (_LIST_PARAMS, self._my_trades),
        }
        handler = handlers.get((method, name))
        if handler is None:
            known = name in public or name == "userDataStream" or any(n == name for _, n in handlers)
            raise web.HTTPMethodNotAllowed(method, []) if known else web.HTTPNotFound()
        allowed, fn = handler
        key = auth.verify_rest(request.headers.get("X-MBX-APIKEY"), query, body, params, self.keys, self.clock_ms())
        auth.check_known(params, allowed)
        return fn(key, params)

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        symbols = self.symbols
        if "symbol" in params or "symbols" in params:
            try:
                wanted = orjson.loads(params["symbols"]) if "symbols" in params else [params["symbol"]]
            except orjson.JSONDecodeError:
                raise auth.illegal("symbols", "a JSON list of symbols") from None
            known = {s["symbol"]: s for s in symbols}
            if not isinstance(wanted, list) or any(not isinstance(w, str) or w not in known for w in wanted):
                raise EngineError(-1121, "Invalid symbol.")
            symbols = [known[w] for w in wanted]
        return {"timezone": "UTC", "serverTime": self.clock_ms(), "rateLimits": [], "exchangeFilters": [],
                "symbols": symbols}

    def _account(self, key: str, params: dict[str, str]) -> dict[str, Any]:
        omit_zero = auth.bool_param(params, "omitZeroBalances")
        balances = [{"asset": a, "free": fmt(b.free), "locked": fmt(b.locked)}
                    for a, b in sorted(self.engine.balances(key).items()) if not (omit_zero and not b.free + b.locked)]
        maker, taker = self.engine.maker_fee, self.engine.taker_fee
        return {
            "makerCommission": int(maker * 10_000), "takerCommission": int(taker * 10_000),
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt(maker), "taker": fmt(taker), "buyer": fmt(ZERO), "seller": fmt(ZERO)},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.clock_ms(),
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": self.uids[key],
        }

    def _order_args(self, params: dict[str, str]) -> dict[str, Any]:
        side = params.get("side") or None
        type_ = params.get("type") or None
        if side is None:
            raise mandatory("side")
        if type_ is None:
            raise mandatory("type")
        return {
            "symbol": auth.symbol_param(params),
            "side": auth.enum_param(params, "side", SIDES, -1117, "Invalid side."),
            "type": auth.enum_param(params, "type", TYPES, -1116, "Invalid orderType."),
            "tif": auth.enum_param(params, "timeInForce", TIME_IN_FORCE, -1115, "Invalid timeInForce."),
            "quantity": auth.decimal_param(params, "quantity"),
            "quote_qty": auth.decimal_param(params, "quoteOrderQty"),
            "price": auth.decimal_param(params, "price"),
            "stop_price": auth.decimal_param(params, "stopPrice"),
            "client_id": auth.client_id_param(params, "newClientOrderId"),
        }

    def _new_order(self, key: str, params: dict[str, str]) -> dict[str, Any]:
        args = self._order_args(params)
        resp = auth.enum_param(params, "newOrderRespType", RESP_TYPES, -1100,
                               "Illegal characters found in parameter 'newOrderRespType'; legal range is "
                               "'ACK, RESULT, FULL'.")
        self._validate_extras(params)
        order = self.engine.place(key, **args)
        resp = resp or ("FULL" if order.type in ("MARKET", "LIMIT") else "ACK")
        ack = {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
               "clientOrderId": order.client_id, "transactTime": order.time}
        if resp == "ACK":
            return ack
        result = {**ack, **_order_fields(order), "workingTime": order.time}
        for name in ("time", "updateTime", "isWorking", "origQuoteOrderQty", "icebergQty"):
            result.pop(name, None)
        if order.type != "STOP_LOSS":  # Binance answers with stopPrice for stop orders only
            result.pop("stopPrice", None)
        if resp == "FULL":
            result["fills"] = [{"price": fmt(f.price), "qty": fmt(f.qty), "commission": fmt(f.commission),
                                "commissionAsset": f.commission_asset, "tradeId": f.trade_id} for f in order.fills]
        return result

    def _test_order(self, key: str, params: dict[str, str]) -> dict[str, Any]:
        args = self._order_args(params)
        self._validate_extras(params)
        args.pop("client_id")
        self.engine.validate(key, **args)  # what Binance checks of a test order: parameters and filters
        return {}

    @staticmethod
    def _validate_extras(params: dict[str, str]) -> None:
        auth.enum_param(params, "selfTradePreventionMode", ("NONE", "EXPIRE_MAKER", "EXPIRE_TAKER", "EXPIRE_BOTH"),
                        -1100, "Illegal characters found in parameter 'selfTradePreventionMode'.")
        auth.long_param(params, "strategyId")
        auth.long_param(params, "strategyType", None, 1_000_000)

    def _lookup(self, params: dict[str, str], name: str = "origClientOrderId") -> tuple[str, int | None, str | None]:
        symbol = auth.symbol_param(params)
        assert symbol is not None
        return symbol, auth.long_param(params, "orderId"), auth.client_id_param(params, name)

    def _query_order(self, key: str, params: dict[str, str]) -> dict[str, Any]:
        symbol, order_id, client_id = self._lookup(params)
        return _order_fields(self.engine.get(key, symbol, order_id, client_id))

    def _cancel_order(self, key: str, params: dict[str, str]) -> dict[str, Any]:
        symbol, order_id, client_id = self._lookup(params)
        new_id = auth.client_id_param(params, "newClientOrderId")
        auth.enum_param(params, "cancelRestrictions", ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"), -1100,
                        "Illegal characters found in parameter 'cancelRestrictions'.")
        return self._canceled(self.engine.cancel(key, symbol, order_id, client_id, new_id))

    @staticmethod
    def _canceled(order: EngineOrder) -> dict[str, Any]:
        fields = _order_fields(order)
        for name in ("time", "updateTime", "isWorking", "workingTime", "origQuoteOrderQty", "icebergQty"):
            fields.pop(name, None)
        if order.type != "STOP_LOSS":
            fields.pop("stopPrice", None)
        # As Binance: clientOrderId is the cancel request's own id; the order's is origClientOrderId.
        return {**fields, "origClientOrderId": order.client_id,
                "clientOrderId": order.cancel_id, "transactTime": order.update_time}

    def _open_orders(self, key: str, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = auth.symbol_param(params, required=False)
        return [_order_fields(o) for o in self.engine.open_orders(key, symbol)]

    def _cancel_all(self, key: str, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = auth.symbol_param(params)
        assert symbol is not None
        return [self._canceled(o) for o in self.engine.cancel_all(key, symbol)]

    def _window(self, params: dict[str, str]) -> tuple[str, int | None, int | None, int | None, int]:
        symbol = auth.symbol_param(params)
        assert symbol is not None
        start, end = auth.long_param(params, "startTime"), auth.long_param(params, "endTime")
        if start is not None and end is not None and end < start:
            raise EngineError(-1127, "Lookup interval is too big.")
        limit = auth.long_param(params, "limit", 500, 1, 1000)
        assert limit is not None
        return symbol, auth.long_param(params, "orderId"), start, end, limit

    def _all_orders(self, key: str, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol, order_id, start, end, limit = self._window(params)
        orders = [o for o in self.engine.all_orders(key, symbol) if (order_id is None or o.order_id >= order_id)
                  and (start is None or o.time >= start) and (end is None or o.time <= end)]
        return [_order_fields(o) for o in (orders[:limit] if start is not None or order_id else orders[-limit:])]

    def _my_trades(self, key: str, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol, order_id, start, end, limit = self._window(params)
        from_id = auth.long_param(params, "fromId")
        trades = [t for t in self.engine.my_trades(key, symbol) if (order_id is None or t.order_id == order_id)
                  and (from_id is None or t.trade_id >= from_id) and (start is None or t.time >= start)
                  and (end is None or t.time <= end)]
        picked = trades[:limit] if start is not None or from_id is not None else trades[-limit:]
        return [_trade_fields(t) for t in picked]

    # -- WebSocket API: the user data stream ------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
        await ws.prepare(request)
        stream = _UserStream(ws, request, self.outbox_limit, self._on_overflow)
        self._streams[ws] = stream
        writer = asyncio.create_task(stream.write_loop(), name="trading API user stream")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    stream.send({"id": None, "status": 400, "error": {"code": -1100, "msg": "Text frames only."}})
                    continue
                try:
                    answer = self._ws_request(stream, msg.data)
                except Exception:  # a bug here must not end the connection without an answer
                    log.exception("trading API: WebSocket API request failed")
                    self.counts["internal errors"] += 1
                    answer = _ws_error(None, EngineError(-1000, "An unknown error occurred while processing the "
                                                               "request.", 500))
                stream.send(answer)
        finally:
            self._streams.pop(ws, None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    def _ws_request(self, stream: _UserStream, text: str) -> dict[str, Any]:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _ws_error(None, EngineError(-1100, "Malformed request: not JSON."))
        if not isinstance(message, dict):
            return _ws_error(None, EngineError(-1100, "Malformed request: not a JSON object."))
        request_id = message.get("id")
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            return _ws_error(None, mandatory("id"))
        method = message.get("method")
        try:
            if method == "userDataStream.subscribe.signature":
                key = auth.verify_ws(message.get("params"), self.keys, self.clock_ms())
                if not self.engine.has_account(key):
                    raise EngineError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
                sub_id = next(self._sub_ids)
                stream.subscriptions[sub_id] = key
                return _ws_ok(request_id, {"subscriptionId": sub_id})
            if method == "userDataStream.unsubscribe":
                params = message.get("params")
                if params is not None and not isinstance(params, dict):
                    raise mandatory("params")
                sub_id = (params or {}).get("subscriptionId")
                if sub_id is not None and (isinstance(sub_id, bool) or not isinstance(sub_id, int)):
                    raise auth.illegal("subscriptionId", "an integer")
                if sub_id is None:
                    stream.subscriptions.clear()
                elif stream.subscriptions.pop(sub_id, None) is None:
                    raise EngineError(-2, "Not subscribed.")
                return _ws_ok(request_id, {})
            if method == "ping":
                return _ws_ok(request_id, {})
            if method == "time":
                return _ws_ok(request_id, {"serverTime": self.clock_ms()})
            raise EngineError(-1020, "This operation is not supported.")
        except EngineError as exc:
            self.counts[f"refused {exc.code}"] += 1
            return _ws_error(request_id, exc)

    def _on_overflow(self, stream: _UserStream) -> None:
        peer = stream.request.remote or "a client"
        log.warning("trading API: closing the user stream of %s: %d events behind (the client stopped reading)",
                    peer, stream.outbox.qsize())
        self.counts["slow user streams dropped"] += 1
        self._streams.pop(stream.ws, None)
        stream.cut()

    def _on_event(self, key: str, event: dict[str, Any]) -> None:
        for stream in list(self._streams.values()):  # an overflowing stream leaves these as it is cut
            for sub_id, sub_key in list(stream.subscriptions.items()):
                if sub_key == key:
                    stream.send({"subscriptionId": sub_id, "event": event})


class _UserStream:
    """One WebSocket API connection: its subscriptions and an outbox drained in order by its own writer."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, limit: int,
                 on_overflow: Callable[[_UserStream], None]) -> None:
        self.ws = ws
        self.request = request
        self.subscriptions: dict[int, str] = {}  # subscription id -> API key
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue(limit)
        self.on_overflow = on_overflow
        self.closed = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.outbox.put_nowait(orjson.dumps(message))
        except asyncio.QueueFull:
            self.closed = True
            self.subscriptions.clear()
            self.on_overflow(self)

    async def write_loop(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await self.ws.send_str((await self.outbox.get()).decode())

    def cut(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()


@web.middleware
async def _binance_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
    """aiohttp's own refusals (no such path or method, not a WebSocket upgrade) in Binance's form."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, msg = ((-1020, "This operation is not supported.") if exc.status in (404, 405)
                     else (-1100, exc.reason or "Bad request."))
        return _json(exc.status, {"code": code, "msg": msg})


class _OneLineLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log for requests that are not HTTP at all: one line, not a traceback per bad client."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        text = str(getattr(exc_info, "message", exc_info)) if isinstance(exc_info, BaseException) else ""
        reason = next((line.strip() for line in text.splitlines() if line.strip()), "")
        self.warning("trading API: %s (%s)", str(msg) % args, reason or "bad request")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _ws_ok(request_id: Any, result: Any) -> dict[str, Any]:
    return {"id": request_id, "status": 200, "result": result, "rateLimits": []}


def _ws_error(request_id: Any, exc: EngineError) -> dict[str, Any]:
    return {"id": request_id, "status": exc.status, "error": {"code": exc.code, "msg": exc.msg}}


def _order_fields(o: EngineOrder) -> dict[str, Any]:
    return {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_id,
        "price": fmt(o.price), "origQty": fmt(o.qty), "executedQty": fmt(o.executed),
        "cummulativeQuoteQty": fmt(o.cum_quote), "status": o.status, "timeInForce": o.tif, "type": o.type,
        "side": o.side, "stopPrice": fmt(o.stop_price), "icebergQty": fmt(ZERO), "time": o.time,
        "updateTime": o.update_time, "isWorking": o.working,
        "workingTime": -1 if o.type == "STOP_LOSS" and not o.working else o.time,  # an untriggered stop: -1
        "origQuoteOrderQty": fmt(o.quote_qty),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def _trade_fields(t: EngineFill) -> dict[str, Any]:
    return {
        "symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1, "price": fmt(t.price),
        "qty": fmt(t.qty), "quoteQty": fmt(t.quote_qty), "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.side == "BUY", "isMaker": t.maker,
        "isBestMatch": True,
    }
