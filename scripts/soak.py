#!/usr/bin/env python3
"""Soak test: the real terminal (Session + MainWindow on a qasync loop, offscreen) on the built-in exchange at a
chosen message rate for N minutes. Reports memory over time and its slope after warm-up, event-loop lag, UI frame
time and every feed drop.

    .venv/bin/python scripts/soak.py --minutes 2 --rate 2000 [--sample-s 5] [--json]

In-process on purpose: the frame time is what the UI bridge records for each of its refreshes (chart, panels,
performance panel), and the loop lag is measured by a probe task on the same loop as everything else. The built-in
exchange runs in its own process, as in the terminal; RSS is the terminal's.

Messages per trade are not a constant on the built-in
exchange: per symbol it sends depth diffs every 100 ms and a kline every second whatever the trade rate, plus a
trade and (when the top of book moves) a bookTicker per trade. So the script calibrates first: it runs the
synthetic market's own generator on a virtual clock at two trade rates (under a second of CPU), fits
msgs/s = a * trades/s + b per symbol, and solves for the trade rate that gives ``--rate`` msgs/s over all symbols.
The achieved rate (feed frames over wall time) is reported beside the target. RSS slope: least squares over the samples
after the first 20 % of the run (``--warmup``), in MB per hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))



def calibrate(symbol: str, seconds: float = 20.0) -> tuple[float, float]:
    """(a, b) in msgs/s = a * trades/s + b for one symbol of the built-in exchange, from its generator run on a
    virtual clock in 25 ms steps (the server's tick) over the streams the terminal subscribes to."""
    from app.market.adapters import binance
    from app.market.sim.markets import TICK_S, market_for

    def msgs_per_s(trades_per_s: float) -> float:
        market = market_for(symbol, trades_per_s, seed=1)
        wanted = set(binance.streams_for(symbol))
        t0, step = time.time_ns() // 1_000_000, int(TICK_S * 1000)
        n = sum(len(market.advance(t0 + step * k, wanted)) for k in range(1, int(seconds * 1000 / step) + 1))
        return n / seconds

    lo, hi = 50.0, 400.0
    y_lo, y_hi = msgs_per_s(lo), msgs_per_s(hi)
    a = (y_hi - y_lo) / (hi - lo)
    return a, y_lo - a * lo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    p.add_argument("--rate", type=float, default=2000.0, help="target feed messages per second (default 2000)")
    p.add_argument("--symbols", default="", help="symbols on the built-in exchange (default: its five)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of the run left out of the slope (0.2)")
    p.add_argument("--decisions", choices=("local", "rules"), default=None,
                   help="what proposes: the local model or the offline rules (default: the terminal's default)")
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


async def soak(args: argparse.Namespace, journal: Path) -> dict:
    from app.config import Settings
    from app.perf.metrics import UI_FRAME, Metrics, measure_record_cost
    from app.perf.probes import LoopLagProbe, ProcessProbe, open_sockets, task_count
    from app.session import Session
    from app.ui.log_dock import BufferingHandler
    from app.ui.main_window import MainWindow

    record_cost = measure_record_cost(200_000)  # before the feed starts, on a quiet process
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    probe_settings = Settings(symbols=symbols) if symbols else Settings()
    n_symbols = len(probe_settings.feed_symbols())
    feed_symbols = probe_settings.feed_symbols()
    per_symbol = [calibrate(sym) for sym in feed_symbols]
    a = sum(x[0] for x in per_symbol)  # over all symbols: total msgs/s = a * trades/s (per symbol) + b
    b = sum(x[1] for x in per_symbol)
    trades_per_s = max(0.1, (args.rate - b) / a) if a > 0 else args.rate / 3.0 / n_symbols
    chosen = {"decision_source": args.decisions} if args.decisions else {}
    settings = Settings(symbols=symbols, sim_trades_per_s=trades_per_s, journal_path=journal, **chosen)

    metrics = Metrics()
    lag = LoopLagProbe(metrics.recorder("loop_lag"), interval_s=0.02)
    proc = ProcessProbe(history=100_000)

    session = Session(settings)
    window = MainWindow(session, BufferingHandler())
    bridge = window.bridge
    frame_rec = session.metrics.recorder(UI_FRAME)  # the bridge times every UI refresh (chart, panels, perf)

    window.show()
    await session.start()
    bridge.start()
    lag.start()

    samples: list[dict] = []
    t_start = time.monotonic()
    deadline = t_start + args.minutes * 60.0
    last_frames, last_t = 0, t_start
    n_samples = math.ceil(args.minutes * 60.0 / args.sample_s) + 1  # t = 0 included
    try:
        while True:
            now = time.monotonic()
            s = proc.sample()
            frames = session.feed.frames
            rate = (frames - last_frames) / (now - last_t) if now > last_t else 0.0
            last_frames, last_t = frames, now
            samples.append({"t_s": round(now - t_start, 2), "rss_mb": round(s.rss_bytes / 1e6, 2),
                            "cpu_pct": round(s.cpu_percent, 1), "msgs_per_s": round(rate, 1), "frames": frames})
            if not args.json:
                print(f"  t={now - t_start:7.1f}s  rss={s.rss_bytes / 1e6:8.1f} MB  cpu={s.cpu_percent:5.1f}%  "
                      f"msgs/s={rate:8.1f}", file=sys.stderr, flush=True)
            metrics.snapshot_all()  # read at the panel's pace: values reach the 1-minute window's 10 s slots in time
            if len(samples) >= n_samples:
                break
            next_at = min(deadline, t_start + len(samples) * args.sample_s)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        elapsed = time.monotonic() - t_start
        feed = session.feed
        subs = getattr(session.bus, "_subs", [])
        result = {
            "minutes": args.minutes,
            "target_msgs_per_s": args.rate,
            "symbols": n_symbols,
            "sim_trades_per_s_per_symbol": round(trades_per_s, 3),
            "calibration_msgs_per_trade": round(a / n_symbols, 3),
            "calibration_fixed_msgs_per_s": round(b, 1),
            "achieved_msgs_per_s": round(feed.frames / elapsed, 1),
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
            "decisions_per_badge": dict(session.decisions.stats.by_badge),
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
    print(f"\nsoak: {r['minutes']:g} min on the built-in exchange, {r['symbols']} symbols, {r['date']}, "
          f"Python {r['python']}, {r['machine']}")
    print("\nRSS over time")
    print(f"{'t (s)':>8} {'RSS (MB)':>9} {'CPU %':>6} {'msgs/s':>9}")
    for x in r["samples"]:
        print(f"{x['t_s']:8.1f} {x['rss_mb']:9.1f} {x['cpu_pct']:6.1f} {x['msgs_per_s']:9.1f}")
    slope = r["rss_slope_mb_per_h"]
    lag, frame = r["loop_lag_ns"], r["ui_frame_ns"]
    rows = [
        ("target msgs/s", f"{r['target_msgs_per_s']:g} ({r['sim_trades_per_s_per_symbol']:g} trades/s per symbol; "
                          f"calibrated {r['calibration_msgs_per_trade']:g} msgs/trade + "
                          f"{r['calibration_fixed_msgs_per_s']:g} fixed msgs/s)"),
        ("achieved msgs/s", f"{r['achieved_msgs_per_s']:g} ({r['frames']} frames, {r['events']} events)"),
        ("RSS start / end / peak", f"{r['rss_start_mb']:.1f} / {r['rss_end_mb']:.1f} / {r['rss_peak_mb']:.1f} MB"),
        ("RSS slope after warm-up", "n/a (too few samples)" if slope is None else f"{slope:+.1f} MB/h"),
        ("CPU mean", f"{r['cpu_mean_pct']:.1f} %"),
        *[(f"loop lag p50/p99/max ({w})", f"{lag[w]['p50'] / ms:.2f} / {lag[w]['p99'] / ms:.2f} / "
           f"{lag[w]['max'] / ms:.2f} ms ({lag[w]['count']} samples)") for w in ("all", "1m")],
        *[(f"UI frame p50/p99/max ({w})", f"{frame[w]['p50'] / ms:.2f} / {frame[w]['p99'] / ms:.2f} / "
           f"{frame[w]['max'] / ms:.2f} ms ({frame[w]['count']} ticks)") for w in ("all", "1m")],
        ("UI redraws", f"{r['ui_frames_drawn']}"),
        ("bus drops", f"{r['bus_dropped']} (high water {r['bus_high_water']})"),
        ("feed rejected / dup / gaps", f"{r['feed_rejected']} / {r['feed_duplicates']} / {r['feed_gaps']} "
                                       f"({r['feed_missing_trades']} trades missing)"),
        ("feed state / reconnects", f"{r['feed_state']} / {r['feed_reconnects']}"),
        ("decisions", f"{r['decisions_by']}: {r['decisions_per_badge']}"),
        ("sockets / asyncio tasks", f"{r['open_sockets']} / {r['asyncio_tasks']}"),
        ("Recorder.record cost", f"{r['record_cost']['recorder_ns_per_record']:.0f} ns "
                                 f"(HdrHistogram.record_value: "
                                 f"{r['record_cost']['hdrhistogram_ns_per_record_value']:.0f} ns)"),
    ]
    print()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_API", "pyside6")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    import qasync
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = qasync.run(soak(args, Path(tmp) / "journal.sqlite"))
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
