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
    from app.settings_store import default_config_path

    # Defaults are None: a flag not given leaves the settings file's value (or the built-in default) alone.
    p = argparse.ArgumentParser(
        prog="trading-terminal",
        description="AI-assisted trading terminal. Without options it runs on the built-in exchange. Options "
        "override the settings file for this run only; the defaults shown apply when the file does not set them.",
        epilog="Subcommands: 'trading-terminal candles --input FILE --timeframe 1m --output out.csv' aggregates a "
        "recorded feed into candles without opening a window; 'trading-terminal exchange --help' runs the built-in "
        "exchange on its own.",
    )
    p.add_argument("--config", type=Path, metavar="FILE", default=default_config_path(),
                   help="settings file (TOML; default %(default)s). Missing: built-in defaults. A bad file is "
                   "reported, kept as a .bak copy, and its bad keys take their defaults")
    p.add_argument("--exchange", choices=["sim", "binance", "binance-futures", "coinbase", "kraken"],
                   help="market data source: the built-in exchange (default), or Binance spot, Binance USD-M "
                   "futures, Coinbase Advanced Trade, Kraken v2 (live; needs network)")
    p.add_argument("--sim-protocol", choices=["binance", "binance-futures", "coinbase", "kraken"],
                   help="the protocol the built-in exchange speaks (default binance)")
    p.add_argument("--ws-url", metavar="URL",
                   help="this run only: take the exchange's feed from this WebSocket endpoint (testnet, proxy, "
                   "recorder, test server). Binance: the base, e.g. wss://stream.testnet.binance.vision; Coinbase, "
                   "Kraken: the full URL")
    p.add_argument("--rest-url", metavar="URL",
                   help="this run only: the base of the exchange's own REST API, in its own dialect. Binance: "
                   "instruments, history and book snapshots, e.g. https://testnet.binance.vision; Coinbase, Kraken: "
                   "instruments only (their books come from the feed)")
    p.add_argument("--symbol", help="symbol to trade and chart (default BTCUSDT)")
    p.add_argument("--symbols", metavar="A,B,...",
                   help="every symbol to stream on one connection (default on the built-in exchange: "
                   "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT)")
    p.add_argument("--timeframe", help="chart timeframe: 1s, 1m, 5m, 15m, 1h (default 1m)")
    p.add_argument("--replay", type=Path, metavar="FILE",
                   help="replay a recorded feed (<receive_ns> <json> lines, gzip or plain, or JSON lines) "
                   "through the built-in exchange")
    p.add_argument("--speed", type=float, metavar="X",
                   help="replay speed: 1 = real time, 10 = ten times faster, 0 = as fast as possible")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="append every received frame to FILE as '<receive_ns> <raw>' lines (replay with --replay)")
    p.add_argument("--sim-port", type=int, metavar="PORT",
                   help="port of the built-in exchange on 127.0.0.1 (default: a free one)")
    p.add_argument("--llm-url", metavar="URL",
                   help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1; "
                   "API key from OPENAI_API_KEY or the OS keyring. Without it a tiny local model proposes "
                   "(SmolLM2-135M: for trying the terminal, not for trading decisions)")
    p.add_argument("--model", help="model name at that endpoint (default gpt-4o-mini); without --llm-url: "
                   "'local' (the default) or 'rules' (the offline rules, labelled OFFLINE)")
    p.add_argument("--decision-timeframe", metavar="TF",
                   help="ask for a decision at every close of this timeframe (default 1m)")
    p.add_argument("--journal", type=Path, metavar="FILE",
                   help="SQLite journal of proposals, orders and fills (default: in the user data directory)")
    p.add_argument("--auto-approve", action="store_true", default=None,
                   help="approve proposals within auto-approve's own strict limits (off by default)")
    p.add_argument("--theme", choices=["dark", "light"], help="colour theme (default dark)")
    live = p.add_argument_group(
        "live trading", "Paper unless asked. Live orders go to the exchange account whose keys are in the environment "
        "(BINANCE_API_KEY / BINANCE_API_SECRET, COINBASE_..., KRAKEN_...) or the OS keyring, never the settings "
        "file; with --exchange sim the built-in exchange gets a key pair made for this run. A dialog names the "
        "exchange and the account before the first order; without keys, with keys the exchange rejects, or declined, "
        "the terminal says why and trades on paper.")
    live.add_argument("--live", action="store_true", default=None,
                      help="trade live on the exchange chosen with --exchange (default: paper)")
    net = live.add_mutually_exclusive_group()
    net.add_argument("--testnet", dest="live_testnet", action="store_const", const=True, default=None,
                     help="on the exchange's test network with play money (the default)")
    net.add_argument("--mainnet", dest="live_testnet", action="store_const", const=False,
                     help="on the real exchange, with real money")
    live.add_argument("--confirm-live", action="store_true",
                      help="scripted runs: confirm live trading without the dialog (needs --live; never implied)")
    p.add_argument("--smoke-test", type=float, metavar="SECONDS",
                   help="run that long (or until SIGTERM/Ctrl+C ends it early), then exit 0 if data arrived, "
                   "candles were drawn and no task failed, 1 otherwise")
    p.add_argument("--screenshot", type=Path, metavar="PATH",
                   help="with --smoke-test: save the main window to this PNG just before exit")
    p.add_argument("--json", action="store_true",
                   help="with --smoke-test: at exit, print the run's counters (frames, trades per symbol, gaps, "
                   "duplicates, rejected per reason, reconnects, task faults, model, decisions per badge, orders, "
                   "visible docks) as one JSON object on a line of its own")
    p.add_argument("--exit-after-first-window", action="store_true", help=argparse.SUPPRESS)
    # Test hook: a smoke run sends one market buy of QTY on the chart's symbol once it has a price (through the
    # desk: rounding, risk, journal), so scripts can check the order path end to end. Never against a real account.
    p.add_argument("--smoke-order", type=str, metavar="QTY", help=argparse.SUPPRESS)
    # Test hook: a smoke run's ticket starts with this quantity, so a scripted key press (buy at the ask, sell at
    # the bid) has something to send (tests/ui/test_real_window_keys.py).
    p.add_argument("--ticket-qty", type=str, metavar="QTY", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The terminal uses no pydantic plugins; looking for them scans every installed package's entry points
    # (~10 ms of start-up).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if argv[:1] == ["candles"]:
        from app.market.candles import candles_main

        return candles_main(argv[1:])
    if argv[:1] == ["exchange"]:  # the built-in exchange's own process (the terminal starts it; see --help there)
        from app.market.sim.cli import main as exchange_main

        return exchange_main(argv[1:])
    if argv[:1] == ["local-model"]:  # the embedded model's server process (the terminal starts it)
        from app.llm.local import serve

        return serve(argv[1:])
    args = build_parser().parse_args(argv)
    if args.screenshot is not None and args.smoke_test is None:
        print("error: --screenshot needs --smoke-test SECONDS", file=sys.stderr)
        return 2
    if args.json and args.smoke_test is None:
        print("error: --json needs --smoke-test SECONDS", file=sys.stderr)
        return 2
    if args.smoke_order is not None and (args.smoke_test is None or (args.live and args.exchange != "sim")):
        print("error: --smoke-order is for smoke tests on paper or the built-in exchange", file=sys.stderr)
        return 2
    if args.ticket_qty is not None and args.smoke_test is None:
        print("error: --ticket-qty is for smoke tests", file=sys.stderr)
        return 2
    if args.confirm_live and not args.live:
        print("error: --confirm-live confirms live trading asked for with --live on the same command line; it is "
              "never implied (add --live, or leave both out to trade on paper)", file=sys.stderr)
        return 2
    loaded = _settings_from(args)
    if loaded is None:
        return 2
    settings, problems = loaded
    handler = _setup_logging(args.verbose)
    # A bad settings file never stops the terminal: each problem goes to the log (and so stderr), and the window
    # lists them once it is up; defaults fill in for the bad keys only.
    for problem in problems:
        log.warning("settings: %s", problem)
    args.settings_problems = problems
    if settings.replay is not None and not _replay_readable(settings.replay):
        return 2
    return _run_gui(args, settings, handler)


# Command-line option -> Settings field. Only the options given are applied, on top of the file's settings.
_FLAG_FIELDS = {
    "exchange": "exchange", "sim_protocol": "sim_protocol", "symbol": "symbol", "symbols": "symbols",
    "timeframe": "timeframe", "replay": "replay", "speed": "replay_speed", "record": "record_path",
    "sim_port": "sim_port", "llm_url": "llm_url", "model": "llm_model", "decision_timeframe": "decision_timeframe",
    "journal": "journal_path", "auto_approve": "auto_approve", "theme": "theme", "ws_url": "ws_url",
    "rest_url": "rest_url", "live": "live_trading", "live_testnet": "live_testnet",
}


def _flag_words(args: argparse.Namespace, flags: dict) -> dict[str, str]:
    """The settings this run's flags override, as the flag was given (field -> "--model gpt-4o"): the settings
    dialog shows the file's values and names these."""
    from app.config import PER_RUN_FIELDS

    words: dict[str, str] = {}
    for opt, field in _FLAG_FIELDS.items():
        value = getattr(args, opt, None)
        if value is None:
            continue
        if field == "llm_model" and "decision_source" in flags:
            field = "decision_source"
        if field in PER_RUN_FIELDS:  # never in the file: nothing there to override
            continue
        flag = "--" + opt.replace("_", "-")
        if opt == "live_testnet":
            words[field] = "--testnet" if value else "--mainnet"
        elif isinstance(value, bool):
            words[field] = flag
        else:
            words[field] = f"{flag} {value}"
    return words


def _settings_from(args: argparse.Namespace):
    """``(settings, problems)``: the settings file (``args.config``) with the flags given on top, and the file's
    problems as lines for the user; None (after printing why) when a flag is invalid."""
    from pydantic import ValidationError

    from app.config import Settings
    from app.settings_store import load_settings

    loaded = load_settings(args.config)
    flags = {field: getattr(args, opt) for opt, field in _FLAG_FIELDS.items() if getattr(args, opt) is not None}
    if "symbols" in flags:
        flags["symbols"] = [x for x in flags["symbols"].split(",") if x.strip()]
    if flags.get("llm_model") in ("local", "rules"):  # what proposes without an endpoint, not a model name
        if "llm_url" in flags:
            print(f"error: --model {flags['llm_model']} chooses what proposes without --llm-url; with --llm-url, "
                  "--model names the model at that endpoint", file=sys.stderr)
            return None
        flags["decision_source"] = flags.pop("llm_model")
    try:
        settings = Settings.model_validate({**loaded.settings.model_dump(), **flags})
    except ValidationError as exc:
        option = {field: "--" + opt.replace("_", "-") for opt, field in _FLAG_FIELDS.items()}
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "value"
            msg = str(err["msg"]).removeprefix("Value error, ").replace("Input should be ", "must be ")
            print(f"error: {option.get(field, field)}: {msg}", file=sys.stderr)
        return None
    args.flag_overrides = _flag_words(args, flags)
    if settings.replay is not None and settings.exchange != "sim":
        print(f"error: --replay plays a recording through the built-in exchange; it cannot be combined with "
              f"--exchange {settings.exchange}", file=sys.stderr)
        return None
    if settings.exchange == "sim" and (settings.ws_url or settings.rest_url):
        print("error: --ws-url and --rest-url point a live exchange's feed elsewhere; the built-in exchange has its "
              "own (use them with --exchange binance, binance-futures, coinbase or kraken)", file=sys.stderr)
        return None
    return settings, loaded.report()


def _replay_readable(path: Path) -> bool:
    """A file the replay cannot use is said in one sentence now, not found out as a feed with 0 frames."""
    from app.market.recording import RecordingError, scan_recording

    try:
        scan_recording(path, max_frames=10_000)  # the built-in exchange reads it all; this is the quick look
    except RecordingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _setup_logging(verbose: bool):
    """Console, rotating log file and the log dock's buffer, all scrubbed of secrets (app/logs.py); and the crash
    handler, whose report path is shown in a dialog when the GUI is up, else printed to stderr."""
    from app.crash import install_crash_handler
    from app.logs import setup_logging
    from app.ui.log_dock import BufferingHandler

    handler = BufferingHandler()
    logging.getLogger().addHandler(handler)  # before setup_logging, which gives every root handler the scrubber
    setup_logging(verbose)

    def on_crash(path: Path) -> None:
        import threading

        from PySide6 import QtCore, QtWidgets

        print(f"error: the terminal hit an unexpected error; a report was written to {path}", file=sys.stderr)
        app = QtWidgets.QApplication.instance()
        if app is None:
            return

        def show() -> None:
            from app.ui.crash_dialog import show_crash_dialog

            show_crash_dialog(path, QtWidgets.QApplication.activeWindow())

        if threading.current_thread() is threading.main_thread():
            show()
        else:  # widgets only in the GUI thread: the context object runs it there
            QtCore.QTimer.singleShot(0, app, show)

    install_crash_handler(on_crash=on_crash)
    return handler


def _run_gui(args: argparse.Namespace, settings, handler) -> int:
    os.environ.setdefault("QT_API", "pyside6")  # qasync picks its binding from this
    import qasync
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("AI Trading Terminal")
    app.setOrganizationName("ai-trading-terminal")
    app.setQuitOnLastWindowClosed(False)  # the coroutine decides when to stop, after a clean shutdown

    from app.ui.icon import app_icon
    from app.ui.main_window import apply_theme

    apply_theme(app, settings.theme)
    app.setWindowIcon(app_icon())
    try:
        return qasync.run(run_terminal(settings, handler, args))
    except KeyboardInterrupt:
        return 130


def log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Every task error reaches the log, with its traceback; none is swallowed. An exception is a bug: it also
    gets a crash report (once per distinct error) and the dialog that says where it is."""
    exc = context.get("exception")
    if exc is None:
        log.error("event loop error: %s", context.get("message", "unhandled"))
        return
    from app.crash import report_exception

    report_exception(exc, where=f"event loop: {context.get('message', 'unhandled')}")


async def _next_qt_turn() -> None:
    """Resume after Qt has handled the events queued so far (a zero timer fires once the queue is empty)."""
    from PySide6 import QtCore

    fut = asyncio.get_running_loop().create_future()
    QtCore.QTimer.singleShot(0, lambda: fut.done() or fut.set_result(None))
    await fut


def _ui_state(config_path: Path):
    """Window layout, geometry, symbol and timeframe between runs: an INI file beside the settings file."""
    from PySide6 import QtCore

    path = config_path.parent / "window.ini"
    return QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat)


async def run_terminal(settings, handler, args: argparse.Namespace) -> int:
    from app.ui.main_window import MainWindow

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_loop_exception)
    if loop.get_debug():  # PYTHONASYNCIODEBUG=1: report anything that holds the loop (and so the window) > 20 ms
        loop.slow_callback_duration = 0.02
    live = None
    if settings.live_trading:
        from app.market.recording import RecordingError
        from app.market.sim.process import ExchangeStartError
        from app.market.sim.source import SimulatorPortInUse

        try:
            live = await _open_live(settings, args)
        except (ExchangeStartError, SimulatorPortInUse, RecordingError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    smoke_s, screenshot = args.smoke_test, args.screenshot
    # Automation runs (smoke test, start-up benchmark) neither read nor overwrite the trader's saved layout.
    automated = smoke_s is not None or args.exit_after_first_window
    # The window's frame needs only the settings: it is on screen, saying "starting…", before the session (its
    # trading, journal, decisions and feed modules, ~0.1-0.2 s of imports, and the journal's restore) is made.
    window = MainWindow(
        None, handler, settings=settings, build_panels=False, ui_state=None if automated else _ui_state(args.config),
        restore_view=args.symbol is None and args.timeframe is None,  # unless this run's flags chose them
        config_path=args.config, flag_overrides=getattr(args, "flag_overrides", None),
    )
    done: asyncio.Future[str] = loop.create_future()

    def finish(reason: str) -> None:
        if not done.done():
            done.set_result(reason)

    window.close_requested.connect(lambda: finish("closed"))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(finish, "signal"))
    # The window first, then the session and the network: the trader sees the terminal ("starting…") at once.
    window.show()
    await _next_qt_turn()  # the show and first paint happen there; never processEvents() inside a task
    startup_s = _seconds_since_process_start()
    startup_cpu_s = time.process_time()  # CPU time to the first window: steadier than wall time on a busy machine
    from app.session import Session
    from app.trading.journal import JournalError

    try:
        session = Session(settings, live=live)
    except JournalError as exc:  # a journal we must not touch (newer version, another account's, unreadable)
        print(f"error: {exc}", file=sys.stderr)
        window.hide()
        window.deleteLater()
        await _release_live(live)
        return 2
    restored_state = _state_summary(session)  # what the journal gave back, before anything trades
    window.attach_session(session)
    window.build_panels()  # after the first paint: the frame is on screen while the side panels are made
    if getattr(args, "ticket_qty", None):
        window.trading_panel.qty.setText(args.ticket_qty)
    log.info("first window shown %.0f ms after process start, session and panels ready at %.0f ms",
             startup_s * 1000, _seconds_since_process_start() * 1000)
    window.show_settings_problems(args.settings_problems)
    from app.market.recording import RecordingError
    from app.market.sim.process import ExchangeStartError
    from app.market.sim.source import SimulatorPortInUse

    try:
        await session.start()
    except (ExchangeStartError, SimulatorPortInUse, RecordingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        await session.stop()
        window.hide()
        return 2
    window.bridge.start()
    from app.perf.gc_policy import SETTLE_S, freeze_long_lived

    loop.call_later(SETTLE_S, freeze_long_lived)  # start-up's objects out of every later full collection
    if args.exit_after_first_window:
        print(f"first_window_s={startup_s:.4f}", f"first_window_cpu_s={startup_cpu_s:.4f}", sep="\n", flush=True)
        finish("startup measured")
    if smoke_s is not None:
        loop.call_later(smoke_s, finish, "smoke test over")
        if args.smoke_order is not None:
            session.spawn(_smoke_order(session, window.symbol, args.smoke_order), "smoke order")

    reason = await done
    rc = 0
    counters = None
    # A signal ends a smoke test early with its verdict: a script (scripts/chaos.py) stops it when it has what
    # it needs, and still gets the counters.
    if smoke_s is not None and reason in ("smoke test over", "signal"):
        window.bridge.tick()  # one last refresh so the screenshot and the verdict see the newest data
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(screenshot), "PNG"):
                print(f"error: cannot write screenshot {screenshot}", file=sys.stderr)
                rc = 1
        rc = max(rc, smoke_verdict(session, window))
        counters = smoke_counters(session, window)
        counters["restored_state"] = restored_state
    window.bridge.stop()
    if reason == "signal":  # Ctrl+C, SIGTERM at logout: no closeEvent, so the layout is saved here
        window.save_ui_state()
    await session.stop()
    window.hide()
    window.deleteLater()
    if args.json and counters is not None:
        import json

        counters["reconnects"] = session.feed.reconnects  # final, after the feed closed
        counters["ok"] = rc == 0
        print(json.dumps(counters, sort_keys=True), flush=True)  # one line: scripts read the last line of stdout
    return rc


async def _release_live(live) -> None:
    """No session will own what live_start opened: the live broker and the built-in exchange it started."""
    if live is None:
        return
    for what, close in (("live broker", live.broker.aclose if live.broker else None),
                        ("exchange", live.exchange.stop if live.exchange else None)):
        if close is None:
            continue
        try:
            await close()
        except Exception:
            log.exception("closing the %s failed", what)


async def _open_live(settings, args: argparse.Namespace):
    """Live trading asked for: connect the exchange account and confirm, before the session exists
    (``app.trading.live_start``). The confirmation is the dialog, or ``--confirm-live``; a scripted run without that
    flag gets no dialog (nobody would answer it) and trades on paper, saying so."""
    from app.trading.live_start import open_live

    scripted = args.smoke_test is not None or args.exit_after_first_window
    # Only this run's --auto-approve turns it on in live (args.auto_approve is None without the flag, whatever the
    # settings file says): the dialog, or the log for --confirm-live, says which it is.
    auto = args.auto_approve is True
    auto_words = ("auto-approve ON: proposals within its limits are sent without asking" if auto
                  else "auto-approve off")
    if args.confirm_live:
        async def confirm(account, label) -> bool:
            log.warning("live trading confirmed by --confirm-live: %s, account %s, %s", label, account.account,
                        auto_words)
            return True
    elif scripted:
        async def confirm(account, label) -> bool:
            log.warning("a scripted run confirms live trading with --confirm-live; none given")
            return False
    else:
        from app.ui.live_confirm import confirm_live

        async def confirm(account, label) -> bool:
            return await confirm_live(account, label, auto_approve=auto)
    return await open_live(settings, confirm, journal_given=args.journal is not None, auto_approve=auto)


async def _smoke_order(session, symbol: str, qty: str) -> None:
    """--smoke-order: one market buy once the symbol has a price, through the desk like a trader's ticket."""
    from decimal import Decimal, InvalidOperation

    from app.models import OrderRequest, OrderType, Side

    if session.settings.live_trading and session.settings.exchange != "sim":
        return  # never a real account (checked at parse time too; the settings file may ask for live)
    try:
        amount = Decimal(qty)
    except InvalidOperation:
        log.error("--smoke-order %r is not a quantity", qty)
        return
    desk = session.desk
    while desk.last_price(symbol) is None:
        await asyncio.sleep(0.05)
    result = await desk.submit_manual(OrderRequest(symbol, Side.BUY, OrderType.MARKET, amount))
    log.info("smoke order: %s", result.message)


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
    if session.task_faults:  # a part of the terminal failed, even if it was restarted since
        parts = ", ".join(f.text for f in session.supervisor.faults.values())
        problems.append(f"{session.task_faults} task fault(s): {parts}")
    if problems:
        print(f"smoke test FAILED: {'; '.join(problems)} [{summary}]", flush=True)
        return 1
    print(f"smoke test passed: {summary}", flush=True)
    return 0


def smoke_counters(session, window) -> dict:
    """What ``--smoke-test N --json`` prints: the run's counters, for scripts (chaos, soak) and CI."""
    from PySide6 import QtWidgets

    feed = session.feed
    desk = session.desk
    stats = session.decisions.stats
    return {
        "seconds": round(time.perf_counter_ns() / 1e9 - session.started_ns / 1e9, 3),
        "frames": feed.frames,
        "trades": {s: session.market[s].trades for s in session.symbols},
        "gaps": feed.gap_count,
        "missing_trades": feed.missing_trades,
        "duplicates": feed.duplicates,
        "rejected": dict(feed.rejected),
        "reconnects": feed.reconnects,
        "task_faults": session.task_faults,
        "faults": session.supervisor.counts(),
        "model": window.model_status.text(),
        "model_fallback": session.model_fallback,  # the local model gave way to the rules: handled, not a fault
        "decisions": dict(stats.by_badge),
        "decision_requests": stats.requests,
        "orders": desk.orders_sent,  # this run's; what a restart took back is counted apart
        "fills": desk.fills_this_run,
        "orders_restored": desk.orders_restored,
        "fills_restored": desk.fills_restored,
        "risk": desk.risk.state.value,
        "broker": desk.broker.mode,  # PAPER or LIVE
        "broker_label": session.broker_label,
        "auto_approve": desk.proposals.auto_approve,
        "live": _live_counters(session),
        # The docks open on screen (a tab behind another counts: one click shows it), in the window's order.
        "docks": [d.windowTitle() for d in getattr(window, "docks", window.findChildren(QtWidgets.QDockWidget))
                  if d.toggleViewAction().isChecked()],
        # Other windows open at the end (dialogs: Keyboard shortcuts, Settings ...), for scripted key tests.
        "windows": sorted(w.windowTitle() for w in QtWidgets.QApplication.topLevelWidgets()
                          if w.isVisible() and isinstance(w, QtWidgets.QDialog)),
        "state": _state_summary(session),
    }


def _live_counters(session) -> dict | None:
    """The live broker's counters (orders, fills, cancels, reconciliations ...) and why live trading is off when
    it was asked for and is not; None for a paper session that never asked."""
    live = session.live
    if live is None:
        return None
    counters = getattr(session.desk.broker, "counters_dict", None)
    return {"reason": live.reason, "journal": str(session.journal.path), **(counters() if counters else {})}


def _state_summary(session) -> dict | None:
    """Positions, cash, open orders and risk state as JSON values (the desk's summary, where it has one)."""
    summary = getattr(session.desk, "summary", None)
    return summary() if summary is not None else None


def _seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


if __name__ == "__main__":
    sys.exit(main())
