#!/usr/bin/env python3
"""Chart frame time, offscreen: 100k candles loaded, N visible, a live tick every frame.

Ours: app/ui/chart/items.py (visible slice only, merged bars, vectorised paths, the forming candle apart).
Baseline, in the same run: pyqtgraph's documented candlestick approach, every candle recorded into one QPicture,
which must be re-recorded when the data changes (a live tick) and is replayed whole on every paint.
Each frame = update the data for a tick, then render the plot into an image (what the screen would show).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/bench_chart.py [--frames 200] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import numpy as np
import psutil
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.ui.chart.items import CandlestickItem, LiveCandleItem

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
    x = (1_700_000_000 + np.arange(n) * BAR_S).astype(np.float64)
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
    w.enableAutoRange(False)
    w.show()
    return w


def render(w: QtWidgets.QWidget, image: QtGui.QImage) -> None:
    painter = QtGui.QPainter(image)
    w.render(painter)
    painter.end()


def tick(bars, rng) -> None:
    _x, _o, h, lo, c, v = bars
    c[-1] = c[-1] * (1 + rng.normal(0, 2e-5))
    h[-1] = max(h[-1], c[-1])
    lo[-1] = min(lo[-1], c[-1])
    v[-1] += 0.01


def frames_ours(bars, visible: int, frames: int) -> list[float]:
    x, o, h, lo, c, v = bars
    w = plot_widget(visible, x)
    item, live = CandlestickItem(), LiveCandleItem()
    w.addItem(item)
    w.addItem(live)
    m = len(x) - 1
    item.set_data(x[:m], o[:m], h[:m], lo[:m], c[:m], v[:m], BAR_S, 0)
    lo_, hi_ = lo[-visible:].min(), h[-visible:].max()
    w.setYRange(float(lo_), float(hi_), padding=0.02)
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    rng = np.random.default_rng(3)
    render(w, image)  # warm-up: builds the cached paths once
    out = []
    for _ in range(frames):
        t0 = time.perf_counter_ns()
        tick(bars, rng)
        live.set_bar((float(x[-1]), float(o[-1]), float(h[-1]), float(lo[-1]), float(c[-1]), float(v[-1])), BAR_S)
        render(w, image)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    w.close()
    w.deleteLater()
    return out


def frames_baseline(bars, visible: int, frames: int) -> list[float]:
    x, o, h, lo, c, _v = bars
    w = plot_widget(visible, x)
    item = QPictureCandles()
    w.addItem(item)
    w.setYRange(float(lo[-visible:].min()), float(h[-visible:].max()), padding=0.02)
    image = QtGui.QImage(*SIZE, QtGui.QImage.Format.Format_RGB32)
    rng = np.random.default_rng(3)
    out = []
    for _ in range(frames):
        t0 = time.perf_counter_ns()
        tick(bars, rng)
        item.set_data(x, o, h, lo, c)  # the picture holds every candle: a tick means recording them all again
        render(w, image)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    w.close()
    w.deleteLater()
    return out


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per measurement of ours")
    ap.add_argument("--baseline-frames", type=int, default=8, help="frames of the (slow) baseline")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])  # noqa: F841
    pg.setConfigOptions(antialias=False)
    bars = make_bars(N_BARS)
    res: dict[str, float | str] = {}
    for visible in (500, 5000, 50_000):
        t = frames_ours(bars, visible, args.frames)
        res[f"ours_p50_ms_{visible}"], res[f"ours_p99_ms_{visible}"] = pct(t, 50), pct(t, 99)
    base = frames_baseline(bars, 5000, args.baseline_frames)
    res["baseline_p50_ms"], res["baseline_p99_ms"] = pct(base, 50), pct(base, 99)
    res["ours_p50_ms"], res["ours_p99_ms"] = res["ours_p50_ms_5000"], res["ours_p99_ms_5000"]
    res["speedup"] = res["baseline_p50_ms"] / res["ours_p50_ms"]
    res["memory_100k_mb"] = memory_for_100k()
    res["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"chart frame time, 100k candles, live tick every frame, {SIZE[0]}x{SIZE[1]} offscreen ({res['machine']})")
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    for visible in (500, 5000, 50_000):
        print(f"{f'ours, {visible:,} visible':28}{res[f'ours_p50_ms_{visible}']:>10.2f}"
              f"{res[f'ours_p99_ms_{visible}']:>10.2f}")
    print(f"{'QPicture baseline, 5,000':28}{res['baseline_p50_ms']:>10.1f}{res['baseline_p99_ms']:>10.1f}")
    print(f"speedup at 5,000 visible (p50): {res['speedup']:.0f}x;  memory for 100k candles: "
          f"{res['memory_100k_mb']:.1f} MB above an empty chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
