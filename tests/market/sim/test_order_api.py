"""The trading API on loopback: Binance's signing and refusals with raw HTTP requests, then ccxt's binance class
trading against it (REST and the WebSocket API's user data stream)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal as D
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import pytest_asyncio

from app.market.sim import order_api_auth as auth
from app.market.sim.order_api import OrderApi
from app.market.sim.orders import OrderEngine, SymbolRules
from tests.market.sim.fakes import SYMBOL_INFO, FakeBook, ccxt_client, now_ms, order_api, until

KEY, SECRET = "test-key-1", "test-secret-1"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[OrderApi]:
    async with order_api(KEY, SECRET) as server:
        yield server


def signed(params: dict[str, Any], secret: str = SECRET, ts: int | None = None) -> str:
    query = urlencode({**params, "timestamp": now_ms() if ts is None else ts})
    return query + "&signature=" + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def ws_params(secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    """The WebSocket API's signed params: HMAC over the params sorted by name (not the order sent, as REST)."""
    params = {"apiKey": KEY, "timestamp": now_ms(), **extra}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return {**params, "signature": hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()}


async def call(api: OrderApi, method: str, path: str, params: dict[str, Any] | None = None, *,
               key: str | None = KEY, secret: str = SECRET, ts: int | None = None,
               raw: str | None = None) -> tuple[int, Any]:
    payload = raw if raw is not None else signed(params or {}, secret, ts)
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    url = api.rest_url + "/api/v3/" + path
    async with httpx.AsyncClient() as client:
        if method in ("GET", "DELETE"):
            r = await client.request(method, f"{url}?{payload}", headers=headers)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            r = await client.request(method, url, content=payload, headers=headers)
    return r.status_code, r.json()


def refusal(result: tuple[int, Any], status: int, code: int, msg: str | None = None) -> None:
    got_status, body = result
    assert (got_status, body["code"]) == (status, code), body
    if msg is not None:
        assert body["msg"] == msg


ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1", "price": "90"}


@pytest.mark.asyncio
async def test_public_endpoints(api: OrderApi) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(api.rest_url + "/api/v3/ping")).json() == {}
        assert (await client.get(api.rest_url + "/api/v3/time")).json()["serverTime"] > 0
        info = (await client.get(api.rest_url + '/api/v3/exchangeInfo?symbols=["BTCUSDT"]')).json()
        assert info["symbols"][0]["filters"] == SYMBOL_INFO["filters"]
        r = await client.get(api.rest_url + "/api/v3/exchangeInfo?symbol=NOPE")
        assert (r.status_code, r.json()["code"]) == (400, -1121)
        assert (await client.get(api.rest_url + "/api/v3/nothing")).status_code == 404


@pytest.mark.asyncio
async def test_authentication_refusals(api: OrderApi) -> None:
    refusal(await call(api, "GET", "account", secret="wrong"), 400, -1022,
            "Signature for this request is not valid.")
    refusal(await call(api, "GET", "account", key="who"), 401, -2015,
            "Invalid API-key, IP, or permissions for action.")
    refusal(await call(api, "GET", "account", key=None), 401, -2014)
    refusal(await call(api, "GET", "account", ts=now_ms() - 60_000), 400, -1021,
            "Timestamp for this request is outside of the recvWindow.")
    refusal(await call(api, "GET", "account", ts=now_ms() + 5_000), 400, -1021)
    refusal(await call(api, "GET", "account", {"recvWindow": 70_000}), 400, -1131)
    refusal(await call(api, "GET", "account", raw="recvWindow=5000"), 400, -1102)
    refusal(await call(api, "GET", "account", raw=urlencode({"timestamp": now_ms()})), 400, -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    # a parameter changed after signing
    refusal(await call(api, "POST", "order", raw=signed(ORDER).replace("price=90", "price=91")), 400, -1022)
    status, body = await call(api, "GET", "account", {"recvWindow": 59_000, "omitZeroBalances": "true"})
    assert status == 200 and {b["asset"] for b in body["balances"]} == {"BTC", "USDT"}


@pytest.mark.asyncio
async def test_signature_over_query_and_body(api: OrderApi) -> None:
    """Binance signs the query string followed by the body; parameters may be split between them."""
    query = "symbol=BTCUSDT&side=BUY&type=LIMIT"
    body = urlencode({"timeInForce": "GTC", "quantity": "1", "price": "90", "timestamp": now_ms()})
    sig = hmac.new(SECRET.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{api.rest_url}/api/v3/order?{query}", content=f"{body}&signature={sig}",
                              headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["status"] == "NEW"


@pytest.mark.asyncio
async def test_a_parameter_in_both_query_and_body_takes_the_querys_value(api: OrderApi) -> None:
    """Binance: "If a parameter sent in both the query string and request body, the query string parameter will
    be used." The signature still covers the query followed by the body, exactly as sent."""
    query = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.5&price=90"
    body = urlencode({"timeInForce": "GTC", "quantity": "2", "price": "80", "timestamp": now_ms()})
    sig = hmac.new(SECRET.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{api.rest_url}/api/v3/order?{query}", content=f"{body}&signature={sig}",
                              headers=headers)
        assert r.status_code == 200, r.json()
        assert (r.json()["origQty"], r.json()["price"]) == ("0.50000000", "90.00000000")
        # signed over the query alone (what the server used) is not Binance's signature: refused
        bad = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        r = await client.post(f"{api.rest_url}/api/v3/order?{query}", content=f"{body}&signature={bad}",
                              headers=headers)
        assert (r.status_code, r.json()["code"]) == (400, -1022)
    # twice within the body (or twice within the query) is still a duplicate
    dup = signed({**ORDER, "timeInForce": "GTC"}).replace("side=BUY", "side=BUY&side=BUY")
    refusal(await call(api, "POST", "order", raw=dup), 400, -1101)


@pytest.mark.asyncio
async def test_order_refusals(api: OrderApi) -> None:
    refusal(await call(api, "POST", "order", {**ORDER, "quantity": "200"}), 400, -2010,
            "Account has insufficient balance for requested action.")
    refusal(await call(api, "POST", "order", {**ORDER, "quantity": "0.123456789"}), 400, -1111)
    refusal(await call(api, "POST", "order", {**ORDER, "quantity": "0.000001"}), 400, -1013,
            "Filter failure: LOT_SIZE")
    refusal(await call(api, "POST", "order", {**ORDER, "quantity": "0.100005"}), 400, -1013,
            "Filter failure: LOT_SIZE")
    refusal(await call(api, "POST", "order", {**ORDER, "price": "90.005"}), 400, -1013,
            "Filter failure: PRICE_FILTER")
    refusal(await call(api, "POST", "order", {**ORDER, "price": "99999999"}), 400, -1013,
            "Filter failure: PRICE_FILTER")
    refusal(await call(api, "POST", "order", {**ORDER, "quantity": "0.01"}), 400, -1013, "Filter failure: NOTIONAL")
    refusal(await call(api, "POST", "order", {**ORDER, "symbol": "ETHUSDT"}), 400, -1121, "Invalid symbol.")
    refusal(await call(api, "POST", "order", {**ORDER, "symbol": "btc usdt"}), 400, -1100)
    refusal(await call(api, "POST", "order", {**ORDER, "side": "LONG"}), 400, -1117, "Invalid side.")
    refusal(await call(api, "POST", "order", {**ORDER, "type": "TAKE_PROFIT"}), 400, -1116, "Invalid orderType.")
    stop = {k: v for k, v in ORDER.items() if k not in ("price", "timeInForce")} | {"type": "STOP_LOSS"}
    refusal(await call(api, "POST", "order", stop), 400, -1102,
            "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
    refusal(await call(api, "POST", "order", {**stop, "stopPrice": "90.005"}), 400, -1013,
            "Filter failure: PRICE_FILTER")
    refusal(await call(api, "POST", "order", {**stop, "stopPrice": "90", "price": "90"}), 400, -1106)
    refusal(await call(api, "POST", "order", {**ORDER, "stopPrice": "90"}), 400, -1106,
            "Parameter 'stopPrice' sent when not required.")
    refusal(await call(api, "POST", "order", {**ORDER, "timeInForce": "DAY"}), 400, -1115)
    refusal(await call(api, "POST", "order", {**ORDER, "newOrderRespType": "ALL"}), 400, -1100)
    refusal(await call(api, "POST", "order", {**ORDER, "newClientOrderId": "x" * 37}), 400, -1100)
    refusal(await call(api, "POST", "order", {k: v for k, v in ORDER.items() if k != "side"}), 400, -1102)
    refusal(await call(api, "POST", "order", {**ORDER, "leverage": "10"}), 400, -1104)
    for absurd in ("abc", "-1", "1e5", "NaN", "Infinity", "1" * 25, "0", "0.0", ""):
        status, body = await call(api, "POST", "order", {**ORDER, "quantity": absurd})
        assert status == 400 and body["code"] in (-1100, -1013, -1102), (absurd, body)
    dup = signed(ORDER) .replace("symbol=BTCUSDT", "symbol=BTCUSDT&symbol=BTCUSDT")
    refusal(await call(api, "POST", "order", raw=dup), 400, -1101)
    async with httpx.AsyncClient() as client:
        r = await client.post(api.rest_url + "/api/v3/order", content=b"\xff\xfe=\x00",
                              headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["code"] == -1100
    assert api.counts["internal errors"] == 0


@pytest.mark.asyncio
async def test_orders_query_cancel_and_duplicates(api: OrderApi) -> None:
    status, placed = await call(api, "POST", "order", {**ORDER, "newClientOrderId": "mine-1"})
    assert status == 200 and placed["status"] == "NEW" and placed["fills"] == []
    refusal(await call(api, "POST", "order", {**ORDER, "newClientOrderId": "mine-1"}), 400, -2010,
            "Duplicate order sent.")
    status, got = await call(api, "GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "mine-1"})
    assert got["orderId"] == placed["orderId"] and got["isWorking"] is True
    refusal(await call(api, "GET", "order", {"symbol": "BTCUSDT", "orderId": 999}), 400, -2013,
            "Order does not exist.")
    refusal(await call(api, "GET", "order", {"symbol": "BTCUSDT", "orderId": "x1"}), 400, -1100)
    refusal(await call(api, "GET", "order", {"symbol": "BTCUSDT"}), 400, -1102)
    refusal(await call(api, "DELETE", "order", {"symbol": "BTCUSDT", "orderId": 999}), 400, -2011,
            "Unknown order sent.")
    _, account = await call(api, "GET", "account")
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert usdt["locked"] == "90.00000000"  # the commission of a buy is paid in BTC
    status, canceled = await call(api, "DELETE", "order", {"symbol": "BTCUSDT", "orderId": placed["orderId"],
                                                            "newClientOrderId": "cxl-1"})
    assert status == 200 and canceled["status"] == "CANCELED"
    assert (canceled["clientOrderId"], canceled["origClientOrderId"]) == ("cxl-1", "mine-1")
    refusal(await call(api, "DELETE", "openOrders", {"symbol": "BTCUSDT"}), 400, -2011)
    _, trades = await call(api, "GET", "myTrades", {"symbol": "BTCUSDT"})
    assert trades == []
    await call(api, "POST", "order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.5",
                                      "newOrderRespType": "ACK"})
    _, trades = await call(api, "GET", "myTrades", {"symbol": "BTCUSDT", "limit": 10})
    assert [(t["price"], t["qty"], t["isBuyer"]) for t in trades] == [("99.00000000", "0.50000000", False)]
    refusal(await call(api, "GET", "myTrades", {"symbol": "BTCUSDT", "limit": 5000}), 400, -1100)
    _, orders = await call(api, "GET", "allOrders", {"symbol": "BTCUSDT"})
    assert [o["status"] for o in orders] == ["CANCELED", "FILLED"]


@pytest.mark.asyncio
async def test_commission_in_the_asset_received(api: OrderApi) -> None:
    """As Binance spot without BNB: a buy pays in the base it receives, a sell in the quote it receives."""
    _, buy = await call(api, "POST", "order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                "quantity": "1.5"})
    assert [(f["qty"], f["commission"], f["commissionAsset"]) for f in buy["fills"]] == [
        ("1.00000000", "0.00100000", "BTC"), ("0.50000000", "0.00050000", "BTC")]
    _, sell = await call(api, "POST", "order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                                 "quantity": "0.5"})
    assert [(f["commission"], f["commissionAsset"]) for f in sell["fills"]] == [("0.04950000", "USDT")]
    _, trades = await call(api, "GET", "myTrades", {"symbol": "BTCUSDT"})
    assert [(t["isBuyer"], t["commission"], t["commissionAsset"]) for t in trades] == [
        (True, "0.00100000", "BTC"), (True, "0.00050000", "BTC"), (False, "0.04950000", "USDT")]
    _, account = await call(api, "GET", "account")
    balances = {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]}
    # BTC: 1 + 1.5 - 0.0015 - 0.5; USDT: 10000 - 100 - 50.5 + 49.5 - 0.0495
    assert balances == {"BTC": ("1.99850000", "0.00000000"), "USDT": ("9898.95050000", "0.00000000")}


@pytest.mark.asyncio
async def test_drop_next_response_handles_the_order_then_cuts_the_connection(api: OrderApi) -> None:
    api.drop_next_response("/api/v3/order")
    with pytest.raises(httpx.TransportError):
        await call(api, "POST", "order", {**ORDER, "newClientOrderId": "in-flight"})
    status, got = await call(api, "GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "in-flight"})
    assert status == 200 and got["status"] == "NEW"
    assert api.counts["dropped"] == 1


@pytest.mark.asyncio
async def test_delay_next_response_handles_the_order_at_once_and_answers_later(api: OrderApi) -> None:
    api.delay_next_response("/api/v3/order", 3600)
    slow = asyncio.create_task(call(api, "POST", "order", {**ORDER, "newClientOrderId": "slow-1"}))
    await until(lambda: any(o.client_id == "slow-1" for o in api.engine.open_orders(KEY)), "placed")
    # the order is there for every other request while its own answer is held back
    status, got = await call(api, "GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "slow-1"})
    assert status == 200 and got["status"] == "NEW" and not slow.done()
    status, _ = await call(api, "DELETE", "order", {"symbol": "BTCUSDT", "origClientOrderId": "slow-1"})
    assert status == 200 and not slow.done()
    api.delay_next_response("/api/v3/openOrders", 0.01)  # a short delay: the answer comes, unchanged
    assert await call(api, "GET", "openOrders", {"symbol": "BTCUSDT"}) == (200, [])
    with pytest.raises(ValueError):
        api.delay_next_response("/api/v3/order", float("nan"))
    await api.stop()  # stopping the server lets the held answer go: what the order was when it was placed
    status, placed = await slow
    assert (status, placed["clientOrderId"], placed["status"]) == (200, "slow-1", "NEW")
    assert api.counts["delayed"] == 2


@pytest.mark.asyncio
async def test_ws_api_subscribe_refusals(api: OrderApi) -> None:
    import aiohttp

    async def ask(message: Any) -> dict[str, Any]:
        await ws.send_str(message if isinstance(message, str) else orjson.dumps(message).decode())
        return orjson.loads((await ws.receive()).data)

    async with aiohttp.ClientSession() as session, session.ws_connect(api.ws_api_url) as ws:
        bad = await ask({"id": "1", "method": "userDataStream.subscribe.signature", "params": ws_params("nope")})
        assert bad["status"] == 400 and bad["error"]["code"] == -1022 and bad["id"] == "1"
        assert (await ask("not json"))["error"]["code"] == -1100
        assert (await ask({"id": 2, "method": "order.place"}))["error"]["code"] == -1020
        ok = await ask({"id": 3, "method": "userDataStream.subscribe.signature", "params": ws_params()})
        assert ok["status"] == 200 and ok["result"]["subscriptionId"] == 0
        await call(api, "POST", "order", {**ORDER, "newClientOrderId": "ws-1"})
        event = orjson.loads((await ws.receive()).data)
        assert event["subscriptionId"] == 0 and event["event"]["e"] == "executionReport"
        assert (event["event"]["X"], event["event"]["c"], event["event"]["C"]) == ("NEW", "ws-1", "")
        _, canceled = await call(api, "DELETE", "order", {"symbol": "BTCUSDT", "origClientOrderId": "ws-1"})
        report: dict[str, Any] = {}
        while report.get("e") != "executionReport":  # past the account update the order's lock caused
            report = orjson.loads((await ws.receive()).data)["event"]
        assert (report["x"], report["C"]) == ("CANCELED", "ws-1")
        assert report["c"] == canceled["clientOrderId"] != "ws-1" and canceled["origClientOrderId"] == "ws-1"


@pytest.mark.asyncio
async def test_ws_api_client_that_stops_reading_is_cut_off(caplog: pytest.LogCaptureFixture) -> None:
    """Each WebSocket API connection's outbox is bounded: a client that subscribes and then never reads is closed
    with a log line once the socket's buffers are full and its outbox is past the limit; another is untouched."""
    import aiohttp

    async def subscribe(ws: Any) -> None:
        await ws.send_str(orjson.dumps({"id": 1, "method": "userDataStream.subscribe.signature",
                                        "params": ws_params()}).decode())
        assert orjson.loads((await ws.receive()).data)["status"] == 200

    async def read(ws: Any) -> None:
        async for _ in ws:
            received[0] += 1

    received = [0]
    async with order_api(KEY, SECRET, outbox_limit=50) as server, \
            aiohttp.ClientSession() as session, session.ws_connect(server.ws_api_url) as stuck, \
            session.ws_connect(server.ws_api_url) as reader:
        engine = server.engine
        await subscribe(stuck)
        await subscribe(reader)
        reading = asyncio.create_task(read(reader))
        # from here on one client reads nothing: orders come and go, 20 events at a time (fewer than the limit, so
        # a reading client keeps up), until the server gives up on it
        async with asyncio.timeout(60):
            while not server.counts["slow user streams dropped"]:
                for _ in range(5):
                    order = engine.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC",
                                         quantity=D(1), price=D(90))
                    engine.cancel(KEY, "BTCUSDT", order.order_id)
                await asyncio.sleep(0)
        assert len(server._streams) == 1 and not reading.done()  # the reading client is still served
        assert any("stopped reading" in r.getMessage() for r in caplog.records)
        engine.place(KEY, symbol="BTCUSDT", side="BUY", type="LIMIT", tif="GTC", quantity=D(1), price=D(90))
        assert server.counts["slow user streams dropped"] == 1  # cut once; nothing more queued for it
        sent = len(engine.all_orders(KEY, "BTCUSDT")) * 4 - 2
        await until(lambda: received[0] >= sent, "the reading client has every event")
        reading.cancel()


@pytest.mark.asyncio
async def test_account_uid_is_opaque(api: OrderApi) -> None:
    """The uid is an account number made for this run, not something derived from the API key."""
    _, account = await call(api, "GET", "account")
    uid = account["uid"]
    assert isinstance(uid, int) and 100_000_000 <= uid < 1_000_000_000
    assert uid != int.from_bytes(KEY.encode()[:6], "big") % 1_000_000_000
    engine = OrderEngine([SymbolRules.from_symbol_info(SYMBOL_INFO)], FakeBook(), now_ms)
    keys = {f"key-{i}": "s" for i in range(50)}
    other = OrderApi(engine, keys, [SYMBOL_INFO])
    assert len(set(other.uids.values())) == 50  # one per account, distinct


# -- ccxt -------------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_ccxt_trades_against_it(api: OrderApi) -> None:
    from ccxt.base.errors import AuthenticationError, BadRequest, InsufficientFunds, InvalidOrder, OrderNotFound

    ex = ccxt_client(api.rest_url, api.ws_api_url, KEY, SECRET)
    try:
        markets = await ex.load_markets()
        assert markets["BTC/USDT"]["precision"]["price"] == 0.01
        balance = await ex.fetch_balance()
        assert balance["total"]["USDT"] == 10_000 and balance["free"]["BTC"] == 1
        watched: list[dict[str, Any]] = []
        trades: list[dict[str, Any]] = []
        tasks = [asyncio.create_task(_collect(ex.watch_orders, watched)),
                 asyncio.create_task(_collect(ex.watch_my_trades, trades))]
        await until(lambda: subscribed(ex, api.ws_api_url), "subscribed")
        market = await ex.create_order("BTC/USDT", "market", "buy", 1.5)
        assert (market["status"], market["filled"], market["average"]) == ("closed", 1.5, pytest.approx(100 + 1 / 3))
        partial = await ex.create_order("BTC/USDT", "limit", "buy", 2, 100, {"clientOrderId": "part-1"})
        assert (partial["status"], partial["filled"], partial["remaining"]) == ("open", 1, 1)
        resting = await ex.create_order("BTC/USDT", "limit", "sell", 0.5, 120)
        assert (resting["status"], resting["filled"]) == ("open", 0)
        filled = await ex.create_order("BTC/USDT", "limit", "sell", 0.2, 98)
        assert filled["status"] == "closed" and filled["trades"][0]["price"] == 99
        got = await ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "part-1"})
        assert got["id"] == partial["id"] and got["clientOrderId"] == "part-1"
        assert sorted(o["id"] for o in await ex.fetch_open_orders("BTC/USDT")) == sorted([partial["id"],
                                                                                           resting["id"]])
        api.engine.on_trade("BTCUSDT", D("120.5"), D("1"))  # the market trades through the resting sell
        await until(lambda: any(o["id"] == resting["id"] and o["status"] == "closed" for o in watched), "maker")
        assert (await ex.cancel_order(partial["id"], "BTC/USDT"))["status"] == "canceled"
        mine = await ex.fetch_my_trades("BTC/USDT")
        assert len(mine) == 5 and mine[-1]["takerOrMaker"] == "maker" and mine[-1]["fee"]["currency"] == "USDT"
        assert [(t["side"], t["fee"]["currency"]) for t in mine[:2]] == [("buy", "BTC"), ("buy", "BTC")]
        assert mine[0]["fee"]["cost"] == pytest.approx(0.001)
        await until(lambda: len(trades) >= 5, "watched trades")
        assert {t["id"] for t in trades} == {t["id"] for t in mine}
        await until(lambda: any(o["id"] == partial["id"] and o["status"] == "canceled" for o in watched), "cancel")
        # ccxt reads "C" (the original client id) when the report is a cancel's
        assert next(o for o in watched if o["status"] == "canceled")["clientOrderId"] == "part-1"
        with pytest.raises(InsufficientFunds):
            await ex.create_order("BTC/USDT", "market", "sell", 50)
        with pytest.raises(BadRequest):  # ccxt's reading of -1013 "Filter failure: NOTIONAL", as from Binance
            await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 100)
        with pytest.raises(InvalidOrder):  # LOT_SIZE (ccxt rounds the amount, so send it raw)
            await ex.create_order("BTC/USDT", "limit", "buy", 1, 100, {"quantity": "0.000001"})
        with pytest.raises(OrderNotFound):
            await ex.fetch_order("424242", "BTC/USDT")
        with pytest.raises(OrderNotFound):
            await ex.cancel_order(partial["id"], "BTC/USDT")
        for task in tasks:
            task.cancel()
    finally:
        await ex.close()
    wrong = ccxt_client(api.rest_url, api.ws_api_url, KEY, "not-the-secret")
    try:
        with pytest.raises(AuthenticationError):
            await wrong.fetch_balance()
    finally:
        await wrong.close()


@pytest.mark.asyncio
async def test_ccxt_watch_balance_and_a_cut_user_stream(api: OrderApi) -> None:
    ex = ccxt_client(api.rest_url, api.ws_api_url, KEY, SECRET)
    try:
        await ex.load_markets()
        balance_task = asyncio.create_task(ex.watch_balance())
        await until(lambda: subscribed(ex, api.ws_api_url), "subscribed")
        await ex.create_order("BTC/USDT", "limit", "buy", 1, 90)
        balance = await asyncio.wait_for(balance_task, 10)
        assert balance["USDT"]["used"] == pytest.approx(90)
        orders_task = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        await asyncio.sleep(0)
        api.drop_user_streams()
        with pytest.raises(Exception):  # noqa: B017 - ccxt reports the cut as NetworkError or its subclasses
            await asyncio.wait_for(orders_task, 10)
        # watching again reconnects and subscribes anew
        again = asyncio.create_task(ex.watch_orders("BTC/USDT"))
        await until(lambda: subscribed(ex, api.ws_api_url), "resubscribed")
        await until(lambda: bool(api._streams) and any(s.subscriptions for s in api._streams.values()), "server")
        await ex.create_order("BTC/USDT", "limit", "buy", 1, 91)
        got = await asyncio.wait_for(again, 10)
        assert got[-1]["price"] == 91
    finally:
        await ex.close()


@pytest.mark.asyncio
async def test_ccxt_order_in_flight_when_the_connection_drops(api: OrderApi) -> None:
    from ccxt.base.errors import NetworkError

    ex = ccxt_client(api.rest_url, api.ws_api_url, KEY, SECRET)
    try:
        await ex.load_markets()
        api.drop_next_response("/api/v3/order")
        with pytest.raises(NetworkError):
            await ex.create_order("BTC/USDT", "limit", "buy", 1, 90, {"clientOrderId": "flight-1"})
        got = await ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "flight-1"})
        assert got["status"] == "open" and got["amount"] == 1
        assert len(await ex.fetch_open_orders("BTC/USDT")) == 1  # placed once
    finally:
        await ex.close()


def subscribed(ex: Any, url: str) -> bool:
    client = ex.clients.get(url)
    return client is not None and "spot" in client.subscriptions


async def _collect(watch: Callable[..., Awaitable[list[dict[str, Any]]]], into: list[dict[str, Any]]) -> None:
    while True:
        into.extend(await watch("BTC/USDT"))


# -- hostile input: always a Binance refusal (4xx, code and msg), never a 500 or a traceback -----------------

HOSTILE = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e400", "-1", "-0", "", "9" * 19, "9" * 20, "9" * 400,
           "0x10", " 1", "1_000", "+1", ".5", "5.", "%FF", "\u00e9", "\u0661", "1" * 20 + "." + "1" * 20,
           "\x00", "A" * 5000]
ENDPOINTS: dict[tuple[str, str], list[str]] = {
    ("POST", "order"): ["quantity", "price", "stopPrice", "quoteOrderQty", "timestamp", "recvWindow", "symbol",
                        "side", "type", "timeInForce", "newClientOrderId", "newOrderRespType", "strategyId"],
    ("POST", "order/test"): ["quantity", "price", "strategyType", "selfTradePreventionMode"],
    ("GET", "order"): ["orderId", "origClientOrderId", "timestamp", "recvWindow", "symbol"],
    ("DELETE", "order"): ["orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"],
    ("GET", "myTrades"): ["orderId", "startTime", "endTime", "fromId", "limit"],
    ("GET", "allOrders"): ["orderId", "startTime", "endTime", "limit"],
    ("GET", "openOrders"): ["symbol"],
    ("DELETE", "openOrders"): ["symbol"],
    ("GET", "account"): ["omitZeroBalances", "recvWindow", "timestamp"],
}


def binance_refusal(r: httpx.Response, what: Any) -> None:
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:200])
    body = r.json()
    assert isinstance(body["code"], int) and body["code"] < 0 and isinstance(body["msg"], str) and body["msg"], what


@pytest.mark.asyncio
async def test_hostile_values_in_every_parameter(api: OrderApi) -> None:
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "1",
             "price": "90"}
    bases = {"order": order, "order/test": order, "account": {}}
    # what a well-formed client id or an omitted optional field looks like: those are not hostile, they are valid
    valid = {(n, v) for v in HOSTILE for n in ("newClientOrderId", "origClientOrderId")
             if v == "" or auth.CLIENT_ID_RE.match(v)} | {
        (name, "") for name in ("newOrderRespType", "selfTradePreventionMode", "cancelRestrictions", "symbol")}
    headers = {"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"}
    # a test order is checked as a real one (parameters and filters), and nothing is placed
    assert await call(api, "POST", "order/test", ORDER) == (200, {})
    refusal(await call(api, "POST", "order/test", {**ORDER, "quantity": "0.000001"}), 400, -1013,
            "Filter failure: LOT_SIZE")
    assert api.engine.open_orders(KEY) == []
    async with httpx.AsyncClient(base_url=api.rest_url + "/api/v3/") as client:
        for (method, path), names in ENDPOINTS.items():
            for name in names:
                for value in HOSTILE:
                    base = {"symbol": "BTCUSDT", "orderId": "1"} if method != "POST" and path == "order" else \
                        bases.get(path, {"symbol": "BTCUSDT"})
                    params = base | {"timestamp": now_ms(), name: value}
                    query = urlencode(params)
                    if name == "timestamp":
                        params.pop("timestamp")
                        query = urlencode({**params, "timestamp": value})
                    payload = query + "&signature=" + hmac.new(SECRET.encode(), query.encode(),
                                                               hashlib.sha256).hexdigest()
                    if method == "POST":
                        r = await client.post(path, content=payload, headers=headers)
                    else:
                        r = await client.request(method, f"{path}?{payload}", headers=headers)
                    if r.status_code == 200 and (name, value) in valid:
                        continue
                    binance_refusal(r, (method, path, name, value))
                    assert r.json()["code"] != -1104, (method, path, name, "refused for the wrong reason")
    assert api.counts["internal errors"] == 0


@pytest.mark.asyncio
async def test_hostile_requests(api: OrderApi, caplog: pytest.LogCaptureFixture) -> None:
    key = {"X-MBX-APIKEY": KEY}
    form = {**key, "Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=api.rest_url) as client:
        cases: list[tuple[str, str, dict[str, str], bytes | None]] = [
            ("POST", "/api/v3/order", form, b""),  # empty body
            ("POST", "/api/v3/order", {**key, "Content-Type": "application/json"}, b'{"symbol": "BTCUSDT"}'),
            ("POST", "/api/v3/order", {**key, "Content-Type": "text/plain"}, b"\xff\xfe\x00"),
            ("POST", "/api/v3/order", form, b"symbol"),  # a name without a value
            ("POST", "/api/v3/order", form, b"&&&==&"),
            ("POST", "/api/v3/order", form, "&".join(f"p{i}=1" for i in range(200)).encode()),
            ("POST", "/api/v3/order", form, b"newClientOrderId=" + b"x" * 60_000),  # very long, within the limit
            ("POST", "/api/v3/order", form, b"a=" + b"b" * 70_000),  # past it: 413
            ("GET", "/api/v3/account?symbol=" + "A" * 20_000, key, None),  # a request line past aiohttp's 8 KiB
            ("GET", "/api/v3/account?a=%FF%FE&timestamp=%00", key, None),
            ("GET", f"/api/v3/account?{signed({'recvWindow': '9' * 30})}", key, None),
            ("GET", f"/api/v3/account?{signed({})}", {"X-MBX-APIKEY": "k" * 5000}, None),
            ("GET", f"/api/v3/account?{signed({}, ts=-5)}", key, None),
            ("GET", f"/api/v3/account?{signed({}, ts=0)}", key, None),
            ("GET", "/api/v3/exchangeInfo?symbols=" + "[" * 5000, {}, None),
            ("GET", '/api/v3/exchangeInfo?symbols={"a":1}', {}, None),
            ("GET", "/api/v3/nothing", {}, None),  # no such endpoint: 404
            ("PUT", "/api/v3/order", key, None),  # no such method: 405
            ("PATCH", "/api/v3/ping", {}, None),
            ("GET", "/", {}, None),
            ("GET", "/ws-api/v3", {}, None),  # not a WebSocket upgrade
        ]
        for method, url, headers, body in cases:
            binance_refusal(await client.request(method, url, headers=headers, content=body), (method, url[:80]))
    # bytes that are not HTTP at all: aiohttp's own 400, one log line and no traceback
    for raw in (b"GET /api/v3/ping?\xff HTTP/1.1\r\nHost: x\r\n\r\n",
                b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        reader, writer = await asyncio.open_connection(api.host, api.port)
        writer.write(raw)
        assert (await asyncio.wait_for(reader.read(200), 10)).startswith(b"HTTP/1.0 400")
        writer.close()
    assert not [r for r in caplog.records if r.exc_info], "a traceback in the log"
    assert api.counts["internal errors"] == 0


@pytest.mark.asyncio
async def test_hostile_ws_api_requests(api: OrderApi) -> None:
    import aiohttp

    subscribe = {"id": 0, "method": "userDataStream.subscribe.signature", "params": ws_params()}
    hostile: list[str] = [
        "", "null", "[]", '{"id": {}}', '{"id": true}', '{"id": 1, "method": 5}', '{"id": 1, "method": "ping"',
        "[" * 10_000, '{"id": 99999999999999999999999999, "method": "ping"}',
        '{"id": 1, "method": "userDataStream.subscribe.signature", "params": []}',
        '{"id": 1, "method": "userDataStream.subscribe.signature", "params": {"apiKey": "test-key-1", '
        '"timestamp": "NaN", "signature": "x"}}',
        '{"id": 1, "method": "userDataStream.subscribe.signature", "params": {"apiKey": "test-key-1", '
        '"timestamp": -5, "signature": "x"}}',
        '{"id": 1, "method": "userDataStream.subscribe.signature", "params": {"apiKey": "test-key-1", '
        '"timestamp": 1e400, "signature": "x"}}',
        '{"id": 1, "method": "userDataStream.subscribe.signature", "params": {"apiKey": ["test-key-1"]}}',
        '{"id": 1, "method": "userDataStream.unsubscribe", "params": {"subscriptionId": [0]}}',
        '{"id": 1, "method": "userDataStream.unsubscribe", "params": {"subscriptionId": {"a": 1}}}',
        '{"id": 1, "method": "userDataStream.unsubscribe", "params": {"subscriptionId": "0"}}',
        '{"id": 1, "method": "userDataStream.unsubscribe", "params": 5}',
    ]
    async with aiohttp.ClientSession() as session, session.ws_connect(api.ws_api_url) as ws:
        await ws.send_str(orjson.dumps(subscribe).decode())
        assert orjson.loads((await ws.receive()).data)["status"] == 200
        for text in hostile:
            await ws.send_str(text)
            answer = orjson.loads((await ws.receive()).data)
            assert 400 <= answer["status"] < 500 and answer["error"]["code"] < 0 and answer["error"]["msg"], text
        assert next(iter(api._streams.values())).subscriptions  # still subscribed: none of that unsubscribed it
    assert api.counts["internal errors"] == 0
