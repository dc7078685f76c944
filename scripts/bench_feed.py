#!/usr/bin/env python3
"""Feed pipeline on the real BTCUSDT capture: bare websockets receive rate vs the full pipeline, latency, memory.

A loopback WebSocket server in a separate process (multiprocessing, spawn) serves the recorded frames of the
real Binance capture (../shared/data, both days as one tape; ``--repeat`` plays it several times with trade,
update ids and times shifted so every pass is new market data). The frames are encoded once, up front, so the
server costs almost nothing per message: it either blasts them as fast as the socket takes them or offers them
at a fixed rate. Measured in this one process, in one run:

(a) bare: a websockets client that only counts frames: the physical limit of a Python websockets reader;
(b) pipeline: FeedConnection -> binance.parse -> trade-id checks -> EventBus -> a consumer task applying
    MarketData (candles for every timeframe) and an OrderBook per symbol; runs of (a) and (b) alternate, and the
    ratio is the median over the pairs of b / a (each pair sees about the same load on a shared machine);
(c) receive-to-subscriber latency at fixed offered rates: ``recv_ns`` is stamped by FeedConnection on receipt,
    the consumer stamps ``perf_counter_ns`` when its batch arrives (and again once it is applied);
(d) RSS (psutil) sampled every 10 ms: peak, and after each phase;
(e) before all that, in this process without a socket: the parse cost per message kind, ours against cryptofeed
    2.5's own Binance handlers on the same frames (see ``parse_by_kind``), and ``orjson.loads`` alone as the floor.

What the pipeline throughput does *not* do for every event is said beside it: quotes (and exchange candles) are
conflated, so the consumer applies only the newest per symbol of those it had not read yet (``conflated_fraction``
of all events never reach it), while every trade reaches the candles and every depth diff the book. Gaps are counted
twice: in the tape itself (offline, per symbol) and by the pipeline; on a contiguous capture both read 0.

    .venv/bin/python scripts/bench_feed.py [--data FILE ...] [--repeat 3] [--rates 1000,5000,20000]
                                           [--seconds 5] [--json] [--profile OUT.prof] [--parse-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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
    """The capture, then ``repeat - 1`` more passes that continue it: each symbol's trade ids and book update ids
    are shifted by that symbol's own span in one pass, and times by the tape's, so each pass follows the last
    without a gap in any symbol's ids or a jump in time (the terminal would rightly report a jump as a gap, reject an
    implausible time or find the book stale). One shift for all symbols would open a gap per symbol at every seam.
    Only the first pass keeps a REST depth snapshot recorded inline."""
    import orjson

    base = [raw for path in paths for _, raw in iter_frames_of(path)]
    tape = list(base)
    if repeat <= 1:
        return tape
    spans = _spans([orjson.loads(r) for r in base])
    for k in range(1, repeat):
        for raw in base:
            msg = orjson.loads(raw)
            if isinstance(msg, dict) and "lastUpdateId" in msg:
                # A REST snapshot recorded inline is the answer to the recorder's request at the start; replayed in
                # a later pass it would arrive older than the book (its diffs already applied) and break it.
                continue
            tape.append(orjson.dumps(_shifted(msg, spans, k)))
    return tape


def iter_frames_of(path: Path):
    from app.market.recording import iter_frames

    return iter_frames(path)


def _ids_of(d: dict) -> tuple[str, list[tuple[str, str]]]:
    """The symbol a payload belongs to and its id fields as (family, key): trade ids or book update ids."""
    kind = d.get("e")
    if kind == "trade":
        return d.get("s", ""), [("trade", "t")]
    if kind == "aggTrade":
        return d.get("s", ""), [("trade", "a")]
    if kind == "depthUpdate":
        return d.get("s", ""), [("book", "U"), ("book", "u")]
    if kind is None and "lastUpdateId" in d:
        return d.get("s", ""), [("book", "lastUpdateId")]
    if kind is None and "u" in d and "s" in d:  # bookTicker: the book's update id
        return d["s"], [("book", "u")]
    return d.get("s", ""), []


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _spans(msgs: list[dict]) -> dict:
    """How far one pass reaches (last - first + 1): per (symbol, id family), and for exchange times overall. A
    REST snapshot names no symbol: it is the only symbol's when the tape has one."""
    lo: dict[tuple[str, str], int] = {}
    hi: dict[tuple[str, str], int] = {}
    times: list[int] = []
    symbols = set()
    for m in msgs:
        d = m.get("data", m)
        if not isinstance(d, dict):
            continue
        symbol, ids = _ids_of(d)
        if symbol:
            symbols.add(symbol)
        for family, key in ids:
            v = d.get(key)
            # The book's span is its diffs' (a bookTicker's id may run past the last diff's; counting it would open
            # a gap in the diffs at every seam, and the book would wait for the next snapshot).
            if family == "book" and d.get("e") != "depthUpdate":
                continue
            if _int(v) and symbol:
                lo[symbol, family] = min(lo.get((symbol, family), v), v)
                hi[symbol, family] = max(hi.get((symbol, family), v), v)
        times += [d[k] for k in ("E", "T") if _int(d.get(k))]
    ids = {key: hi[key] - lo[key] + 1 for key in lo}
    only = next(iter(symbols)) if len(symbols) == 1 else ""
    return {"ids": ids, "time": (max(times) - min(times) + 1) if times else 0, "only_symbol": only}


def _shifted(msg: dict, spans: dict, k: int) -> dict:
    """``msg`` (changed in place) as pass ``k`` of the tape."""
    d = msg.get("data", msg)
    if not isinstance(d, dict):
        return msg
    symbol, ids = _ids_of(d)
    symbol = symbol or spans["only_symbol"]
    for family, key in ids:
        if _int(d.get(key)):
            d[key] += k * spans["ids"].get((symbol, family), 0)
    for key in ("E", "T"):
        if _int(d.get(key)):
            d[key] += k * spans["time"]
    kline = d.get("k")
    if d.get("e") == "kline" and isinstance(kline, dict):
        for key in ("t", "T"):
            if _int(kline.get(key)):
                kline[key] += k * spans["time"]
        for key in ("f", "L"):
            if _int(kline.get(key)):
                kline[key] += k * spans["ids"].get((symbol, "trade"), 0)
    return msg


def tape_facts(paths: list[Path]) -> dict:
    """What the capture itself holds, read offline: symbols, frames per kind, and the gaps in each symbol's trade
    ids (what the pipeline's gap count should equal on one pass)."""
    import orjson

    symbols: set[str] = set()
    kinds: dict[str, int] = {}
    last: dict[str, int] = {}
    gaps = missing = 0
    for path in paths:
        for _, raw in iter_frames_of(path):
            try:
                m = orjson.loads(raw)
            except orjson.JSONDecodeError:
                kinds["undecodable"] = kinds.get("undecodable", 0) + 1
                continue
            d = m.get("data", m) if isinstance(m, dict) else m
            kind = kind_of(d)
            kinds[kind] = kinds.get(kind, 0) + 1
            if not isinstance(d, dict):
                continue
            if isinstance(d.get("s"), str):
                symbols.add(d["s"])
            tid = d.get("t") if kind == "trade" else d.get("a") if kind == "aggTrade" else None
            if _int(tid):
                prev = last.get(d["s"])
                if prev is not None and tid > prev + 1:
                    gaps += 1
                    missing += tid - prev - 1
                last[d["s"]] = max(tid, prev or tid)
    return {"symbols": sorted(symbols), "kinds": kinds, "trade_gaps": gaps, "missing_trades": missing}


def kind_of(d: object) -> str:
    """A Binance payload's message kind, as the per-kind tables name it."""
    if not isinstance(d, dict):
        return "other"
    kind = d.get("e")
    if kind == "depthUpdate":
        return "depth"
    if isinstance(kind, str):
        return kind
    if "lastUpdateId" in d:
        return "depth_snapshot"
    if "u" in d and "A" in d:
        return "bookTicker"
    return "other"


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


# ----------------------------------------------------------------------------------------------- parse by kind


MAX_NS_PER_TIMING = 300_000_000  # a rare, costly kind (a REST snapshot) is timed over fewer frames


def parse_by_kind(paths: list[Path], min_frames: int = 20_000, repeats: int = 5) -> dict:
    """Per message kind, µs per frame: ours (``binance.parse``; for depth also applying the diff to our OrderBook)
    against cryptofeed 2.5's ``Binance.message_handler`` on the same frames, and ``orjson.loads`` alone.

    Both start from the frame's text (a ``str``, what websockets hands a reader). cryptofeed's feed is built offline
    (its symbol table filled in, never started, no network), its callbacks are no-op coroutines, and each handler
    coroutine is run to completion by hand (it never suspends: a suspension would mean network I/O and is an error).
    What each side does per kind:

    * trade / aggTrade: ours checks and builds a ``Trade`` (floats); cryptofeed builds its ``Trade`` (Decimals).
      cryptofeed subscribes ``aggTrade``, not spot ``trade``: it is handed the capture's trade frames as aggTrade
      frames (``"e"`` renamed, the id ``t`` renamed ``a``: the fields it reads, same values).
    * bookTicker: ours checks and builds a ``Quote``; cryptofeed builds a ``Ticker`` (bid/ask as Decimals).
    * depth: ours parses the diff and applies it to an ``OrderBook`` (id continuity checked, levels set or removed);
      cryptofeed's ``_book`` checks the ids and applies it to its own book (Decimal prices). Both books are seeded
      outside the timing from the capture's REST snapshot (or, without one, empty at the first diff's id) and
      re-seeded before every pass. ``ours_parse_only_us`` is the diff without the book.
    * kline: ours builds a ``Candle``; cryptofeed's ``Candle`` (``candle_closed_only=False`` so it builds every one,
      as ours does, instead of returning early on a bar still forming).
    * depth_snapshot (the REST answer recorded inline): ours only; cryptofeed fetches its snapshots over HTTP.

    Each kind is timed over at least ``min_frames`` frames (its frames passed over as often as needed) or 0.3 s,
    ``repeats`` times alternating ours and cryptofeed; the medians are reported."""
    import statistics

    import orjson

    from app.market.adapters import binance
    from app.market.book import OrderBook

    texts = [raw.decode() if isinstance(raw, bytes) else raw for path in paths for _, raw in iter_frames_of(path)]
    by_kind: dict[str, list[str]] = {}
    snapshots: list[dict] = []
    for text in texts:
        msg = orjson.loads(text)
        d = msg.get("data", msg)
        kind = kind_of(d)
        by_kind.setdefault(kind, []).append(text)
        if kind == "depth_snapshot":
            snapshots.append(d)
    symbols = sorted({orjson.loads(t).get("data", {}).get("s", "") for t in by_kind.get("depth", [])} - {""})
    first_ids: dict[str, int] = {}
    for t in by_kind.get("depth", []):
        d = orjson.loads(t)["data"]
        first_ids.setdefault(d["s"], d["U"] - 1)
    # The recorded snapshot belongs to the tape's one symbol (a REST answer names none).
    snapshot = snapshots[0] if snapshots and len(symbols) == 1 else None

    def our_books() -> dict[str, OrderBook]:
        books = {}
        for sym in symbols:
            book = books[sym] = OrderBook(sym)
            if snapshot is not None:
                book.apply(binance.parse_depth_snapshot(snapshot, sym, 0))
            else:
                book.apply(binance.parse_depth_snapshot({"lastUpdateId": first_ids[sym], "bids": [], "asks": []},
                                                        sym, 0))
        return books

    cf = _cryptofeed(symbols or sorted({orjson.loads(t).get("data", {}).get("s", "") for t in texts} - {""}))

    def time_ours(kind: str, frames: list[str], with_book: bool) -> float:
        parse = binance.parse
        done = elapsed = 0
        while done < min_frames and elapsed < MAX_NS_PER_TIMING:
            if with_book:
                books = our_books()
                t0 = time.perf_counter_ns()
                for text in frames:
                    for ev in parse(text, 0):
                        books[ev.symbol].apply(ev)
            else:
                t0 = time.perf_counter_ns()
                for text in frames:
                    parse(text, 0)
            elapsed += time.perf_counter_ns() - t0
            done += len(frames)
        return elapsed / done / 1e3

    def time_loads(frames: list[str]) -> float:
        loads = orjson.loads
        done = elapsed = 0
        while done < min_frames and elapsed < MAX_NS_PER_TIMING:
            t0 = time.perf_counter_ns()
            for text in frames:
                loads(text)
            elapsed += time.perf_counter_ns() - t0
            done += len(frames)
        return elapsed / done / 1e3

    out: dict[str, dict] = {}
    for kind, frames in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        row: dict = {"frames": len(frames)}
        ours, loads, parse_only, theirs = [], [], [], []
        cf_frames = cf.frames_for(kind, frames) if cf is not None else None
        for _ in range(repeats):
            ours.append(time_ours(kind, frames, with_book=kind == "depth"))
            if kind == "depth":
                parse_only.append(time_ours(kind, frames, with_book=False))
            loads.append(time_loads(frames))
            if cf_frames is not None:
                theirs.append(cf.time(cf_frames, min_frames, snapshot, first_ids))
        row["ours_us"] = statistics.median(ours)
        if parse_only:
            row["ours_parse_only_us"] = statistics.median(parse_only)
        row["orjson_loads_us"] = statistics.median(loads)
        if theirs:
            row["cryptofeed_us"] = statistics.median(theirs)
            row["ratio"] = row["ours_us"] / row["cryptofeed_us"]
        out[kind] = row
    total = sum(r["frames"] for r in out.values())
    return {
        "kinds": out,
        "ours_us_per_frame": sum(r["ours_us"] * r["frames"] for r in out.values()) / total,
        "orjson_loads_us_per_frame": sum(r["orjson_loads_us"] * r["frames"] for r in out.values()) / total,
        "cryptofeed": cf.version if cf is not None else None,
    }


class _CryptofeedBinance:
    """cryptofeed's Binance feed driven offline: ``message_handler`` on frame text, callbacks that do nothing."""

    def __init__(self, symbols: list[str]) -> None:
        import cryptofeed
        from cryptofeed.defines import BINANCE, CANDLES, L2_BOOK, TICKER, TRADES
        from cryptofeed.exchanges.binance import Binance
        from cryptofeed.symbols import Symbols

        async def nothing(obj, receipt_timestamp) -> None:
            return None

        Symbols.set(BINANCE, {s: s for s in symbols}, {})  # what it would fetch from exchangeInfo
        self.feed = Binance(symbols=symbols, channels=[TRADES, TICKER, L2_BOOK, CANDLES], candle_closed_only=False,
                            callbacks={TRADES: nothing, TICKER: nothing, L2_BOOK: nothing, CANDLES: nothing})
        self.version = getattr(cryptofeed, "__version__", "2.5.0")

    def frames_for(self, kind: str, frames: list[str]) -> list[str] | None:
        if kind == "trade":  # see parse_by_kind: spot trade frames as the aggTrade frames cryptofeed reads
            return [f.replace('"e":"trade"', '"e":"aggTrade"', 1).replace('"t":', '"a":', 1) for f in frames]
        if kind in ("aggTrade", "bookTicker", "depth", "kline"):
            return frames
        return None  # depth_snapshot, replies: cryptofeed has no handler for them on the stream

    def seed(self, snapshot: dict | None, first_ids: dict[str, int]) -> None:
        """Its books as its own ``_snapshot`` leaves them (REST answer -> Decimal levels, last update id)."""
        from decimal import Decimal

        from cryptofeed.types import OrderBook

        feed = self.feed
        feed._reset()
        for sym, first in first_ids.items():
            if snapshot is not None:
                bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
                asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
                feed.last_update_id[sym] = snapshot["lastUpdateId"]
            else:
                bids, asks = {}, {}
                feed.last_update_id[sym] = first
            feed._l2_book[sym] = OrderBook(feed.id, sym, max_depth=feed.max_depth, bids=bids, asks=asks)

    def time(self, frames: list[str], min_frames: int, snapshot: dict | None, first_ids: dict[str, int]) -> float:
        handler = self.feed.message_handler
        done = elapsed = 0
        while done < min_frames and elapsed < MAX_NS_PER_TIMING:
            self.seed(snapshot, first_ids)
            t0 = time.perf_counter_ns()
            for text in frames:
                coro = handler(text, None, 0.0)
                try:
                    coro.send(None)
                except StopIteration:
                    continue
                coro.close()
                raise RuntimeError("a cryptofeed handler suspended (it wanted the network): not a parse")
            elapsed += time.perf_counter_ns() - t0
            done += len(frames)
        return elapsed / done / 1e3


def _cryptofeed(symbols: list[str]) -> _CryptofeedBinance | None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_peers import use_peers

    if not use_peers():
        return None
    try:
        return _CryptofeedBinance(symbols)
    except ImportError as exc:
        print(f"cryptofeed unavailable ({exc}): its column is left out", file=sys.stderr)
        return None


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

    def __init__(self, sub, record_latency: bool, metrics=None, symbols: list[str] = (SYMBOL,)) -> None:
        from app.market.book import OrderBook
        from app.market.state import MarketData

        self.sub = sub
        self.market = MarketData(list(symbols))
        self.books = {s: OrderBook(s) for s in symbols}
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

        sub, books = self.sub, self.books
        only = next(iter(books)) if len(books) == 1 else ""
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
                    book = books.get(ev.symbol or only)  # a recorded REST snapshot names no symbol
                    if book is not None:
                        book.apply(ev)
            done_ns = time.perf_counter_ns()
            if self.record:
                recv = np.fromiter((ev.recv_ns for ev in batch), dtype=np.int64, count=len(batch))
                self.to_subscriber.append(got_ns - recv)
                self.to_applied.append(done_ns - recv)
            self.events += len(batch)
            self.last_done_ns = done_ns
            self.busy = False


async def pipeline(url: str, n: int, record_latency: bool = False, timeout: float = 600.0, metrics=None,
                   symbols: list[str] = (SYMBOL,)):
    from app.market.adapters import binance
    from app.market.bus import EventBus
    from app.market.connection import FeedConnection

    bus = EventBus()
    sub = bus.subscribe("market", maxlen=200_000)
    consumer = Consumer(sub, record_latency, metrics, symbols)
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

    facts = tape_facts(args.data)
    symbols = facts["symbols"] or [SYMBOL]
    # In this process before the server starts, so nothing else of the benchmark competes for the CPU.
    parse = parse_by_kind(args.data)
    head = {"data": [p.name for p in args.data], "tape": facts, "parse_by_kind": parse,
            "cryptofeed_ratio_by_kind": {k: r["ratio"] for k, r in parse["kinds"].items() if "ratio" in r}}
    if args.parse_only:
        return {**head, "machine": _machine(psutil, websockets)}
    pipe = functools.partial(pipeline, symbols=symbols)

    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    server = ctx.Process(target=_serve, args=([str(p) for p in args.data], args.repeat, ready), daemon=True)
    server.start()
    try:
        port, n = await asyncio.to_thread(ready.get, True, 300)
        base = f"ws://127.0.0.1:{port}"
        rss = RssSampler()
        rss.start()
        out: dict = {**head, "frames": n, "repeat": args.repeat, "rss_after_mb": {"start": round(rss.now(), 1)}}

        # Bare and pipeline runs alternate and the ratio is the median of each pair's: on a shared machine the load
        # moves between runs, and the two runs of a pair see nearly the same load.
        bare_rates, pipe_rates, pair_ratios = [], [], []
        for i in range(args.runs):
            bare_rates.append(await bare(f"{base}/blast", n))
            if i == 0:
                out["rss_after_mb"]["bare"] = round(rss.now(), 1)
            conn, bus, sub, consumer = await pipe(f"{base}/blast", n)
            pipe_rates.append(n / ((consumer.last_done_ns - conn.stats.connected_since_ns) / 1e9))
            pair_ratios.append(pipe_rates[-1] / bare_rates[-1])
        if args.profile:  # one more run, profiled, counted in no figure (the profiler slows it down)
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            await pipe(f"{base}/blast", n)
            profiler.disable()
            profiler.dump_stats(args.profile)
        out["bare_msgs_per_s"] = float(np.median(bare_rates))
        out["pipeline_msgs_per_s"] = float(np.median(pipe_rates))
        out["ratio"] = float(np.median(pair_ratios))
        out["pair_ratios"] = [round(r, 3) for r in pair_ratios]
        # The same pipeline with the performance recorders on, interleaved with plain runs so drift hits both.
        from app.perf.metrics import Metrics

        plain, instrumented = [], []
        for _ in range(args.runs):
            c, _b, _s, cons = await pipe(f"{base}/blast", n)
            plain.append(n / ((cons.last_done_ns - c.stats.connected_since_ns) / 1e9))
            metrics = Metrics()
            c, _b, _s, cons = await pipe(f"{base}/blast", n, metrics=metrics)
            instrumented.append(n / ((cons.last_done_ns - c.stats.connected_since_ns) / 1e9))
        out["plain_msgs_per_s"] = float(np.median(plain))
        out["metrics_msgs_per_s"] = float(np.median(instrumented))
        out["metrics_overhead_pct"] = 100.0 * (1.0 - out["metrics_msgs_per_s"] / out["plain_msgs_per_s"])
        out["metrics_recorded"] = metrics.recorder("receive_to_bus").snapshot("all").count
        s = conn.stats
        books = consumer.books.values()
        out["pipeline_counts"] = {
            "received": s.received, "parsed": s.parsed, "rejected": s.rejected_total, "events": s.events,
            "duplicates": s.duplicates, "gaps": s.gap_count, "missing_trades": s.missing_trades,
            "published": bus.published_total, "delivered": sub.delivered, "conflated": sub.conflated,
            "dropped": sub.dropped, "queue_high_water": sub.high_water,
            "book_diffs_applied": sum(b.diffs_applied for b in books), "book_gaps": sum(b.gaps for b in books),
            "book_diffs_waiting_for_snapshot": sum(b.ignored for b in books),
            "books_valid": f"{sum(b.is_valid for b in books)}/{len(books)}",
        }
        # The work the throughput skips, said beside it: events replaced by a newer one of their kind and symbol
        # before the consumer read them (quotes, exchange candles). Trades and depth diffs are never conflated.
        published = bus.published
        conflatable = published.get("Quote", 0) + published.get("Candle", 0)
        out["published_by_kind"] = dict(published)
        out["conflated_fraction"] = sub.conflated / bus.published_total if bus.published_total else 0.0
        out["conflated_fraction_of_quotes_and_candles"] = sub.conflated / conflatable if conflatable else 0.0
        out["gaps"] = {"in_tape_per_pass": facts["trade_gaps"], "reported_by_pipeline": s.gap_count}
        out["rss_after_mb"]["pipeline"] = round(rss.now(), 1)

        out["latency"] = {}
        for rate in args.rates:
            want = int(rate * args.seconds)
            t0 = time.perf_counter()
            conn, bus, sub, consumer = await pipe(f"{base}/rate?rate={rate}&n={want}", want, record_latency=True)
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
        out["machine"] = _machine(psutil, websockets)
        return out
    finally:
        server.terminate()
        server.join(5)


def _machine(psutil, websockets) -> dict:
    return {
        "python": platform.python_version(), "websockets": websockets.__version__,
        "cpu": platform.processor() or platform.machine(), "cpus": psutil.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def print_parse_table(r: dict) -> None:
    p = r["parse_by_kind"]
    cf = p["cryptofeed"]
    print(f"parse cost per message kind (µs per frame, medians; data: {', '.join(r['data'])}); "
          f"cryptofeed {cf or 'unavailable: column left out'}")
    print(f"{'kind':<16}{'frames':>8}{'ours':>9}{'cryptofeed':>12}{'ours/cf':>9}{'loads':>8}  what ours does")
    for kind, x in p["kinds"].items():
        theirs = f"{x['cryptofeed_us']:>12.2f}{x['ratio']:>9.2f}" if "ratio" in x else f"{'-':>12}{'-':>9}"
        what = {"depth": f"parse + OrderBook.apply (parse alone {x.get('ours_parse_only_us', 0):.2f})",
                "depth_snapshot": "REST snapshot recorded inline (cryptofeed: over HTTP)"}.get(kind, "parse, event")
        print(f"{kind:<16}{x['frames']:>8,}{x['ours_us']:>9.2f}{theirs}{x['orjson_loads_us']:>8.2f}  {what}")
    print(f"{'all frames':<16}{sum(x['frames'] for x in p['kinds'].values()):>8,}{p['ours_us_per_frame']:>9.2f}"
          f"{'':>21}{p['orjson_loads_us_per_frame']:>8.2f}  (loads = orjson.loads alone, the floor)")
    slower = [k for k, x in p["kinds"].items() if x.get("ratio", 0) > 1.0]
    print("no kind slower than cryptofeed's handler: " + ("met" if not slower else f"MISSED ({', '.join(slower)})"))


def print_table(r: dict) -> None:
    print_parse_table(r)
    print()
    if "frames" not in r:
        return
    print(f"feed benchmark: {r['frames']:,} frames ({', '.join(r['data'])} x {r['repeat']}); "
          f"python {r['machine']['python']}, "
          f"websockets {r['machine']['websockets']}, {r['machine']['cpus']} cpus, {r['machine']['date']}")
    print()
    print(f"{'throughput':<44}{'msgs/s':>12}")
    print(f"{'(a) bare websockets receive (count only)':<44}{r['bare_msgs_per_s']:>12,.0f}")
    print(f"{'(b) full pipeline (parse, bus, candles, book)':<44}{r['pipeline_msgs_per_s']:>12,.0f}")
    ok = "met" if r["ratio"] >= 0.6 else "MISSED"
    print(f"{'ratio b/a (target >= 0.6), median of pairs':<44}{r['ratio']:>12.2f}  {ok}  "
          f"(pairs: {', '.join(f'{x:.2f}' for x in r['pair_ratios'])})")
    c = r["pipeline_counts"]
    print(f"  of {c['published']:,} events, {c['conflated']:,} ({100 * r['conflated_fraction']:.1f} %) were conflated: "
          f"quotes/candles replaced by a newer one before the consumer read them "
          f"({100 * r['conflated_fraction_of_quotes_and_candles']:.1f} % of those); every trade reached the candles "
          f"and every depth diff the book ({c['book_diffs_applied']:,} applied, "
          f"{c['book_diffs_waiting_for_snapshot']:,} held for want of a snapshot, books valid {c['books_valid']})")
    g = r["gaps"]
    print(f"  trade id gaps: {g['reported_by_pipeline']} reported by the pipeline, {g['in_tape_per_pass']} in one pass "
          f"of the tape itself (passes are shifted per symbol to follow on without a gap)")
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
    p.add_argument("--parse-only", action="store_true", help="only the per-kind parse table (no socket, fast)")
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
