#!/usr/bin/env python3
"""Chart frame time, offscreen: 100k candles loaded, N visible; a live tick every frame, then a pan every frame.

Ours: app/ui/chart/items.py (merged bars, vectorised paths cached in chunks, the forming candle apart).
Baselines, in the same run:
- pyqtgraph's documented candlestick approach, every candle recorded into one QPicture, which must be re-recorded
  when the data changes (a live tick) and is replayed whole on every paint;
- finplot 1.9.7 (installed for the benchmark only, scripts/bench_peers.py): its live path (``update_data``) and its
  pan (``update_y_zoom`` of the shifted range); it records a QPicture of a window 3x the view.
A tick frame = update the forming bar, then render the plot into an image (what the screen would show).
A pan frame = shift the view's x range by 1-5 % of its width (as a mouse drag does; 20 frames into history, 20 back,
...), fit the y range to the bars in view, render.
Each row checks that the view holds the stated number of bars and that the chart drew that many (an earlier version
let x auto-range draw all 100k bars in every row).
"full chart widget" rows: the terminal's whole ChartWidget (volume, indicators, RSI pane, grid, time axis, last-price
tag) on the same bars, ticked and panned through its own ``refresh``: what a trader's frame costs, for reference.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/bench_chart.py [--frames 200] [--clock cpu] [--json]

``--clock cpu`` times this thread's CPU time: on a machine shared with other work, wall time mostly measures them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import numpy as np
import psutil
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

ROOT = Path(__file__).resolve().parents[1]
# This checkout's app, not the one the venv's editable install points at: run from a git worktree of another
# commit, the script measured the main checkout's chart (a before/after comparison compared a tree with itself).
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
from bench_peers import use_peers  # noqa: E402

from app.ui.chart.items import CandlestickItem, LiveCandleItem, set_y_range  # noqa: E402

N_BARS = 100_000
BAR_S = 60.0
SIZE = (1400, 700)


def make_bars(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0008, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    vol = rng.gamma(2.0, 1.0, n)
    x = (1_699_999_980 + np.arange(n) * BAR_S).astype(np.float64)  # bar starts on minute boundaries
    return x, open_, high, low, close, vol


class QPictureCandles(pg.GraphicsObject):
    """The baseline: all candles recorded once into a QPicture, replayed whole on every paint."""

    def __init__(self) -> None:
        super().__init__()
        self.picture = QtGui.QPicture()

    def set_data(self, x, o, h, lo, c) -> None:
        self.picture = QtGui.QPicture()
        p = QtGui.QPainter(self.picture)
        up, down = pg.mkPen("#26a69a"), pg.mkPen("#ef5350")
        ub, db = pg.mkBrush("#26a69a"), pg.mkBrush("#ef5350")
        w = BAR_S * 0.35
        for xi, oi, hi, li, ci in zip(x.tolist(), o.tolist(), h.tolist(), lo.tolist(), c.tolist(), strict=True):
            rising = ci >= oi
            p.setPen(up if rising else down)
            p.setBrush(ub if rising else db)
            p.drawLine(QtCore.QPointF(xi, li), QtCore.QPointF(xi, hi))
            p.drawRect(QtCore.QRectF(xi - w, oi, w * 2, ci - oi))
        p.end()
        self.prepareGeometryChange()
        self.update()

    def paint(self, p, *args) -> None:
        p.drawPicture(0, 0, self.picture)

    def boundingRect(self) -> QtCore.QRectF:
        return QtCore.QRectF(self.picture.boundingRect())


def plot_widget(visible: int, x) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.resize(*SIZE)
    w.setBackground("#0d1117")
    w.getPlotItem().hideButtons()
    w.setXRange(float(x[-visible]), float(x[-1] + BAR_S), padding=0)
    # x=False, y=False: enableAutoRange(False) reads False as the axis argument and turns x auto-range ON.
    w.enableAutoRange(x=False, y=False)
    w.show()
    return w


def settle() -> None:
    """Each row starts without what earlier rows left: their widgets are destroyed (``deleteLater`` waits for an
    event loop this script does not run, so they stayed alive with their items and cached pixmaps) and Qt's pixmap
    cache (10 MB, shared by every item with a cache mode) is emptied."""
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.DeferredDelete.value)
    QtGui.QPixmapCache.clear()
    gc.collect()


def render(w: QtWidgets.QWidget, image: QtGui.QImage) -> None:
    painter = QtGui.QPainter(image)
    w.render(painter)
    painter.end()


clock = time.perf_counter_ns  # --clock cpu: time.thread_time_ns, this thread's CPU time (a shared machine)


def tick(bars, rng) -> None:
    _x, _o, h, lo, c, v = bars
    c[-1] = c[-1] * (1 + rng.normal(0, 2e-5))
    h[-1] = max(h[-1], c[-1])
    lo[-1] = min(lo[-1], c[-1])
    v[-1] += 0.01


def pan_steps(frames: int, seed: int = 5) -> list[float]:
    """Shifts of the view as a share of its width: 1-5 % a frame, 20 frames into history, then 20 back, ..."""
    rng = np.random.default_rng(seed)
    return [float(rng.uniform(0.01, 0.05)) * (-1 if (i // 20) % 2 == 0 else 1) for i in range(frames)]


def bars_in_view(x, x0: float, x1: float) -> int:
    return int(np.searchsorted(x, x1, side="left") - np.searchsorted(x, x0, side="left"))


def fit_y(w: pg.PlotWidget, x, lo, h) -> None:
    """The view's y range to the bars in it, as the chart does after a pan (app/ui/chart/chart_widget.py _fit_y)."""
    (x0, x1), _ = w.getViewBox().viewRange()
    i0 = int(np.searchsorted(x, x0 - BAR_S, side="left"))
    i1 = int(np.searchsorted(x, x1, side="right"))
    lo_, hi_ = float(lo[i0:i1].min()), float(h[i0:i1].max())
    pad = (hi_ - lo_) * 0.06
    set_y_range(w.getViewBox(), lo_ - pad, hi_ + pad)


def check_drawn(label: str, x, w: pg.PlotWidget, visible: int, drawn: int, merge: int) -> None:
    """The row measures what it says: the view holds ``visible`` bars and the chart drew them (merged k to one)."""
    (x0, x1), _ = w.getViewBox().viewRange()
    in_view = bars_in_view(x, x0, x1)
    assert abs(in_view - visible) <= 1, f"{label}: {in_view} bars in view, not {visible}"
    expect = in_view / merge
    assert expect <= drawn <= expect + 2 + 4 / merge, f"{label}: drew {drawn} candles for {in_view} bars (k={merge})"


def frames_ours(bars, visible: int, frames: int) -> tuple[list[float], list[float], dict]:
    settle()
    x, o, h, lo, c, v = bars
    w = plot_widget(visible, x)
    item, live = CandlestickItem(), LiveCandleItem()
    w.addItem(item)
    w.addItem(live)
    m = len(x) - 1
    item.set_data(x[:m], o[:m], h[:m], lo[:m], c[:m], v[:m], BAR_S, 0)
    fit_y(w, x, lo, h)
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    rng = np.random.default_rng(3)
    render(w, image)  # warm-up: builds the cached paths once
    k = item.merge_factor(0, m)
    check_drawn(f"ours, {visible} visible", x, w, visible, item.drawn_bars, k)
    drawn = {"visible": visible, "drawn_candles": item.drawn_bars, "merge": k}
    ticks = []
    for _ in range(frames):
        t0 = clock()
        tick(bars, rng)
        live.set_bar((float(x[-1]), float(o[-1]), float(h[-1]), float(lo[-1]), float(c[-1]), float(v[-1])), BAR_S)
        render(w, image)
        ticks.append((clock() - t0) / 1e6)
    built = getattr(item, "chunks_built", 0)  # (absent before the chunked cache: a before/after run)
    pans = timed_pans(w, x, lo, h, image, frames)
    check_drawn(f"ours pan, {visible} visible", x, w, visible, item.drawn_bars, k)
    drawn["chunks_built_pan"] = getattr(item, "chunks_built", 0) - built
    w.close()
    w.deleteLater()
    return ticks, pans, drawn


def timed_pans(w, x, lo, h, image, frames: int) -> list[float]:
    """Times each pan of the plot (the view shifted by ``pan_steps``, y refitted, rendered), in ms."""
    pans = []
    vb = w.getViewBox()
    for share in pan_steps(frames):
        t0 = clock()
        (x0, x1), _ = vb.viewRange()
        d = (x1 - x0) * share
        vb.setXRange(x0 + d, x1 + d, padding=0)
        fit_y(w, x, lo, h)
        render(w, image)
        pans.append((clock() - t0) / 1e6)
    return pans


def frames_baseline(bars, visible: int, frames: int) -> tuple[list[float], list[float]]:
    settle()
    x, o, h, lo, c, _v = bars
    w = plot_widget(visible, x)
    item = QPictureCandles()
    w.addItem(item)
    fit_y(w, x, lo, h)
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    rng = np.random.default_rng(3)
    ticks = []
    for _ in range(frames):
        t0 = clock()
        tick(bars, rng)
        item.set_data(x, o, h, lo, c)  # the picture holds every candle: a tick means recording them all again
        render(w, image)
        ticks.append((clock() - t0) / 1e6)
    (x0, x1), _ = w.getViewBox().viewRange()
    assert abs(bars_in_view(x, x0, x1) - visible) <= 1, "QPicture baseline: the view does not hold the bars stated"
    pans = timed_pans(w, x, lo, h, image, frames)  # the picture is not re-recorded: a pan replays it whole
    w.close()
    w.deleteLater()
    return ticks, pans


def frames_full_chart(bars, visible: int, frames: int) -> tuple[list[float], list[float], dict]:
    """The terminal's whole chart widget (app/ui/chart/chart_widget.py: candles, volume, EMA 20/50, VWAP, RSI pane,
    last-price tag, grid, time axis) on a CandleSeries of the same bars: a tick is a trade on the forming bar, then
    ``refresh`` and render; a pan is a drag's step (the view translated, the chart told, ``refresh``), then render."""
    from app.market.candles import CandleSeries
    from app.ui.chart.chart_widget import ChartWidget

    settle()
    x, o, h, lo, c, v = bars
    series = CandleSeries("1m", capacity=len(x))
    open_ms = (x * 1000).astype(np.int64)
    series.load_history(open_ms, o, h, lo, c, v, np.ones(len(x), np.int64))
    chart = ChartWidget("1m")
    chart.resize(*SIZE)
    chart.show()
    chart.refresh(series)
    vb = chart.price_plot.vb
    (_x0, x1), _ = vb.viewRange()
    vb.setXRange(x1 - visible * BAR_S, x1, padding=0)
    chart.set_follow(True)  # keeps the width the view has: `visible` bars and the room right of the live one
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    chart.render(image)
    (x0, x1), _ = vb.viewRange()
    in_view = bars_in_view(x, x0, x1)
    # The view is `visible` bars wide; following, its right end is the room kept right of the live bar (4 bars).
    assert abs(in_view - visible) <= 5, f"full chart: {in_view} bars in view, not {visible}"
    k = chart.candles.merge_factor(0, 1)
    drawn = {"drawn_candles": chart.candles.drawn_bars, "merge": k, "in_view": in_view}
    last = series.last()
    rng = np.random.default_rng(3)
    ticks = []
    for i in range(frames):
        t0 = clock()
        series.add_trade(last.open_ms + 1_000 + i, last.close * (1 + rng.normal(0, 2e-5)), 0.01)
        chart.refresh(series)
        chart.render(image)
        ticks.append((clock() - t0) / 1e6)
    pans = []
    for share in pan_steps(frames):
        t0 = clock()
        (x0, x1), _ = vb.viewRange()
        chart._dragging = True  # a drag's step, as ChartWidget._wrap_drag marks it
        vb.translateBy(x=(x1 - x0) * share)
        vb.sigRangeChangedManually.emit(vb.state["mouseEnabled"])
        chart._dragging = False
        chart.refresh(series)
        chart.render(image)
        pans.append((clock() - t0) / 1e6)
    chart.close()
    chart.deleteLater()
    return ticks, pans, drawn


def frames_finplot(bars, visible: int, frames: int) -> tuple[list[float], list[float]] | None:
    """finplot's own paths: ``update_data`` for a tick (its live-update API), ``update_y_zoom`` for a pan (what its
    keyboard pan calls; a mouse drag pans with pyqtgraph and fits y at the end). x is the bar index in finplot."""
    if not use_peers():
        return None
    settle()
    import finplot as fplt
    import pandas as pd

    x, o, h, lo, c, _v = bars
    df = pd.DataFrame({"time": (x * 1000).astype("int64"), "open": o.copy(), "close": c.copy(), "high": h.copy(),
                       "low": lo.copy()})
    fplt.display_timezone = dt.UTC
    ax = fplt.create_plot("bench", init_zoom_periods=visible, maximize=False)
    win = ax.vb.win
    item = fplt.candlestick_ochl(df, ax=ax)
    fplt.show(qt_exec=False)
    win.resize(*SIZE)
    QtWidgets.QApplication.processEvents()
    n = len(df)
    ax.vb.update_y_zoom(n - visible, n)
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    render(win, image)
    tr = ax.vb.targetRect()
    in_view = int(np.floor(tr.right()) - np.ceil(tr.left()) + 1)
    assert abs(in_view - visible) <= 2, f"finplot: {in_view} bars in view, not {visible}"
    rng = np.random.default_rng(3)
    last = n - 1
    ticks = []
    for _ in range(frames):
        t0 = clock()
        close = float(df.at[last, "close"]) * (1 + rng.normal(0, 2e-5))
        df.at[last, "close"] = close
        df.at[last, "high"] = max(float(df.at[last, "high"]), close)
        df.at[last, "low"] = min(float(df.at[last, "low"]), close)
        item.update_data(df)
        render(win, image)
        ticks.append((clock() - t0) / 1e6)
    pans = []
    for share in pan_steps(frames):
        t0 = clock()
        tr = ax.vb.targetRect()
        d = tr.width() * share
        ax.vb.update_y_zoom(tr.left() + d, tr.right() + d)
        render(win, image)
        pans.append((clock() - t0) / 1e6)
    win.close()
    win.deleteLater()
    fplt.windows.clear()
    return ticks, pans


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def memory_for_100k() -> float:
    """RSS of a chart holding 100k candles (data + item + a rendered frame) above the same empty chart."""
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    empty = pg.PlotWidget()
    empty.resize(*SIZE)
    empty.addItem(CandlestickItem())
    render(empty, image)
    before = rss_mb()
    bars = make_bars(N_BARS, seed=9)
    x, o, h, lo, c, v = bars
    item = CandlestickItem()
    empty.addItem(item)
    item.set_data(x, o, h, lo, c, v, BAR_S, 1)
    empty.setXRange(float(x[-5000]), float(x[-1]), padding=0)
    render(empty, image)
    after = rss_mb()
    empty.close()
    return after - before


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


VISIBLE = (500, 5000, 50_000)
FULL_VISIBLE = (500, 5000)  # the chart widget itself follows at most 20,000 bars (ChartWidget._apply_follow)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="tick frames and pan frames per measurement of ours")
    ap.add_argument("--baseline-frames", type=int, default=8, help="frames of the (slow) QPicture baseline")
    ap.add_argument("--finplot-frames", type=int, default=60, help="frames of finplot (0: leave it out)")
    ap.add_argument("--full-frames", type=int, default=100, help="frames of the whole chart widget (0: leave out)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time (a quiet machine); cpu: this thread's CPU time, which other processes on "
                         "a busy machine do not inflate (rendering offscreen runs on this thread)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global clock
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # noqa: F841
    pg.setConfigOptions(antialias=False)
    res: dict[str, float | str | None] = {}
    # First, before other measurements free memory this one would reuse (it read 0.0 MB when run last).
    res["memory_100k_mb"] = memory_for_100k()
    drawn = {}
    for visible in VISIBLE:
        ticks, pans, drawn[visible] = frames_ours(make_bars(N_BARS), visible, args.frames)
        res[f"ours_p50_ms_{visible}"], res[f"ours_p99_ms_{visible}"] = pct(ticks, 50), pct(ticks, 99)
        res[f"pan_p50_ms_{visible}"], res[f"pan_p99_ms_{visible}"] = pct(pans, 50), pct(pans, 99)
    for visible in VISIBLE:
        ticks, pans = frames_baseline(make_bars(N_BARS), visible, args.baseline_frames)
        res[f"baseline_p50_ms_{visible}"], res[f"baseline_p99_ms_{visible}"] = pct(ticks, 50), pct(ticks, 99)
        res[f"baseline_pan_p50_ms_{visible}"], res[f"baseline_pan_p99_ms_{visible}"] = pct(pans, 50), pct(pans, 99)
    full = {}
    for visible in FULL_VISIBLE if args.full_frames else ():
        ticks, pans, full[visible] = frames_full_chart(make_bars(N_BARS), visible, args.full_frames)
        res[f"full_chart_tick_p50_ms_{visible}"] = pct(ticks, 50)
        res[f"full_chart_tick_p99_ms_{visible}"] = pct(ticks, 99)
        res[f"full_chart_pan_p50_ms_{visible}"], res[f"full_chart_pan_p99_ms_{visible}"] = pct(pans, 50), pct(pans, 99)
    finplot_note = ""
    for visible in VISIBLE if args.finplot_frames else ():
        out = frames_finplot(make_bars(N_BARS), visible, args.finplot_frames)
        if out is None:
            finplot_note = "finplot unavailable (scripts/bench_peers.py could not install it): its column is left out"
            break
        res[f"finplot_tick_p50_ms_{visible}"], res[f"finplot_tick_p99_ms_{visible}"] = pct(out[0], 50), pct(out[0], 99)
        res[f"finplot_pan_p50_ms_{visible}"], res[f"finplot_pan_p99_ms_{visible}"] = pct(out[1], 50), pct(out[1], 99)
    for name in ("ours_p50_ms", "ours_p99_ms", "pan_p50_ms", "pan_p99_ms", "baseline_p50_ms", "baseline_p99_ms",
                 "baseline_pan_p50_ms", "baseline_pan_p99_ms", "finplot_tick_p50_ms", "finplot_tick_p99_ms",
                 "finplot_pan_p50_ms", "finplot_pan_p99_ms", "full_chart_tick_p50_ms", "full_chart_tick_p99_ms",
                 "full_chart_pan_p50_ms", "full_chart_pan_p99_ms"):
        res[name] = res.get(f"{name}_5000")  # the headline figures: 5,000 visible of 100k (None: peer missing)
    res["speedup"] = res["baseline_p50_ms"] / res["ours_p50_ms"]
    res["drawn_candles_5000"] = drawn[5000]["drawn_candles"]
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    res["clock"] = args.clock
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"chart frame time ({args.clock} clock), 100k candles, {SIZE[0]}x{SIZE[1]} offscreen ({res['machine']})")
    print("tick: the forming bar changes, render; pan: the view moves 1-5 % of its width, y refits, render")
    print(f"{'':30}{'tick p50':>10}{'tick p99':>10}{'pan p50':>10}{'pan p99':>10}   drawn")
    for visible in VISIBLE:
        d = drawn[visible]
        print(f"{f'ours, {visible:,} visible':30}{res[f'ours_p50_ms_{visible}']:>10.2f}"
              f"{res[f'ours_p99_ms_{visible}']:>10.2f}{res[f'pan_p50_ms_{visible}']:>10.2f}"
              f"{res[f'pan_p99_ms_{visible}']:>10.2f}   {d['drawn_candles']:,} candles for {visible:,} bars"
              f" (merged {d['merge']} to 1; {d['chunks_built_pan']} chunks built over {args.frames} pans)")
    for visible in VISIBLE:
        print(f"{f'QPicture baseline, {visible:,}':30}{res[f'baseline_p50_ms_{visible}']:>10.1f}"
              f"{res[f'baseline_p99_ms_{visible}']:>10.1f}{res[f'baseline_pan_p50_ms_{visible}']:>10.1f}"
              f"{res[f'baseline_pan_p99_ms_{visible}']:>10.1f}")
    for visible in FULL_VISIBLE if args.full_frames else ():
        print(f"{f'full chart widget, {visible:,}':30}{res[f'full_chart_tick_p50_ms_{visible}']:>10.2f}"
              f"{res[f'full_chart_tick_p99_ms_{visible}']:>10.2f}{res[f'full_chart_pan_p50_ms_{visible}']:>10.2f}"
              f"{res[f'full_chart_pan_p99_ms_{visible}']:>10.2f}   {full[visible]['drawn_candles']:,} candles for "
              f"{full[visible]['in_view']:,} bars (+ volume, EMA 20/50, VWAP, RSI, grid, time axis)")
    for visible in VISIBLE if not finplot_note and args.finplot_frames else ():
        print(f"{f'finplot 1.9.7, {visible:,}':30}{res[f'finplot_tick_p50_ms_{visible}']:>10.1f}"
              f"{res[f'finplot_tick_p99_ms_{visible}']:>10.1f}{res[f'finplot_pan_p50_ms_{visible}']:>10.1f}"
              f"{res[f'finplot_pan_p99_ms_{visible}']:>10.1f}")
    if finplot_note:
        print(finplot_note)
    print(f"speedup over the QPicture baseline at 5,000 visible (tick p50): {res['speedup']:.0f}x;  memory for 100k "
          f"candles: {res['memory_100k_mb']:.1f} MB above an empty chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
