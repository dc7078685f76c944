"""Command line: ``trading-terminal [options]`` runs the terminal; ``trading-terminal candles ...`` aggregates a
recorded feed into OHLCV without a window.

The window runs asyncio inside Qt's event loop (qasync): one thread, one loop. The session owns every task; on
exit each is cancelled and awaited, sockets closed, before the loop ends.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

log = logging.getLogger("app")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trading-terminal",
        description="AI-assisted trading terminal. Without options it runs on the built-in exchange.",
        epilog="Subcommand: 'trading-terminal candles --input FILE --timeframe 1m --output out.csv' aggregates a "
        "recorded feed into candles without opening a window.",
    )
    p.add_argument("--exchange", choices=["sim", "binance", "coinbase", "kraken"], default="sim",
                   help="market data source: the built-in exchange (default), or Binance spot, Coinbase Advanced "
                   "Trade, Kraken v2 (live; needs network)")
    p.add_argument("--sim-protocol", choices=["binance", "coinbase", "kraken"], default="binance",
                   help="the protocol the built-in exchange speaks (default binance)")
    p.add_argument("--symbol", default="BTCUSDT", help="symbol to trade and chart (default BTCUSDT)")
    p.add_argument("--symbols", metavar="A,B,...",
                   help="every symbol to stream on one connection (default on the built-in exchange: "
                   "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT)")
    p.add_argument("--timeframe", default="1m", help="chart timeframe: 1s, 1m, 5m, 15m, 1h (default 1m)")
    p.add_argument("--replay", type=Path, metavar="FILE",
                   help="replay a recorded feed (<receive_ns> <json> lines, gzip or plain, or JSON lines) "
                   "through the built-in exchange")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="replay speed: 1 = real time, 10 = ten times faster, 0 = as fast as possible")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="append every received frame to FILE as '<receive_ns> <raw>' lines (replay with --replay)")
    p.add_argument("--sim-port", type=int, default=0, metavar="PORT",
                   help="port of the built-in exchange on 127.0.0.1 (default: a free one)")
    p.add_argument("--llm-url", metavar="URL",
                   help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1; "
                   "API key from OPENAI_API_KEY. Without it the offline rules propose (labelled OFFLINE)")
    p.add_argument("--model", default="gpt-4o-mini", help="model name at that endpoint (default gpt-4o-mini)")
    p.add_argument("--decision-timeframe", default="1m", metavar="TF",
                   help="ask for a decision at every close of this timeframe (default 1m)")
    p.add_argument("--journal", type=Path, metavar="FILE",
                   help="SQLite journal of proposals, orders and fills (default: in the user data directory)")
    p.add_argument("--auto-approve", action="store_true",
                   help="approve proposals within auto-approve's own strict limits (off by default)")
    p.add_argument("--theme", choices=["dark", "light"], default="dark")
    p.add_argument("--smoke-test", type=float, metavar="SECONDS",
                   help="run that long, then exit 0 if data arrived and candles were drawn, 1 otherwise")
    p.add_argument("--screenshot", type=Path, metavar="PATH",
                   help="with --smoke-test: save the main window to this PNG just before exit")
    p.add_argument("--exit-after-first-window", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["candles"]:
        from app.market.candles import candles_main

        return candles_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.screenshot is not None and args.smoke_test is None:
        print("error: --screenshot needs --smoke-test SECONDS", file=sys.stderr)
        return 2
    settings = _settings_from(args)
    if settings is None:
        return 2
    if settings.replay is not None and not _replay_readable(settings.replay):
        return 2
    handler = _setup_logging(args.verbose)
    return _run_gui(args, settings, handler)


def _settings_from(args: argparse.Namespace):
    from pydantic import ValidationError

    from app.config import Settings

    try:
        return Settings(
            exchange=args.exchange,
            symbol=args.symbol,
            symbols=[x for x in (args.symbols or "").split(",") if x.strip()],
            timeframe=args.timeframe,
            replay=args.replay,
            replay_speed=args.speed,
            record_path=args.record,
            sim_port=args.sim_port,
            sim_protocol=args.sim_protocol,
            llm_url=args.llm_url,
            llm_model=args.model,
            decision_timeframe=args.decision_timeframe,
            journal_path=args.journal,
            auto_approve=args.auto_approve,
        )
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "value"
            print(f"error: {field}: {err['msg']}", file=sys.stderr)
        return None


def _replay_readable(path: Path) -> bool:
    from app.market.recording import RecordingError, iter_frames

    try:
        next(iter_frames(path), None)
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _setup_logging(verbose: bool):
    from app.ui.log_dock import BufferingHandler

    handler = BufferingHandler()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger().addHandler(handler)
    for noisy in ("websockets", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def _run_gui(args: argparse.Namespace, settings, handler) -> int:
    os.environ.setdefault("QT_API", "pyside6")  # qasync picks its binding from this
    import qasync
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("AI Trading Terminal")
    app.setOrganizationName("ai-trading-terminal")
    app.setQuitOnLastWindowClosed(False)  # the coroutine decides when to stop, after a clean shutdown

    from app.ui.main_window import apply_theme

    apply_theme(app, args.theme)
    try:
        return qasync.run(run_terminal(settings, handler, args.smoke_test, args.screenshot,
                                       args.exit_after_first_window))
    except KeyboardInterrupt:
        return 130


def log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Every task error reaches the log, with its traceback; none is swallowed."""
    exc = context.get("exception")
    log.error("event loop error: %s", context.get("message", "unhandled"), exc_info=exc)


async def _next_qt_turn() -> None:
    """Resume after Qt has handled the events queued so far (a zero timer fires once the queue is empty)."""
    from PySide6 import QtCore

    fut = asyncio.get_running_loop().create_future()
    QtCore.QTimer.singleShot(0, lambda: fut.done() or fut.set_result(None))
    await fut


async def run_terminal(settings, handler, smoke_s: float | None, screenshot: Path | None,
                       exit_after_first_window: bool = False) -> int:
    from app.market.recording import RecordingError
    from app.market.simulator import SimulatorPortInUse
    from app.session import Session
    from app.trading.journal import JournalError
    from app.ui.main_window import MainWindow

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_loop_exception)
    if loop.get_debug():  # PYTHONASYNCIODEBUG=1: report anything that holds the loop (and so the window) > 20 ms
        loop.slow_callback_duration = 0.02
    try:
        session = Session(settings)
    except JournalError as exc:  # a journal we must not touch (newer version, not ours, unreadable)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    window = MainWindow(session, handler)
    done: asyncio.Future[str] = loop.create_future()

    def finish(reason: str) -> None:
        if not done.done():
            done.set_result(reason)

    window.close_requested.connect(lambda: finish("closed"))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(finish, "signal"))
    # The window first, then the network: the trader sees the terminal (status "connecting") at once.
    window.show()
    await _next_qt_turn()  # the show and first paint happen there; never processEvents() inside a task
    startup_s = _seconds_since_process_start()
    log.info("first window shown %.0f ms after process start", startup_s * 1000)
    try:
        await session.start()
    except (SimulatorPortInUse, RecordingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        await session.stop()
        window.hide()
        return 2
    window.bridge.start()
    if exit_after_first_window:
        print(f"first_window_s={startup_s:.4f}", flush=True)
        finish("startup measured")
    if smoke_s is not None:
        loop.call_later(smoke_s, finish, "smoke test over")

    reason = await done
    rc = 0
    if smoke_s is not None and reason == "smoke test over":
        window.bridge.tick()  # one last refresh so the screenshot and the verdict see the newest data
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(screenshot), "PNG"):
                print(f"error: cannot write screenshot {screenshot}", file=sys.stderr)
                rc = 1
        rc = max(rc, smoke_verdict(session, window))
    window.bridge.stop()
    await session.stop()
    window.hide()
    window.deleteLater()
    return rc


def smoke_verdict(session, window) -> int:
    feed = session.feed
    m = session.market[window.symbol]
    drawn = window.chart.drawn_candles
    summary = (f"{feed.frames} frames, {m.trades} trades, {drawn} candles drawn, "
               f"feed {feed.state.value}, {feed.rejected_total} rejected")
    problems = []
    if feed.frames == 0 or m.trades == 0:
        problems.append(f"the feed delivered no trades ({feed.last_error or 'no error reported'})")
    if drawn == 0:
        problems.append("the chart drew no candles")
    if problems:
        print(f"smoke test FAILED: {'; '.join(problems)} [{summary}]", flush=True)
        return 1
    print(f"smoke test passed: {summary}", flush=True)
    return 0


def _seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


if __name__ == "__main__":
    sys.exit(main())
