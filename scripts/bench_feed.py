#!/usr/bin/env python3
"""Feed pipeline on the real BTCUSDT capture: bare websockets receive rate vs the full pipeline, latency, memory.

A loopback WebSocket server in a separate process (multiprocessing, spawn) serves the recorded frames of the
real Binance capture (../shared/data, both days as one tape; ``--repeat`` plays it several times with trade,
update ids and times shifted so every pass is new market data). The frames are encoded once, up front, so the
server costs almost nothing per message: it either blasts them as fast as the socket takes them or offers them
at a fixed rate. Measured in this one process, in one run:

(a) bare: a websockets client that only counts frames: the physical limit of a Python websockets reader;
(b) pipeline: FeedConnection -> binance.parse -> trade-id checks -> EventBus -> a consumer task applying
    MarketData (candles for every timeframe) and an OrderBook; ratio = b / a;
(c) receive-to-subscriber latency at fixed offered rates: ``recv_ns`` is stamped by FeedConnection on receipt,
    the consumer stamps ``perf_counter_ns`` when its batch arrives (and again once it is applied);
(d) RSS (psutil) sampled every 10 ms: peak, and after each phase.

    .venv/bin/python scripts/bench_feed.py [--data FILE ...] [--repeat 3] [--rates 1000,5000,20000]
                                           [--seconds 5] [--json] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAPTURE = ROOT.parent / "shared" / "data" / "binance-spot-btcusdt-capture"
DEFAULT_DATA = [CAPTURE / "btcusdt_20240808.gz", CAPTURE / "btcusdt_20240809.gz"]
SYMBOL = "BTCUSDT"


# ----------------------------------------------------------------------------------------------- server process


def _ws_frame(payload: bytes) -> bytes:
    """An unmasked text frame (server to client), RFC 6455 5.2."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def _load_tape(paths: list[Path], repeat: int) -> list[bytes]:
    """The capture, then ``repeat - 1`` more passes that continue it: trade ids, book update ids and times are shifted
    by the tape's own span, so each pass follows the last without a gap in ids or a jump in time (the terminal would
    rightly reject a jump as a gap, an implausible time or a stale book)."""
    import orjson

    from app.market.recording import iter_frames

    base = [raw for path in paths for _, raw in iter_frames(path)]
    tape = list(base)
    if repeat <= 1:
        return tape
    spans = _spans([orjson.loads(r) for r in base])
    for k in range(1, repeat):
        for raw in base:
            msg = orjson.loads(raw)
            d = msg.get("data", msg)
            for keys, span in spans:
                for key in keys:
                    if isinstance(d.get(key), int) and not isinstance(d.get(key), bool):
                        d[key] += k * span
            tape.append(orjson.dumps(msg))
    return tape


def _spans(msgs: list[dict]) -> list[tuple[tuple[str, ...], int]]:
    """Per family of fields, how far one pass of the tape reaches (last - first + 1)."""

    def span(keys: tuple[str, ...]) -> int:
        values = [d[k] for m in msgs for d in [m.get("data", m)] for k in keys
                  if isinstance(d.get(k), int) and not isinstance(d.get(k), bool)]
        return max(values) - min(values) + 1 if values else 0

    return [(("t",), span(("t",))), (("a",), span(("a",))), (("U", "u", "lastUpdateId"), span(("U", "u"))),
            (("E", "T"), span(("E", "T")))]


def _serve(paths: list[str], repeat: int, ready: mp.Queue) -> None:  # type: ignore[type-arg]
    asyncio.run(_serve_async([Path(p) for p in paths], repeat, ready))


async def _serve_async(paths: list[Path], repeat: int, ready: mp.Queue) -> None:  # type: ignore[type-arg]
    from websockets.asyncio.server import serve

    tape = _load_tape(paths, repeat)
    frames = [_ws_frame(p) for p in tape]

    async def handler(ws) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        transport = ws.transport
        if "rate" in query:
            rate, n = float(query["rate"][0]), int(query["n"][0])
            t0, sent = time.perf_counter(), 0
            while sent < n:
                due = min(n, int((time.perf_counter() - t0) * rate) + 1)
                if due > sent:
                    transport.write(b"".join(frames[i % len(frames)] for i in range(sent, due)))
                    sent = due
                await asyncio.sleep(0.0002)
        else:
            chunk: list[bytes] = []
            size = 0
            for f in frames:
                chunk.append(f)
                size += len(f)
                if size >= 1 << 18:
                    transport.write(b"".join(chunk))
                    chunk, size = [], 0
                    while transport.get_write_buffer_size() > 1 << 20:
                        await asyncio.sleep(0.0002)
            transport.write(b"".join(chunk))
        while transport.get_write_buffer_size():
            await asyncio.sleep(0.001)
        await ws.wait_closed()  # the client closes when it has counted everything

    async with serve(handler, "127.0.0.1", 0, ping_interval=None, compression=None, max_size=None) as server:
        ready.put((server.sockets[0].getsockname()[1], len(tape)))
        await asyncio.Future()


# ----------------------------------------------------------------------------------------------- client side


class RssSampler:
    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = self.now()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._proc.memory_info().rss / 2**20

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def bare(url: str, n: int) -> float:
    from websockets.asyncio.client import connect

    count = 0
    first = last = 0
    async with connect(url, max_size=1 << 23, compression=None, ping_interval=None, max_queue=1024) as ws:
        async for _ in ws:
            count += 1
            if count == 1:
                first = time.perf_counter_ns()
            elif count == n:
                last = time.perf_counter_ns()
                break
    return (n - 1) / ((last - first) / 1e9)


class Consumer:
    """What the session's market task does with a batch: candles for every timeframe, and the order book."""

    def __init__(self, sub, record_latency: bool, metrics=None) -> None:
        from app.market.book import OrderBook
        from app.market.state import MarketData

        self.sub = sub
        self.market = MarketData([SYMBOL])
        self.book = OrderBook(SYMBOL)
        self.events = 0
        self.busy = False
        self.last_done_ns = 0
        self.record = record_latency
        self.to_subscriber: list[np.ndarray] = []
        self.to_applied: list[np.ndarray] = []
        # With metrics: the same per-event recording the session does (receipt -> bus, and candle update time).
        self.metrics = metrics
        if metrics is not None:
            from app.perf.metrics import CANDLE_UPDATE, RECEIVE_TO_BUS

            self.to_bus_rec = metrics.recorder(RECEIVE_TO_BUS)
            self.candle_rec = metrics.recorder(CANDLE_UPDATE)

    async def run(self) -> None:
        from app.models import BookUpdate

        sub, book = self.sub, self.book
        while True:
            batch = await sub.next_batch()
            got_ns = time.perf_counter_ns()
            self.busy = True
            if self.metrics is not None:
                rec = self.to_bus_rec.record
                for ev in batch:
                    rec(got_ns - ev.recv_ns)
            self.market.apply(batch)
            if self.metrics is not None:
                self.candle_rec.record(time.perf_counter_ns() - got_ns)
            for ev in batch:
                if ev.__class__ is BookUpdate:
                    book.apply(ev)
            done_ns = time.perf_counter_ns()
            if self.record:
                recv = np.fromiter((ev.recv_ns for ev in batch), dtype=np.int64, count=len(batch))
                self.to_subscriber.append(got_ns - recv)
                self.to_applied.append(done_ns - recv)
            self.events += len(batch)
            self.last_done_ns = done_ns
            self.busy = False


async def pipeline(url: str, n: int, record_latency: bool = False, timeout: float = 600.0, metrics=None):
    from app.market.adapters import binance
    from app.market.bus import EventBus
    from app.market.connection import FeedConnection

    bus = EventBus()
    sub = bus.subscribe("market", maxlen=200_000)
    consumer = Consumer(sub, record_latency, metrics)
    conn = FeedConnection(url, binance, bus.publish, stale_after_s=30.0)
    tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(conn.run())]
    deadline = time.monotonic() + timeout
    try:
        while not (conn.stats.frames >= n and sub.depth == 0 and not consumer.busy):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline got {conn.stats.frames} of {n} frames")
            await asyncio.sleep(0.001)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return conn, bus, sub, consumer


def _pct(values: list[np.ndarray]) -> dict[str, float]:
    a = np.concatenate(values) / 1e6 if values else np.zeros(1)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
            "samples": int(a.size)}


async def run(args: argparse.Namespace) -> dict:
    import psutil
    import websockets

    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    server = ctx.Process(target=_serve, args=([str(p) for p in args.data], args.repeat, ready), daemon=True)
    server.start()
    try:
        port, n = await asyncio.to_thread(ready.get, True, 300)
        base = f"ws://127.0.0.1:{port}"
        rss = RssSampler()
        rss.start()
        out: dict = {"frames": n, "rss_after_mb": {"start": round(rss.now(), 1)}}

        bare_rates = [await bare(f"{base}/blast", n) for _ in range(args.runs)]
        out["bare_msgs_per_s"] = float(np.median(bare_rates))
        out["rss_after_mb"]["bare"] = round(rss.now(), 1)

        pipe_rates = []
        profiler = None
        for i in range(args.runs):
            if args.profile and i == args.runs - 1:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            conn, bus, sub, consumer = await pipeline(f"{base}/blast", n)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            pipe_rates.append(n / ((consumer.last_done_ns - conn.stats.connected_since_ns) / 1e9))
        out["pipeline_msgs_per_s"] = float(np.median(pipe_rates))
        out["ratio"] = out["pipeline_msgs_per_s"] / out["bare_msgs_per_s"]
        # The same pipeline with the performance recorders on, interleaved with plain runs so drift hits both.
        from app.perf.metrics import Metrics

        plain, instrumented = [], []
        for _ in range(args.runs):
            c, _b, _s, cons = await pipeline(f"{base}/blast", n)
            plain.append(n / ((cons.last_done_ns - c.stats.connected_since_ns) / 1e9))
            metrics = Metrics()
            c, _b, _s, cons = await pipeline(f"{base}/blast", n, metrics=metrics)
            instrumented.append(n / ((cons.last_done_ns - c.stats.connected_since_ns) / 1e9))
        out["plain_msgs_per_s"] = float(np.median(plain))
        out["metrics_msgs_per_s"] = float(np.median(instrumented))
        out["metrics_overhead_pct"] = 100.0 * (1.0 - out["metrics_msgs_per_s"] / out["plain_msgs_per_s"])
        out["metrics_recorded"] = metrics.recorder("receive_to_bus").snapshot("all").count
        s = conn.stats
        out["pipeline_counts"] = {
            "received": s.received, "parsed": s.parsed, "rejected": s.rejected_total, "events": s.events,
            "duplicates": s.duplicates, "gaps": s.gap_count, "published": bus.published_total,
            "delivered": sub.delivered, "conflated": sub.conflated, "dropped": sub.dropped,
            "queue_high_water": sub.high_water, "book_valid": consumer.book.is_valid,
        }
        out["rss_after_mb"]["pipeline"] = round(rss.now(), 1)

        out["latency"] = {}
        for rate in args.rates:
            want = int(rate * args.seconds)
            t0 = time.perf_counter()
            conn, bus, sub, consumer = await pipeline(f"{base}/rate?rate={rate}&n={want}", want, record_latency=True)
            elapsed = (consumer.last_done_ns - conn.stats.connected_since_ns) / 1e9
            out["latency"][str(rate)] = {
                "offered_msgs_per_s": rate,
                "achieved_msgs_per_s": round(want / elapsed, 1),
                "wall_s": round(time.perf_counter() - t0, 2),
                "to_subscriber": _pct(consumer.to_subscriber),
                "to_applied": _pct(consumer.to_applied),
            }
            out["rss_after_mb"][f"latency_{rate}"] = round(rss.now(), 1)
        rss.stop()
        out["p99_ms_at_5k"] = out["latency"].get("5000", {}).get("to_subscriber", {}).get("p99_ms")
        out["peak_rss_mb"] = round(rss.peak, 1)
        out["ru_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["machine"] = {
            "python": platform.python_version(), "websockets": websockets.__version__,
            "cpu": platform.processor() or platform.machine(), "cpus": psutil.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
        }
        return out
    finally:
        server.terminate()
        server.join(5)


def print_table(r: dict) -> None:
    print(f"feed benchmark: {r['frames']:,} frames of the real BTCUSDT capture; python {r['machine']['python']}, "
          f"websockets {r['machine']['websockets']}, {r['machine']['cpus']} cpus, {r['machine']['date']}")
    print()
    print(f"{'throughput':<44}{'msgs/s':>12}")
    print(f"{'(a) bare websockets receive (count only)':<44}{r['bare_msgs_per_s']:>12,.0f}")
    print(f"{'(b) full pipeline (parse, bus, candles, book)':<44}{r['pipeline_msgs_per_s']:>12,.0f}")
    ok = "met" if r["ratio"] >= 0.6 else "MISSED"
    print(f"{'ratio b/a (target >= 0.6)':<44}{r['ratio']:>12.2f}  {ok}")
    print(f"{'pipeline, recorders off / on':<44}{r['plain_msgs_per_s']:>12,.0f} / {r['metrics_msgs_per_s']:,.0f}"
          f"  overhead {r['metrics_overhead_pct']:.1f}% (target < 3%)")
    print()
    print(f"{'offered':>8} {'achieved':>9} | {'to subscriber p50':>17} {'p99':>7} {'max':>7} | "
          f"{'applied p50':>11} {'p99':>7} {'max':>7}  (ms)")
    for rate, x in r["latency"].items():
        a, b = x["to_subscriber"], x["to_applied"]
        print(f"{int(rate):>8,} {x['achieved_msgs_per_s']:>9,.0f} | {a['p50_ms']:>17.3f} {a['p99_ms']:>7.3f} "
              f"{a['max_ms']:>7.2f} | {b['p50_ms']:>11.3f} {b['p99_ms']:>7.3f} {b['max_ms']:>7.2f}")
    p99 = r["p99_ms_at_5k"]
    if p99 is not None:
        print(f"p99 at 5k msgs/s (target <= 2 ms): {p99:.3f} ms  {'met' if p99 <= 2.0 else 'MISSED'}")
    print()
    print("RSS after each phase (MB): " + ", ".join(f"{k} {v}" for k, v in r["rss_after_mb"].items()))
    print(f"peak RSS {r['peak_rss_mb']} MB (psutil, 10 ms samples); ru_maxrss {r['ru_maxrss_mb']} MB")
    print("pipeline counts: " + ", ".join(f"{k} {v}" for k, v in r["pipeline_counts"].items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA, help="recorded feed files (gzip or plain)")
    p.add_argument("--repeat", type=int, default=3, help="play the tape this many times per throughput run")
    p.add_argument("--runs", type=int, default=3, help="throughput runs; the median is reported")
    p.add_argument("--rates", default="1000,5000,20000", help="offered rates for the latency phase, msgs/s")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each latency phase")
    p.add_argument("--profile", metavar="OUT", help="cProfile the last pipeline run into this file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    args.rates = [int(float(x)) for x in args.rates.split(",") if x]
    missing = [str(d) for d in args.data if not d.exists()]
    if missing:
        print(f"error: recorded data not found: {', '.join(missing)} (../shared/data beside the project)",
              file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
