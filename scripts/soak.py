#!/usr/bin/env python3
"""Soak test: the real terminal (Session + MainWindow on a qasync loop) on the built-in exchange at a chosen message
rate for N minutes, offscreen or (``--xvfb``) in a real window. Reports memory over time and its growth after
warm-up (the local model's process apart), event-loop lag, UI frame time, the decisions answered and every feed drop.

    .venv/bin/python scripts/soak.py --minutes 2 --rate 2000 [--sample-s 5] [--json]
    .venv/bin/python scripts/soak.py --xvfb --minutes 2 --rate 5000 --decisions local --json

In-process on purpose: the frame time is what the UI bridge records for each of its refreshes (chart, panels,
performance panel) and repaints, and the loop lag is measured by a probe task on the same loop as everything else,
split into the part the loop's thread was on the CPU for (at most what the terminal's own work made; the SLOW
badge's input) and the part it was not (a busy machine). The built-in exchange runs in its own process, as in the
terminal; RSS is the terminal's, the local model's (its pid from the terminal's provider) is reported apart.

Finding what holds the loop: ``--slow-callback-ms 5`` counts every turn over 5 ms (Qt events, asyncio callbacks,
garbage collections) with its wall and CPU time. Like the terminal, the run freezes its start-up objects once they
have settled (app/perf/gc_policy.py; ``--no-gc-freeze`` leaves that out to see what full collections cost without it).
The run ends with what one full collection costs, frozen or not.

``--xvfb``: the script starts Xvfb (a free display, 1600x1000x24) and openbox itself, shows the window there (the
xcb platform: real paints, real expose and flush), and stops both at the end, on Ctrl-C, SIGTERM or a failure too
(they also get SIGTERM if this process dies). A UI frame is every turn of the loop spent on the UI: the bridge's
refreshes and the repaints of the window (Qt paints in a turn of its own, after them); ``ui_refresh_*`` and
``ui_paint_*`` are the two kinds apart.

Steady state: the flat keys (``loop_lag_*``, ``ui_frame_*``, ``ui_paint_*``, ``achieved_msgs_per_s``,
``rss_growth_mb``, ``model_rss_*``) cover the run after the first ``--warmup`` fraction (start-up, history, first
paints, the model loading); the nested ``loop_lag_ns`` / ``ui_frame_ns`` keep the whole run and the last minute.

Calibration: messages per trade are not a constant on the built-in exchange (per symbol: depth diffs every 100 ms
and a kline every second whatever the trade rate, a trade and, when the top of book moves, a bookTicker per trade),
and the synthetic market is a function of the clock and its seed: its trades per second follow a volatility path,
so over a minute or two the trade count is anything from ~0.7x to 1.3x the configured rate. So the script
calibrates against the generator as the server runs it (same default seed): a virtual-clock run of 20 s at two
trade rates fits msgs = a * trades + b * seconds per symbol, and the trade count of the run's own window comes from
the market's per-second rows (``trades_per_rate``); it then solves for the trade rate that gives ``--rate``
msgs/s over all symbols. The achieved rate (feed frames over wall time, after warm-up) is reported beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
from PySide6 import QtWidgets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

XVFB_SCREEN = "1600x1000x24"
CALIBRATION_S = 20.0  # virtual seconds of generation per calibration point
START_UP_S = 2.0  # from calibration to the soak's start (measured 1.1-2.4 s): the run starts about this much later


# ---------------------------------------------------------------------------------------------------------
# A real display


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this script dies, even by SIGKILL (Linux), so no Xvfb is left."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):  # the window manager before its display
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def x_display(home: Path, screen: str = XVFB_SCREEN) -> Iterator[str]:
    """Xvfb on a free display number (it picks one and writes it to ``-displayfd``) with openbox managing it;
    yields the display name (":N"). Both are stopped on the way out, whatever the way."""
    missing = [tool for tool in ("Xvfb", "openbox", "xprop") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"--xvfb needs {', '.join(missing)} (Debian: xvfb, openbox, x11-utils; scripts/test "
                         "installs them)")
    procs: list[subprocess.Popen] = []
    read, write = os.pipe()
    try:
        procs.append(subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp", "-noreset"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        os.close(write)
        write = -1
        with os.fdopen(read) as pipe:
            read = -1
            number = pipe.readline().strip()  # written once Xvfb accepts clients
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start")
        name = f":{number}"
        env = {**os.environ, "DISPLAY": name, "HOME": str(home)}
        procs.append(subprocess.Popen(["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        deadline = time.monotonic() + 15
        while True:  # managed once openbox has set the root window's supporting-WM property
            out = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=env, capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0 and "window id" in out.stdout:
                break
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise RuntimeError("openbox did not start")
            time.sleep(0.1)
        yield name
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)
        _stop(procs)


# ---------------------------------------------------------------------------------------------------------
# Calibration


def trades_per_rate(symbol: str, start_ms: int, end_ms: int) -> float:
    """Trades the built-in exchange's market of ``symbol`` makes in [start_ms, end_ms) per trade/s of its rate
    setting, from its own per-second rows (drawn at a high rate so the Poisson noise is negligible). Reads the
    market's rows directly: that is where its clock-driven trade counts are."""
    from app.market.sim.markets import market_for

    rate = 10_000.0
    market = market_for(symbol, rate, start_ms=start_ms)
    total = 0
    for hour in range(start_ms // 3_600_000, (end_ms - 1) // 3_600_000 + 1):
        rows = market._hour(hour)
        t = rows["t"]
        total += int(rows["n"][(t >= start_ms) & (t < end_ms)].sum())
    return total / rate


def calibrate(symbol: str, seconds: float = CALIBRATION_S) -> tuple[float, float]:
    """(a, b) in msgs = a * trades + b * seconds for one symbol of the built-in exchange, from its generator (the
    server's default seed) run on a virtual clock in the server's 25 ms steps over the streams the terminal
    subscribes to, at two trade rates. Trades are counted, not assumed: the clock-driven market makes more or
    fewer than its rate from one minute to the next."""
    from app.market.adapters import binance
    from app.market.sim.markets import TICK_S, market_for

    def run(trades_per_s: float) -> tuple[int, int]:
        t0, step = time.time_ns() // 1_000_000, int(TICK_S * 1000)
        market = market_for(symbol, trades_per_s, start_ms=t0)
        wanted = set(binance.streams_for(symbol))
        trade_stream = f"{symbol.lower()}@trade"
        msgs = trades = 0
        for k in range(1, int(seconds * 1000 / step) + 1):
            frames = market.advance(t0 + step * k, wanted)
            msgs += len(frames)
            trades += sum(1 for stream, _ in frames if stream == trade_stream)
        return msgs, trades

    (m_lo, t_lo), (m_hi, t_hi) = run(50.0), run(400.0)
    a = (m_hi - m_lo) / max(1, t_hi - t_lo)
    return a, (m_lo - a * t_lo) / seconds


def solve_trade_rate(target_msgs_per_s: float, symbols: list[str], run_s: float,
                     start_ms: int | None = None) -> dict:
    """The trade rate setting that gives ``target_msgs_per_s`` over ``symbols`` during the run's window."""
    start_ms = time.time_ns() // 1_000_000 + int(START_UP_S * 1000) if start_ms is None else start_ms
    end_ms = start_ms + int(run_s * 1000)
    fits = {sym: calibrate(sym) for sym in symbols}
    per_rate = {sym: trades_per_rate(sym, start_ms, end_ms) / run_s for sym in symbols}  # trades/s per rate unit
    slope = sum(fits[sym][0] * per_rate[sym] for sym in symbols)  # msgs/s per trade/s of the setting
    fixed = sum(fits[sym][1] for sym in symbols)
    rate = max(0.1, (target_msgs_per_s - fixed) / slope) if slope > 0 else target_msgs_per_s / 3.0 / len(symbols)
    return {
        "trades_per_s": rate,
        "msgs_per_trade": sum(fits[s][0] for s in symbols) / len(symbols),
        "fixed_msgs_per_s": fixed,
        "window_trade_factor": sum(per_rate.values()) / len(symbols),  # trades made / rate setting, this window
    }


# ---------------------------------------------------------------------------------------------------------
# The run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--rate", type=float, default=2000.0, help="target feed messages per second (default 2000)")
    p.add_argument("--symbols", default="", help="symbols on the built-in exchange (default: its five)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of the run left out of the steady state "
                                                             "(0.2)")
    p.add_argument("--decisions", choices=("local", "rules"), default=None,
                   help="what proposes: the local model or the offline rules (default: the terminal's default)")
    p.add_argument("--xvfb", action="store_true",
                   help="a real window: start Xvfb and openbox, show the terminal there, stop them at the end")
    p.add_argument("--slow-callback-ms", type=float, default=0.0,
                   help="count every turn of the loop (Qt event, asyncio callback, garbage collection) longer "
                        "than this, by what ran (a diagnostic: it costs a few µs an event)")
    p.add_argument("--no-gc-freeze", action="store_true",
                   help="leave out the terminal's freeze of its start-up objects (app/perf/gc_policy.py) to see what "
                        "full garbage collections cost the loop without it")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p.parse_args(argv)


def rss_slope_mb_per_hour(t_s: list[float], rss_mb: list[float], warmup: float) -> float | None:
    """Least-squares slope of RSS over the samples after the warm-up fraction of the run, in MB/h."""
    if len(t_s) < 3:
        return None
    cut = t_s[0] + warmup * (t_s[-1] - t_s[0])
    t = np.array([x for x in t_s if x >= cut])
    y = np.array([r for x, r in zip(t_s, rss_mb, strict=True) if x >= cut])
    if len(t) < 2 or t[-1] <= t[0]:
        return None
    return float(np.polyfit(t, y, 1)[0] * 3600.0)


def growth(values: list[float | None]) -> float | None:
    """Last minus first of the values present (MB)."""
    present = [v for v in values if v is not None]
    return round(present[-1] - present[0], 2) if len(present) >= 2 else None


class Tee:
    """Records into every recorder given; ``steady`` is attached at the end of the warm-up."""

    def __init__(self, *recorders) -> None:
        self.recorders = list(recorders)

    def record(self, ns: int) -> None:
        for rec in self.recorders:
            rec.record(ns)


class SlowEvents:
    """Every turn of the loop that holds it longer than ``limit_ms`` (wall), by what ran, with the CPU time the
    loop's thread spent in it: a turn whose CPU time is far below its wall time was not the terminal's work (the
    thread was preempted or waited). Qt events are timed in ``QApplication.notify`` (outermost only: a paint
    inside a resize is the resize's), asyncio callbacks in ``Handle._run`` (under qasync they run inside a Qt
    timer event, ``_SimpleTimer``, timed as a whole too); garbage collections apart. A diagnostic: it costs a few
    µs an event."""

    def __init__(self, limit_ms: float) -> None:
        self.limit_ns = int(limit_ms * 1e6)
        self.by_what: dict[str, list[float]] = {}  # what -> [count, wall ms, max wall ms, cpu ms, max cpu ms]

    def add(self, what: str, wall_ns: int, cpu_ns: int) -> None:
        e = self.by_what.setdefault(what, [0, 0.0, 0.0, 0.0, 0.0])
        wall, cpu = wall_ns / 1e6, cpu_ns / 1e6
        e[0] += 1
        e[1] += wall
        e[2] = max(e[2], wall)
        e[3] += cpu
        e[4] = max(e[4], cpu)

    def top(self, n: int = 20) -> list[dict]:
        rows = sorted(self.by_what.items(), key=lambda kv: -kv[1][3])[:n]  # by CPU: the terminal's own work
        return [{"what": what, "count": c, "wall_ms": round(w, 1), "max_wall_ms": round(mw, 1),
                 "cpu_ms": round(cpu, 1), "max_cpu_ms": round(mc, 1)} for what, (c, w, mw, cpu, mc) in rows]

    def timed(self, what: Callable[[], str], run: Callable[[], object]):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return run()
        finally:
            dt = time.perf_counter_ns() - t0
            if dt > self.limit_ns:
                self.add(what(), dt, time.thread_time_ns() - c0)

    def install(self) -> None:
        """Times asyncio's callbacks and the garbage collector (the Qt side is ``timing_application``)."""
        original = asyncio.events.Handle._run
        slow = self

        def _run(handle):
            return slow.timed(lambda: _describe(handle), lambda: original(handle))

        asyncio.events.Handle._run = _run
        gc_started: list[tuple[int, int]] = []

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_started[:] = [(time.perf_counter_ns(), time.thread_time_ns())]
            elif gc_started:
                (t0, c0), = gc_started
                dt = time.perf_counter_ns() - t0
                if dt > self.limit_ns:
                    self.add(f"gc generation {info.get('generation')}", dt, time.thread_time_ns() - c0)

        gc.callbacks.append(on_gc)


def _describe(handle) -> str:
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"asyncio task {owner.get_name()!r} ({getattr(coro, '__qualname__', coro)})"
    return f"asyncio callback {getattr(callback, '__qualname__', repr(callback))[:100]}"


def _receiver(obj) -> str:
    """A Qt receiver by class, object name, and for a graphics scene the widget that shows it."""
    name = type(obj).__name__
    try:
        if obj.objectName():
            name += f"({obj.objectName()})"
        if isinstance(obj, QtWidgets.QGraphicsScene) and obj.views():
            owner, chain = obj.views()[0], []
            while owner is not None and len(chain) < 3:
                chain.append(type(owner).__name__)
                owner = owner.parent()
            name += " in " + "/".join(chain)
    except RuntimeError:  # deleted meanwhile
        pass
    return name


def timing_application(slow: SlowEvents) -> QtWidgets.QApplication:
    """A QApplication whose notify times each outermost event into ``slow``."""

    class TimingApplication(QtWidgets.QApplication):
        depth = 0

        def notify(self, receiver, event) -> bool:
            if TimingApplication.depth:
                return super().notify(receiver, event)
            TimingApplication.depth = 1
            try:
                kind = event.type()
                return slow.timed(lambda: f"Qt {kind.name} -> {_receiver(receiver)}",
                                  lambda: super(TimingApplication, self).notify(receiver, event))
            finally:
                TimingApplication.depth = 0

    return TimingApplication(sys.argv[:1])


def full_collection_cost() -> dict:
    """What a full (generation 2) garbage collection holds the loop for now, with everything alive after the run,
    and the same right after ``gc.freeze()`` (what start-up could do once its objects are made: a frozen object is
    never scanned again). Measured on the loop, once each; the freeze is undone."""
    tracked = len(gc.get_objects())
    t0 = time.perf_counter_ns()
    gc.collect()
    full = time.perf_counter_ns() - t0
    gc.freeze()
    try:
        t0 = time.perf_counter_ns()
        gc.collect()
        frozen = time.perf_counter_ns() - t0
    finally:
        gc.unfreeze()
    return {"gc_tracked_objects": tracked, "gc_full_collect_ms": round(full / 1e6, 1),
            "gc_full_collect_after_freeze_ms": round(frozen / 1e6, 1)}


def model_process(session) -> psutil.Process | None:
    """The local model's server process, as the terminal started it (its provider knows the pid)."""
    pid = getattr(getattr(session.provider, "process", None), "pid", None)
    try:
        return psutil.Process(pid) if pid else None
    except psutil.Error:
        return None


def _rss_mb(proc: psutil.Process | None) -> float | None:
    try:
        return round(proc.memory_info().rss / 1e6, 2) if proc is not None else None
    except psutil.Error:
        return None


async def soak(args: argparse.Namespace, journal: Path, slow: SlowEvents | None = None,
               stop: StopRequest | None = None) -> dict:
    from app.config import Settings
    from app.perf.gc_policy import SETTLE_S, freeze_long_lived
    from app.perf.metrics import UI_FRAME, UI_PAINT, Metrics, Recorder, measure_record_cost
    from app.perf.probes import LoopLagProbe, ProcessProbe, open_sockets, task_count
    from app.session import Session
    from app.ui.log_dock import BufferingHandler
    from app.ui.main_window import MainWindow

    stop = stop or StopRequest()
    stop_event = stop.bind()
    if slow is not None:
        slow.install()

    record_cost = measure_record_cost(200_000)  # before the feed starts, on a quiet process
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    feed_symbols = (Settings(symbols=symbols) if symbols else Settings()).feed_symbols()
    n_symbols = len(feed_symbols)
    run_s = args.minutes * 60.0
    # The rate is measured after the warm-up: the market of that part of the run is the one to calibrate on.
    steady_from_ms = time.time_ns() // 1_000_000 + int((START_UP_S + args.warmup * run_s) * 1000)
    cal = solve_trade_rate(args.rate, feed_symbols, (1 - args.warmup) * run_s, steady_from_ms)
    calibrated_at = time.monotonic()
    chosen = {"decision_source": args.decisions} if args.decisions else {}
    settings = Settings(symbols=symbols, sim_trades_per_s=cal["trades_per_s"], journal_path=journal, **chosen)

    metrics = Metrics()
    lag_tee, off_tee = Tee(metrics.recorder("loop_lag")), Tee(metrics.recorder("loop_lag_off_cpu"))
    own_tee = Tee(metrics.recorder("loop_lag_own"))
    lag = LoopLagProbe(lag_tee, interval_s=0.02, off_cpu=off_tee, own=own_tee)
    proc = ProcessProbe(history=100_000)
    steady_lag, steady_frame, steady_paint = Recorder("loop_lag"), Recorder(UI_FRAME), Recorder(UI_PAINT)
    steady_refresh = Recorder(UI_FRAME)
    steady_off, steady_own = Recorder("loop_lag_off_cpu"), Recorder("loop_lag_own")

    session = Session(settings)
    window = MainWindow(session, BufferingHandler())
    bridge = window.bridge
    # The bridge times every UI refresh (chart, panels, perf) and every repaint of the window, each a UI frame.
    frame_rec, paint_all = session.metrics.recorder(UI_FRAME), session.metrics.recorder(UI_PAINT)
    refresh_tee, paint_tee = Tee(frame_rec), Tee(frame_rec, paint_all)
    bridge.frame_recorder = refresh_tee
    bridge.paints.recorders = [paint_tee]
    if args.xvfb:
        window.resize(1600, 1000)

    window.show()
    await session.start()
    bridge.start()
    if not args.no_gc_freeze:  # as the terminal does (app/__main__.py)
        asyncio.get_running_loop().call_later(SETTLE_S, freeze_long_lived)
    lag.start()

    samples: list[dict] = []
    t_start = time.monotonic()
    deadline = t_start + args.minutes * 60.0
    warm_at = t_start + args.warmup * args.minutes * 60.0
    warm: dict | None = None  # frames and time when the steady state began
    last_frames, last_t = 0, t_start
    n_samples = math.ceil(args.minutes * 60.0 / args.sample_s) + 1  # t = 0 included
    model = None
    try:
        while True:
            now = time.monotonic()
            s = proc.sample()
            frames = session.feed.frames
            rate = (frames - last_frames) / (now - last_t) if now > last_t else 0.0
            last_frames, last_t = frames, now
            model = model or model_process(session)
            badge = window.perf_badge.text() if window.status_strip.wanted(window.perf_badge) else ""
            samples.append({"t_s": round(now - t_start, 2), "rss_mb": round(s.rss_bytes / 1e6, 2),
                            "model_rss_mb": _rss_mb(model), "cpu_pct": round(s.cpu_percent, 1),
                            "msgs_per_s": round(rate, 1), "frames": frames, "slow_badge": badge})
            if warm is None and now >= warm_at:
                warm = {"t": now, "frames": frames, "index": len(samples) - 1}
                lag_tee.recorders.append(steady_lag)
                off_tee.recorders.append(steady_off)
                own_tee.recorders.append(steady_own)
                if slow is not None:
                    slow.by_what.clear()  # the steady state's turns only
                refresh_tee.recorders += [steady_refresh, steady_frame]
                paint_tee.recorders += [steady_paint, steady_frame]
            if not args.json:
                print(f"  t={now - t_start:7.1f}s  rss={s.rss_bytes / 1e6:8.1f} MB  cpu={s.cpu_percent:5.1f}%  "
                      f"msgs/s={rate:8.1f}  model={samples[-1]['model_rss_mb']} MB {badge}", file=sys.stderr,
                      flush=True)
            metrics.snapshot_all()  # read at the panel's pace: values reach the 1-minute window's 10 s slots in time
            for rec in (steady_lag, steady_off, steady_own, steady_frame, steady_refresh, steady_paint):
                rec.snapshot("1m")
            if len(samples) >= n_samples:
                break
            next_at = min(deadline, t_start + len(samples) * args.sample_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), max(0.0, next_at - time.monotonic()))
            if stop_event.is_set():
                raise Stopped(f"signal {stop.signum}")  # an Exception: a BaseException would escape into Qt
        elapsed = time.monotonic() - t_start
        slow_turns = slow.top() if slow is not None else None  # before the collections below, which it would count
        if not args.no_gc_freeze:
            gc.unfreeze()  # the cost below is measured as without the freeze
        gc_cost = full_collection_cost()
        feed = session.feed
        subs = getattr(session.bus, "_subs", [])
        steady = samples[warm["index"]:] if warm else samples
        steady_s = (samples[-1]["t_s"] - steady[0]["t_s"]) or elapsed
        stats = session.decisions.stats
        lag_s, off_s, own_s, frame_s, refresh_s, paint_s = (
            r.snapshot("all") for r in (steady_lag, steady_off, steady_own, steady_frame, steady_refresh, steady_paint))
        ms = 1e6
        result = {
            "minutes": args.minutes,
            "mode": "xvfb" if args.xvfb else "offscreen",
            "gc_frozen_after_s": None if args.no_gc_freeze else SETTLE_S,
            "target_msgs_per_s": args.rate,
            "achieved_msgs_per_s": round((samples[-1]["frames"] - steady[0]["frames"]) / steady_s, 1),
            "achieved_msgs_per_s_whole_run": round(feed.frames / elapsed, 1),
            "symbols": n_symbols,
            "sim_trades_per_s_per_symbol": round(cal["trades_per_s"], 3),
            "calibration_msgs_per_trade": round(cal["msgs_per_trade"], 3),
            "calibration_fixed_msgs_per_s": round(cal["fixed_msgs_per_s"], 1),
            "calibration_window_trade_factor": round(cal["window_trade_factor"], 3),
            "start_up_s": round(t_start - calibrated_at, 1),  # calibration assumed START_UP_S
            "loop_lag_p50_ms": round(lag_s.p50 / ms, 2),
            "loop_lag_p99_ms": round(lag_s.p99 / ms, 2),
            "loop_lag_max_ms": round(lag_s.max / ms, 2),
            # The part of each lag the loop's thread was off the CPU (other processes, the X server, the GIL):
            # not the terminal's callbacks (LoopLagProbe).
            "loop_lag_own_p50_ms": round(own_s.p50 / ms, 2),  # the on-CPU part: what the SLOW badge watches
            "loop_lag_own_p99_ms": round(own_s.p99 / ms, 2),
            "loop_lag_off_cpu_p50_ms": round(off_s.p50 / ms, 2),
            "loop_lag_off_cpu_p99_ms": round(off_s.p99 / ms, 2),
            "ui_refresh_p50_ms": round(refresh_s.p50 / ms, 2),
            "ui_refresh_p99_ms": round(refresh_s.p99 / ms, 2),
            "ui_paint_p50_ms": round(paint_s.p50 / ms, 2),
            "ui_paint_p99_ms": round(paint_s.p99 / ms, 2),
            "ui_paints": paint_s.count,
            "ui_frame_p50_ms": round(frame_s.p50 / ms, 2),  # refreshes and paints: every UI turn of the loop
            "ui_frame_p99_ms": round(frame_s.p99 / ms, 2),
            "rss_growth_mb": growth([x["rss_mb"] for x in steady]),
            "model_pid": model.pid if model is not None else None,
            "model_rss_mb_start": next((x["model_rss_mb"] for x in steady if x["model_rss_mb"] is not None), None),
            "model_rss_mb_end": samples[-1]["model_rss_mb"],
            "model_rss_growth_mb": growth([x["model_rss_mb"] for x in steady]),
            "slow_badge_samples": sum(1 for x in steady if x["slow_badge"]),
            "steady_samples": len(steady),
            "frames": feed.frames,
            "events": feed.events,
            "trades_applied": sum(session.market[s].trades for s in session.symbols),
            "feed_state": feed.state.value,
            "rss_start_mb": samples[0]["rss_mb"],
            "rss_end_mb": samples[-1]["rss_mb"],
            "rss_peak_mb": max(x["rss_mb"] for x in samples),
            "rss_slope_mb_per_h": rss_slope_mb_per_hour([x["t_s"] for x in samples],
                                                         [x["rss_mb"] for x in samples], args.warmup),
            "cpu_mean_pct": round(float(np.mean([x["cpu_pct"] for x in samples[1:]] or [0.0])), 1),
            "loop_lag_ns": _snap(metrics.recorder("loop_lag")),
            "ui_frame_ns": _snap(frame_rec),
            "ui_paint_ns": _snap(paint_all),
            "ui_frames_drawn": bridge.frames_drawn,
            "bus_dropped": sum(sub.dropped for sub in subs),
            "bus_dropped_by_subscriber": {sub.name: sub.dropped for sub in subs},
            "bus_high_water": max((sub.high_water for sub in subs), default=0),
            "feed_rejected": feed.rejected_total,
            "feed_duplicates": feed.duplicates,
            "feed_gaps": feed.gap_count,
            "feed_missing_trades": feed.missing_trades,
            "feed_reconnects": feed.reconnects,
            "decisions_by": f"{session.provider.name} (fallback: {session.model_fallback})",
            "decision_requests": stats.requests,
            "decisions_answered": stats.decisions,
            "decision_errors": stats.errors,
            "decisions_per_badge": dict(stats.by_badge),
            "slow_turns": slow_turns,
            **gc_cost,
            "slow_callback_ms": args.slow_callback_ms,
            "open_sockets": open_sockets(),
            "asyncio_tasks": task_count(),
            "record_cost": {k: round(v, 1) for k, v in record_cost.items()},
            "samples": samples,
            "python": platform.python_version(),
            "machine": f"{platform.machine()} {platform.system()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    finally:
        await lag.stop()
        bridge.stop()
        await session.stop()
        window.hide()
        window.deleteLater()
    return result


def _snap(rec) -> dict:
    """Both windows: since start, and the last minute (steady state, start-up left out on runs over a minute)."""
    out = {}
    for window in ("all", "1m"):
        s = rec.snapshot(window)
        out[window] = {"count": s.count, "p50": s.p50, "p95": s.p95, "p99": s.p99, "max": s.max,
                       "mean": round(s.mean)}
    return out


def print_table(r: dict) -> None:
    ms = 1e6
    print(f"\nsoak: {r['minutes']:g} min on the built-in exchange ({r['mode']}), {r['symbols']} symbols, "
          f"{r['date']}, Python {r['python']}, {r['machine']}")
    print("\nRSS over time")
    print(f"{'t (s)':>8} {'RSS (MB)':>9} {'model MB':>9} {'CPU %':>6} {'msgs/s':>9}  SLOW badge")
    for x in r["samples"]:
        model = "-" if x["model_rss_mb"] is None else f"{x['model_rss_mb']:.1f}"
        print(f"{x['t_s']:8.1f} {x['rss_mb']:9.1f} {model:>9} {x['cpu_pct']:6.1f} {x['msgs_per_s']:9.1f}  "
              f"{x['slow_badge']}")
    slope = r["rss_slope_mb_per_h"]
    lag, frame, paint = r["loop_lag_ns"], r["ui_frame_ns"], r["ui_paint_ns"]
    rows = [
        ("target msgs/s", f"{r['target_msgs_per_s']:g} ({r['sim_trades_per_s_per_symbol']:g} trades/s per symbol; "
                          f"calibrated {r['calibration_msgs_per_trade']:g} msgs/trade + "
                          f"{r['calibration_fixed_msgs_per_s']:g} fixed msgs/s; this window trades "
                          f"{r['calibration_window_trade_factor']:g}x the rate setting)"),
        ("achieved msgs/s (steady)", f"{r['achieved_msgs_per_s']:g} "
                                     f"({r['achieved_msgs_per_s'] / r['target_msgs_per_s']:.1%} of target; "
                                     f"whole run {r['achieved_msgs_per_s_whole_run']:g}; "
                                     f"{r['frames']} frames, {r['events']} events)"),
        ("steady loop lag p50/p99/max", f"{r['loop_lag_p50_ms']:.2f} / {r['loop_lag_p99_ms']:.2f} / "
                                        f"{r['loop_lag_max_ms']:.2f} ms"),
        ("steady lag on-CPU p50/p99", f"{r['loop_lag_own_p50_ms']:.2f} / {r['loop_lag_own_p99_ms']:.2f} ms "
                                      "(at most what the terminal's own work made: the SLOW badge's input)"),
        ("steady lag off-CPU p50/p99", f"{r['loop_lag_off_cpu_p50_ms']:.2f} / {r['loop_lag_off_cpu_p99_ms']:.2f} ms "
                                       "(the thread was not running: not the terminal's callbacks)"),
        ("steady UI refresh p50/p99", f"{r['ui_refresh_p50_ms']:.2f} / {r['ui_refresh_p99_ms']:.2f} ms"),
        ("steady UI paint p50/p99", f"{r['ui_paint_p50_ms']:.2f} / {r['ui_paint_p99_ms']:.2f} ms "
                                    f"({r['ui_paints']} paints)"),
        ("steady UI frame p50/p99", f"{r['ui_frame_p50_ms']:.2f} / {r['ui_frame_p99_ms']:.2f} ms"),
        ("RSS start / end / peak", f"{r['rss_start_mb']:.1f} / {r['rss_end_mb']:.1f} / {r['rss_peak_mb']:.1f} MB"),
        ("RSS growth after warm-up", f"{r['rss_growth_mb']} MB"),
        ("RSS slope after warm-up", "n/a (too few samples)" if slope is None else f"{slope:+.1f} MB/h"),
        ("model process RSS", f"pid {r['model_pid']}: {r['model_rss_mb_start']} -> {r['model_rss_mb_end']} MB "
                              f"(growth {r['model_rss_growth_mb']} MB)"),
        ("CPU mean", f"{r['cpu_mean_pct']:.1f} %"),
        *[(f"loop lag p50/p99/max ({w})", f"{lag[w]['p50'] / ms:.2f} / {lag[w]['p99'] / ms:.2f} / "
           f"{lag[w]['max'] / ms:.2f} ms ({lag[w]['count']} samples)") for w in ("all", "1m")],
        *[(f"UI frame p50/p99/max ({w})", f"{frame[w]['p50'] / ms:.2f} / {frame[w]['p99'] / ms:.2f} / "
           f"{frame[w]['max'] / ms:.2f} ms ({frame[w]['count']} ticks)") for w in ("all", "1m")],
        *[(f"UI paint p50/p99/max ({w})", f"{paint[w]['p50'] / ms:.2f} / {paint[w]['p99'] / ms:.2f} / "
           f"{paint[w]['max'] / ms:.2f} ms ({paint[w]['count']} paints)") for w in ("all", "1m")],
        ("UI redraws", f"{r['ui_frames_drawn']}"),
        ("full garbage collection", f"{r['gc_full_collect_ms']} ms over {r['gc_tracked_objects']:,} objects; "
                                    f"{r['gc_full_collect_after_freeze_ms']} ms after gc.freeze()"),
        ("SLOW badge", f"shown in {r['slow_badge_samples']} of {r['steady_samples']} steady samples"),
        ("bus drops", f"{r['bus_dropped']} (high water {r['bus_high_water']})"),
        ("feed rejected / dup / gaps", f"{r['feed_rejected']} / {r['feed_duplicates']} / {r['feed_gaps']} "
                                       f"({r['feed_missing_trades']} trades missing)"),
        ("feed state / reconnects", f"{r['feed_state']} / {r['feed_reconnects']}"),
        ("decisions", f"{r['decisions_by']}: {r['decision_requests']} asked, {r['decisions_answered']} answered, "
                      f"{r['decision_errors']} errors; by badge {r['decisions_per_badge']}"),
        ("sockets / asyncio tasks", f"{r['open_sockets']} / {r['asyncio_tasks']}"),
        ("Recorder.record cost", f"{r['record_cost']['recorder_ns_per_record']:.0f} ns "
                                 f"(HdrHistogram.record_value: "
                                 f"{r['record_cost']['hdrhistogram_ns_per_record_value']:.0f} ns)"),
    ]
    print()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if r["slow_turns"]:
        print(f"\nturns of the loop over {r['slow_callback_ms']:g} ms, by the CPU time they took "
              "(count; wall total / max; CPU total / max, ms)")
        for x in r["slow_turns"]:
            print(f"{x['count']:6d} {x['wall_ms']:9.1f} {x['max_wall_ms']:7.1f} {x['cpu_ms']:9.1f} "
                  f"{x['max_cpu_ms']:7.1f}  {x['what']}")


class Stopped(Exception):
    """The run was asked to stop (Ctrl-C, SIGTERM)."""


class StopRequest:
    """Ctrl-C and SIGTERM end the run cleanly. Raising from the signal handler does not: under Qt the exception
    surfaces inside whatever slot runs at that moment, where PySide prints it and goes on. So the handler asks
    the soak's own loop to stop (it waits on ``event``), and the soak unwinds through its ``finally``: the
    session, the exchange and the model stop, then the display."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handler)

    def bind(self) -> asyncio.Event:
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        if self.signum is not None:
            self.event.set()
        return self.event

    def _handler(self, signum, frame) -> None:
        if self.signum is not None:  # a second one: stop waiting for the clean way
            raise KeyboardInterrupt(f"signal {signum}")
        self.signum = signum
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)


def run(args: argparse.Namespace, tmp: Path, stop: StopRequest) -> dict:
    os.environ.setdefault("QT_API", "pyside6")
    import qasync
    from PySide6 import QtWidgets

    slow = SlowEvents(args.slow_callback_ms) if args.slow_callback_ms > 0 else None
    app = QtWidgets.QApplication.instance() or (
        timing_application(slow) if slow is not None else QtWidgets.QApplication(sys.argv[:1]))
    app.setQuitOnLastWindowClosed(False)
    return qasync.run(soak(args, tmp / "journal.sqlite", slow, stop))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    stop = StopRequest()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        if args.xvfb:
            with x_display(Path(tmp)) as display:
                os.environ["DISPLAY"] = display
                os.environ["QT_QPA_PLATFORM"] = "xcb"
                os.environ.pop("WAYLAND_DISPLAY", None)
                result = run(args, Path(tmp), stop)
        else:
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
            result = run(args, Path(tmp), stop)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Stopped, KeyboardInterrupt) as stopped:
        print(f"soak: stopped ({stopped}); the exchange, the model and the display are down", file=sys.stderr)
        sys.exit(130)
