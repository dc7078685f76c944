"""The built-in exchange's command line: ``python -m app.market.sim`` (``trading-terminal exchange`` when packaged)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import orjson

from app.market.recording import RecordingError

# ---------------------------------------------------------------------------------------------------------
# Command line
from app.market.sim.markets import MultiMarket
from app.market.sim.order_api_setup import KEY_ENV, SECRET_ENV, TradingSetup, keys_from_env, parse_balances
from app.market.sim.protocols import PROTOCOLS
from app.market.sim.replay import ReplaySource
from app.market.sim.server import ExchangeSimulator
from app.market.sim.source import MarketSource, SimulatorPortInUse
from app.market.sim.synthetic import DEFAULT_SEED, SyntheticMarket


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.market.sim",
        description="The terminal's built-in exchange: Binance spot market data on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--symbols", metavar="A,B,...",
                        help="several synthetic markets at once (each at --rate), instead of --symbol")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="binance",
                        help="the exchange dialect spoken on the WebSocket (default binance)")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="exit when this process is gone (the terminal that started this exchange)")
    parser.add_argument("--rate", type=float, default=25.0, help="synthetic trades per second")
    parser.add_argument("--price", type=float, default=60_000.0, help="synthetic start price")
    parser.add_argument("--seed", type=int, default=None,
                        help="the synthetic markets' seed: the market is a function of the clock and the seed, so a "
                             f"restart with the same seed continues it (default {DEFAULT_SEED})")
    parser.add_argument("--replay", metavar="FILE", help="replay a recording instead of a synthetic market")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed; 0 = as fast as possible")
    parser.add_argument("--trading", action="store_true",
                        help=f"serve Binance spot's order API too, for the key pair in {KEY_ENV} / {SECRET_ENV}")
    parser.add_argument("--balances", metavar="ASSET=AMOUNT,...",
                        help="each account's starting balances with --trading (default: 100000 of the quote "
                             "asset and about 10000 worth of each base)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    return parser.parse_args(argv)


# The line a parent reads (ExchangeProcess): "ready <ws_url> <rest_url>", and "<trading_url>" after them with
# --trading (a parent that reads two URLs still works: the third is only added when asked for).
READY_PREFIX = "ready "
STATS_PREFIX = "stats "  # the line printed at exit: "stats <json>" (frames_sent, trades_sent per symbol)


async def _serve_until_stopped(source: MarketSource, host: str, port: int, protocol: str = "binance",
                               parent_pid: int | None = None, trading: TradingSetup | None = None) -> None:
    async with ExchangeSimulator(source, host, port, protocol=protocol, trading=trading) as sim:
        urls = f"{sim.ws_url} {sim.rest_url}" + (f" {sim.trading_url}" if trading is not None else "")
        print(f"{READY_PREFIX}{urls}", flush=True)
        orders = f"  orders {sim.trading_url}  user stream {sim.ws_api_url}" if trading is not None else ""
        print(f"exchange simulator ({source.label}) on {sim.ws_url}  REST {sim.rest_url}{orders}  (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        watch = asyncio.create_task(_exit_with_parent(parent_pid, stop)) if parent_pid else None
        await stop.wait()
        if watch is not None:
            watch.cancel()
    # After the server closed: what was written to clients, for a parent that compares it with what arrived.
    stats = {"frames_sent": sim.stats.frames_sent, "trades_sent": sim.stats.trades_sent}
    with contextlib.suppress(OSError):  # a parent that no longer reads (the terminal has gone)
        print(f"{STATS_PREFIX}{orjson.dumps(stats).decode()}", flush=True)


async def _exit_with_parent(pid: int, stop: asyncio.Event) -> None:
    """A terminal killed outright (SIGKILL, a crash) cannot stop its exchange: the exchange notices instead."""
    import psutil

    while True:
        await asyncio.sleep(0.5)
        # Re-parented (POSIX) or gone (everywhere): either way the terminal is no more.
        if os.getppid() != pid or not psutil.pid_exists(pid):
            stop.set()
            return


def _trading_setup(args: argparse.Namespace) -> TradingSetup | None:
    if not args.trading:
        if args.balances:
            raise ValueError("--balances needs --trading")
        return None
    if args.replay:
        raise ValueError("--trading needs synthetic markets (a replay has no order book to trade against)")
    if args.protocol != "binance":
        raise ValueError("--trading speaks Binance spot's order API: use it with --protocol binance")
    balances = parse_balances(args.balances) if args.balances else None
    return TradingSetup(keys=keys_from_env(), balances=balances)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        source: MarketSource
        if args.replay:
            source = ReplaySource(args.replay, args.speed)
        elif args.symbols:
            source = MultiMarket.for_symbols([x for x in args.symbols.split(",") if x], args.rate, args.seed)
        else:
            source = SyntheticMarket(args.symbol, args.price, args.rate, args.seed)
        trading = _trading_setup(args)
    except (RecordingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_until_stopped(source, args.host, args.port, args.protocol, args.parent_pid, trading))
    except SimulatorPortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0

