#!/usr/bin/env python3
"""The refresh cost of the Watchlist, Order book and Trades panels, offscreen, on a real recorded market.

The Binance BTCUSDT capture (``../shared/data/binance-spot-btcusdt-capture``: trades, best bid/offer, depth diffs
after a REST snapshot) is replayed into the terminal's own market state and local book, a refresh every 250 ms of
market time (the terminal's 4 Hz slow refresh). At each refresh every panel's snapshot is built by its view
builder and rendered, then the panel's pending paints are run: the time of the three together is the panel's cost.
The paints are Qt's own (the update requests the render posted, painted into the window's backing store by the event
loop, as on screen), in the terminal's theme (Fusion, its palette and style sheet: a style sheet makes Qt paint each
widget's background), so a panel made of many small widgets pays for each of them here as it does in the window.
After the timed refreshes, two checks that say what the paint column holds: the widgets Qt painted per refresh (an
event filter, in a separate pass: it would slow the timed one) and a whole panel painted at once (``grab()``: what
a dock costs when it is shown, resized or its tab chosen).
The watchlist holds five symbols: BTCUSDT and four copies of its trades at other price scales (the capture has one
symbol). The Orders dock (``Blotter``, its fills made from the capture's trades) is measured the same way in the
same run, as a reference for the noise of the machine.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/bench_panels.py [--refreshes 400] [--json] [--capture PATH]
        [--no-theme]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6 import QtCore, QtWidgets  # noqa: E402

from app.market.adapters import binance  # noqa: E402
from app.market.book import OrderBook  # noqa: E402
from app.market.instruments import Instrument, Instruments  # noqa: E402
from app.market.state import MarketData  # noqa: E402
from app.models import BookUpdate, Fill, Liquidity, Quote, Trade  # noqa: E402
from app.ui.blotter import Blotter  # noqa: E402
from app.ui.main_window import apply_theme  # noqa: E402
from app.ui.order_book import OrderBookPanel  # noqa: E402
from app.ui.tape import TapePanel  # noqa: E402
from app.ui.watchlist import WatchlistPanel  # noqa: E402
from app.view.blotter import blotter_view  # noqa: E402
from app.view.book import book_ladder, tape  # noqa: E402
from app.view.watchlist import PriceMemory, watchlist  # noqa: E402

CAPTURE = ROOT.parent / "shared" / "data" / "binance-spot-btcusdt-capture" / "btcusdt_20240808.gz"
# (symbol, price scale, tick, lot): BTCUSDT as recorded, the others its trades at other price levels
SYMBOLS = (("BTCUSDT", 1.0, "0.01", "0.00001"), ("ETHUSDT", 0.04, "0.01", "0.0001"),
           ("SOLUSDT", 0.0023, "0.01", "0.001"), ("XRPUSDT", 0.0000087, "0.0001", "0.1"),
           ("DOGEUSDT", 0.0000016, "0.00001", "1"))


def instrument(symbol: str, tick: str, lot: str) -> Instrument:
    t, q = Decimal(tick), Decimal(lot)
    return Instrument(symbol, symbol[:-4], "USDT", t, q, q, Decimal(5), -t.as_tuple().exponent,
                      -q.as_tuple().exponent)


def events(path: Path) -> list:
    out: list = []
    with gzip.open(path, "rt") as f:
        for line in f:
            ns, _, raw = line.partition(" ")
            if '"lastUpdateId"' in raw:
                out.append(binance.parse_depth_snapshot(json.loads(raw), "BTCUSDT", int(ns)))
            else:
                out.extend(binance.parse(raw, int(ns)))
    return out


def copies(ev: Trade | Quote) -> list[Trade | Quote]:
    out: list[Trade | Quote] = [ev]
    for symbol, scale, tick, _ in SYMBOLS[1:]:
        places = -Decimal(tick).as_tuple().exponent
        if isinstance(ev, Trade):
            out.append(dataclasses.replace(ev, symbol=symbol, price=round(ev.price * scale, places)))
        else:
            bid = round(ev.bid * scale, places)
            out.append(dataclasses.replace(ev, symbol=symbol, bid=bid,
                                           ask=max(round(ev.ask * scale, places), bid + float(tick))))
    return out


def summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50_ms": round(statistics.median(s), 3), "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))], 3),
            "mean_ms": round(statistics.fmean(s), 3), "n": len(s)}


class PaintCounter(QtCore.QObject):
    """Counts the paint events each panel's widgets receive (the panel itself included)."""

    def __init__(self, panels: dict[str, QtWidgets.QWidget]) -> None:
        super().__init__()
        self.owner = {id(p): n for n, p in panels.items()}
        self.counts = dict.fromkeys(panels, 0)

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QtCore.QEvent.Type.Paint and isinstance(obj, QtWidgets.QWidget):
            w = obj
            while w is not None:
                name = self.owner.get(id(w))
                if name is not None:
                    self.counts[name] += 1
                    break
                w = w.parentWidget()
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refreshes", type=int, default=400, help="refreshes measured (250 ms of market time each)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--capture", type=Path, default=CAPTURE, help="the recorded market (default: the shared one)")
    ap.add_argument("--no-theme", action="store_true", help="Qt's default look instead of the terminal's theme")
    ap.add_argument("--grabs", type=int, default=40, help="whole-panel paints timed after the refreshes")
    args = ap.parse_args(argv)
    if not args.capture.exists():
        print(f"no capture at {args.capture}", file=sys.stderr)
        return 2
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    if not args.no_theme:
        apply_theme(app, "dark")
    instruments = Instruments.of(*(instrument(s, t, q) for s, _, t, q in SYMBOLS))
    btc = instruments.get("BTCUSDT")
    market = MarketData([s for s, *_ in SYMBOLS])
    book = OrderBook("BTCUSDT")
    memory = PriceMemory()
    panels = {"watchlist": WatchlistPanel(), "order_book": OrderBookPanel(), "tape": TapePanel(),
              "blotter (reference)": Blotter()}
    for p, size in zip(panels.values(), ((330, 160), (300, 520), (260, 600), (900, 300)), strict=True):
        p.resize(*size)
        p.show()
    app.processEvents()
    fills: list[Fill] = []

    def build(name: str, now_ns: int, now_ms: int):
        if name == "watchlist":
            return watchlist(market, instruments, memory=memory, pending_symbols=("ETHUSDT",), now_ns=now_ns)
        if name == "order_book":
            return book_ladder(book, btc)
        if name == "tape":
            m = market["BTCUSDT"]
            return tape(m.recent, btc, first_seq=m.recent_first_seq)
        return blotter_view(working=(), orders=(), fills=fills, positions=(), mark=lambda s: None,
                            instruments=instruments, now_ms=now_ms)

    evs = events(args.capture)
    times: dict[str, list[float]] = {n: [] for n in panels}
    parts: dict[str, list[list[float]]] = {n: [[], [], []] for n in panels}  # build, render, paint
    step_ns = 250_000_000
    i, next_ns = 0, None

    def replay(n: int, timed: bool) -> int:
        """``n`` refreshes of 250 ms of market time each; timed ones are recorded. Returns how many ran."""
        nonlocal i, next_ns
        done = 0
        while i < len(evs) and done < n:
            batch: list = []
            start = evs[i].recv_ns
            next_ns = start + step_ns if next_ns is None else max(next_ns + step_ns, start)
            while i < len(evs) and evs[i].recv_ns < next_ns:
                ev = evs[i]
                i += 1
                if isinstance(ev, BookUpdate):
                    book.apply(ev)
                elif isinstance(ev, Trade | Quote):
                    batch.extend(copies(ev))
                    if isinstance(ev, Trade) and ev.trade_id % 50 == 0:
                        fills.append(Fill(f"F{ev.trade_id}", f"O{ev.trade_id}", ev.symbol, ev.side,
                                          Decimal(repr(ev.qty)), Decimal(repr(ev.price)), Decimal(0),
                                          Liquidity.TAKER, ev.exchange_ms))
            market.apply(batch)
            done += 1
            for name in panels:
                t0 = time.perf_counter()
                snapshot = build(name, next_ns, market.last_exchange_ms)
                t1 = time.perf_counter()
                panels[name].render(snapshot)
                t2 = time.perf_counter()
                app.processEvents()
                t3 = time.perf_counter()
                if timed:
                    times[name].append((t3 - t0) * 1000)
                    for k, (a, b) in enumerate(((t0, t1), (t1, t2), (t2, t3))):
                        parts[name][k].append((b - a) * 1000)
        return done

    replay(20, timed=False)  # warm-up
    replay(args.refreshes, timed=True)
    counter = PaintCounter(panels)
    app.installEventFilter(counter)
    counted = replay(50, timed=False)
    app.removeEventFilter(counter)
    grabs: dict[str, list[float]] = {n: [] for n in panels}
    for _ in range(args.grabs):
        for name, p in panels.items():
            t0 = time.perf_counter()
            p.grab()
            grabs[name].append((time.perf_counter() - t0) * 1000)
    res = {"machine": f"{platform.node()} {platform.python_version()} {os.cpu_count()} cpus",
           "refreshes": len(times["tape"]), "theme": not args.no_theme, "panels": {}}
    for n, v in times.items():
        res["panels"][n] = {**summary(v), **{f"{part}_p50_ms": summary(parts[n][k])["p50_ms"]
                                             for k, part in enumerate(("build", "render", "paint"))},
                            "paint_p99_ms": summary(parts[n][2])["p99_ms"],
                            "widgets_painted_per_refresh": round(counter.counts[n] / max(1, counted), 1),
                            "whole_panel_paint_p50_ms": summary(grabs[n])["p50_ms"] if grabs[n] else None}
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"snapshot + render + paint per refresh, ms ({res['refreshes']} refreshes, {res['machine']}, "
              f"{'the terminal theme' if res['theme'] else 'no theme'})")
        for n, s in res["panels"].items():
            print(f"  {n:20s} p50 {s['p50_ms']:7.3f}  p99 {s['p99_ms']:7.3f}  mean {s['mean_ms']:7.3f}   (p50 build "
                  f"{s['build_p50_ms']:.3f} · render {s['render_p50_ms']:.3f} · paint {s['paint_p50_ms']:.3f}; "
                  f"{s['widgets_painted_per_refresh']:g} widgets painted a refresh; whole panel "
                  f"{s['whole_panel_paint_p50_ms'] or 0:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
