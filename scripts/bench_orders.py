#!/usr/bin/env python3
"""The live order path, measured against bare ccxt in the same run: what LiveBroker adds on top of the library.

The built-in exchange runs in its own process with its trading API on (as the terminal runs it with
``--exchange sim --live``), over synthetic markets. Each round sends one small market order and times:

- ack: from the call to the exchange's answer (``LiveBroker.submit`` returning / ``create_order`` returning);
- fill: from the call to the fill arriving on the user stream (LiveBroker's fill listener / ccxt's
  ``watch_my_trades`` yielding the order's trade).

Rounds alternate between the two paths (ours, then bare, then ours ...) and between BUY and SELL, so both see the
same market and the account stays balanced; medians and p99 over ``--orders`` each. The symbols are the synthetic
markets' (``--symbols``, default BTCUSDT,ETHUSDT,XRPUSDT, whose prices and lot sizes differ by orders of magnitude);
the quantity is each market's smallest lot multiple worth more than the exchange's minimum notional.

    .venv/bin/python scripts/bench_orders.py [--orders 60] [--symbols A,B] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import statistics
import sys
import time
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.market.instruments import Instruments  # noqa: E402
from app.market.sim.process import ExchangeProcess  # noqa: E402
from app.models import Fill, OrderRequest, OrderType, Side  # noqa: E402
from app.trading.live_broker import LiveBroker, LiveEndpoints  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values), 2), "p99_ms": round(pct(values, 0.99), 2), "n": len(values)}


def order_qty(instruments: Instruments, symbol: str, price: Decimal) -> Decimal:
    inst = instruments.get(symbol)
    floor = max(inst.min_notional or Decimal(10), Decimal(10)) * Decimal("1.5")
    lots = (floor / price / inst.lot_size).to_integral_value(rounding=ROUND_CEILING)
    return max(lots * inst.lot_size, inst.min_qty or inst.lot_size)


async def ours(broker: LiveBroker, fills: dict[str, asyncio.Future[float]], req: OrderRequest) -> tuple[float, float]:
    t0 = time.perf_counter()
    order = await broker.submit(req)
    ack = time.perf_counter()
    if order.reject_reason:
        raise RuntimeError(f"the order was refused: {order.reject_reason}")
    fut = fills.setdefault(order.id, asyncio.get_running_loop().create_future())
    filled = await asyncio.wait_for(fut, 10)
    return (ack - t0) * 1000, (filled - t0) * 1000


async def bare(client: Any, trades: dict[str, asyncio.Future[float]], symbol: str, side: Side,
               qty: Decimal) -> tuple[float, float]:
    t0 = time.perf_counter()
    resp = await client.create_order(symbol, "market", side.value.lower(), float(qty))
    ack = time.perf_counter()
    fut = trades.setdefault(str(resp["id"]), asyncio.get_running_loop().create_future())
    filled = await asyncio.wait_for(fut, 10)
    return (ack - t0) * 1000, (filled - t0) * 1000


async def watch_bare_trades(client: Any, trades: dict[str, asyncio.Future[float]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        for t in await client.watch_my_trades():
            fut = trades.setdefault(str(t["order"]), loop.create_future())
            if not fut.done():
                fut.set_result(time.perf_counter())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    key, secret = "bench-" + secrets.token_hex(8), secrets.token_hex(24)
    exchange = ExchangeProcess(symbols=symbols, trades_per_s=args.rate, trading_keys=(key, secret))
    await exchange.start()
    endpoints = LiveEndpoints(exchange.trading_url, exchange.ws_api_url)
    broker = LiveBroker(exchange="built-in", api_key=key, secret=secret, testnet=False, instruments=Instruments(),
                        endpoints=endpoints, id_prefix="B", symbols=symbols)
    fills: dict[str, asyncio.Future[float]] = {}
    loop = asyncio.get_running_loop()

    def on_fill(fill: Fill) -> None:
        fut = fills.setdefault(fill.order_id, loop.create_future())
        if not fut.done():
            fut.set_result(time.perf_counter())

    broker.add_listener(lambda _o: None, on_fill)
    from app.trading.live_exchange import make_client

    client = make_client("built-in", key, secret, testnet=False, rest=endpoints.rest, ws_api=endpoints.ws_api,
                         timeout_ms=10_000)
    watcher = None
    try:
        await broker.connect()
        await broker.start()
        await client.load_markets()
        trades: dict[str, asyncio.Future[float]] = {}
        watcher = asyncio.create_task(watch_bare_trades(client, trades))
        await asyncio.sleep(1.0)  # the bare user stream subscribed, the markets have traded a little
        tickers = {s: await best_ask(exchange.rest_url, s) for s in symbols}
        res: dict[str, dict[str, list[float]]] = {"ours": {"ack": [], "fill": []}, "bare": {"ack": [], "fill": []}}
        for i in range(args.orders * 2):
            symbol = symbols[(i // 2) % len(symbols)]
            side = Side.BUY if (i // (2 * len(symbols))) % 2 == 0 else Side.SELL
            qty = order_qty(broker.instruments, symbol, tickers[symbol])
            if i % 2 == 0:
                ack, fill = await ours(broker, fills, OrderRequest(symbol, side, OrderType.MARKET, qty))
                path = "ours"
            else:
                ack, fill = await bare(client, trades, _ccxt(symbol), side, qty)
                path = "bare"
            if i >= 2 * len(symbols):  # the first round per symbol warms connections and caches up
                res[path]["ack"].append(ack)
                res[path]["fill"].append(fill)
        out: dict[str, Any] = {}
        for path, d in res.items():
            out[f"{path}_ack"] = summary(d["ack"])
            out[f"{path}_fill"] = summary(d["fill"])
        out["ack_p50_ratio"] = round(out["ours_ack"]["p50_ms"] / out["bare_ack"]["p50_ms"], 2)
        out["fill_p50_ratio"] = round(out["ours_fill"]["p50_ms"] / out["bare_fill"]["p50_ms"], 2)
        out["live_counters"] = broker.counters_dict()
        return out
    finally:
        if watcher is not None:
            watcher.cancel()
        await broker.aclose()
        await client.close()
        await exchange.stop()


async def best_ask(rest_url: str, symbol: str) -> Decimal:
    """From the market-data REST API (the trading API serves no depth, as Binance's order endpoints do not)."""
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.get(f"{rest_url}/api/v3/depth", params={"symbol": symbol, "limit": 5})
        r.raise_for_status()
        return Decimal(r.json()["asks"][0][0])


def _ccxt(symbol: str) -> str:
    for quote in ("USDT", "USDC", "BUSD", "BTC", "ETH", "EUR", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[:-len(quote)]}/{quote}"
    raise SystemExit(f"cannot tell the quote currency of {symbol}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=60, help="market orders per path (default 60)")
    p.add_argument("--symbols", default="BTCUSDT,ETHUSDT,XRPUSDT")
    p.add_argument("--rate", type=float, default=25.0, help="synthetic trades per second per symbol")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.orders < 5:
        p.error("--orders must be at least 5")
    # Both paths trade one account: the live broker adopts the bare client's orders as "placed elsewhere" (what it
    # must do with another program's orders) and says so once per order; the benchmark does not need to hear it.
    logging.getLogger("app.trading").setLevel(logging.ERROR)
    out = asyncio.run(run(args))
    out["machine"] = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'':6} {'ack p50':>9} {'ack p99':>9} {'fill p50':>9} {'fill p99':>9}   (ms, {out['ours_ack']['n']} orders)")
    for path in ("ours", "bare"):
        a, f = out[f"{path}_ack"], out[f"{path}_fill"]
        print(f"{path:6} {a['p50_ms']:9.2f} {a['p99_ms']:9.2f} {f['p50_ms']:9.2f} {f['p99_ms']:9.2f}")
    print(f"ratio ours/bare (p50): ack {out['ack_p50_ratio']}x, fill {out['fill_p50_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
