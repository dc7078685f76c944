"""Replay of a recorded file (see ``app.market.recording``) on the streams it was recorded from."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Container
from pathlib import Path
from typing import Any

import orjson

from app.market.recording import iter_frames, scan_recording
from app.market.sim.dialects import ForeignFrames, dialect_of
from app.market.sim.source import (
    STREAM_RE,
    Bars,
    Frame,
    RestError,
    aggregate_bars,
    interval_ms_of,
    invalid_symbol,
    kline_rows,
    kline_window,
)

_REPLAY_BATCH = 256  # frames per batch at full speed: a few ms of work between yields to the loop
_REPLAY_EARLY_S = 0.005  # frames due this soon go out with the current batch instead of a sleep each
_REPLAY_MAX_LATE_S = 1.0  # further behind (paused, starved), the replay resumes from here, not in a burst
_REPLAY_SNAPSHOT_WAIT_S = 5.0  # REST depth waits this long for the tape to reach a depth snapshot


class _ReplayBook:
    """The recorded REST snapshot kept current with the recorded diffs, so a client that connects in the
    middle of a replay gets a snapshot consistent with the diffs it is about to receive."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.last_update_id = int(snapshot["lastUpdateId"])
        self.bids = {str(p): str(q) for p, q in snapshot["bids"]}
        self.asks = {str(p): str(q) for p, q in snapshot["asks"]}

    def apply(self, diff: dict[str, Any]) -> None:
        last = int(diff["u"])
        if last <= self.last_update_id:
            return  # already in the snapshot
        for levels, side in ((diff["b"], self.bids), (diff["a"], self.asks)):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_update_id = last

    def snapshot(self, limit: int) -> dict[str, Any]:
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [list(x) for x in bids],
            "asks": [list(x) for x in asks],
        }


class ReplaySource:
    """Replays a recording (see ``app.market.recording``) on the streams it was recorded from.

    Combined-stream envelopes are served on their stream; a bare REST depth snapshot line is kept (and then
    updated with the recorded diffs) for ``/api/v3/depth``; REST klines are built from the replayed trades.
    Timing follows the recorded receive times (or the payload's ``E`` for JSON lines without them) divided
    by ``speed``; speed 0 goes as fast as the clients read. The tape starts when the first client subscribes
    and ``finished`` is set at the end of the file; the server stays up, the streams go quiet.
    """

    wait_for_subscriber = True

    def __init__(self, path: str | Path, speed: float = 1.0) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, not {speed}")
        self.path = Path(path)
        self.speed = speed
        self.paced = speed > 0
        pace = "as fast as possible" if speed == 0 else f"at {speed:g}x"
        self.label = f"replay of {self.path.name} {pace}"
        self.finished = asyncio.Event()
        self._books_changed = asyncio.Event()
        self.frames_skipped = 0  # lines that are neither stream envelopes nor depth snapshots
        self._books: dict[str, _ReplayBook] = {}
        self._bars: dict[str, Bars] = {}
        self._symbols: set[str] = set()
        self._trade_event: str | None = None  # "trade", else "aggTrade": the one REST klines are built from
        self._last_depth_symbol: str | None = None
        self._pending_snapshot: dict[str, Any] | None = None
        # Read once through at construction: a file it cannot replay fails here with one sentence, and a
        # subscription to a symbol the recording does not hold is refused in the protocol spoken.
        self.symbols_held = frozenset(scan_recording(self.path).symbols)
        self._foreign = ForeignFrames()  # Coinbase and Kraken recordings, as Binance frames

    def serves(self, stream: str) -> bool:
        match = STREAM_RE.fullmatch(stream)  # any stream of a symbol held; which ones carry data is up to the tape
        return match is not None and match.group(1).upper() in self.symbols_held

    async def batches(self, wanted: Container[str]) -> AsyncIterator[list[Frame]]:
        pacer = _Pacer(self.speed) if self.paced else None
        recorded_ns: int | None = None
        batch: list[Frame] = []
        frames = iter_frames(self.path)
        try:
            for recv_ns, raw in frames:
                msg = _json_object(raw)
                if msg is None:
                    self.frames_skipped += 1
                    continue
                recorded_ns = recv_ns if recv_ns is not None else _event_ns(msg, recorded_ns)
                if pacer and recorded_ns is not None and pacer.delay(recorded_ns) > _REPLAY_EARLY_S:
                    if batch:  # what is due now goes out before the sleep; one sleep per gap, not per frame
                        yield batch
                        batch = []
                    await asyncio.sleep(max(0.0, pacer.delay(recorded_ns)))
                batch.extend(self._ingest(msg, raw, wanted))
                if len(batch) >= _REPLAY_BATCH:
                    yield batch
                    batch = []
                    if not self.paced:
                        await asyncio.sleep(0)  # a full-speed tape must still let the loop run
            if batch:
                yield batch
        finally:
            frames.close()
            self.finished.set()

    async def depth_snapshot(self, symbol: str, limit: int) -> dict[str, Any]:
        """The recorded snapshot brought up to date. A terminal asks for it as soon as it has subscribed,
        usually before the tape reaches the snapshot line, so the answer waits for it (a few seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REPLAY_SNAPSHOT_WAIT_S):
                while symbol not in self._books and not self.finished.is_set():
                    self._books_changed.clear()
                    await self._books_changed.wait()
        book = self._books.get(symbol)
        if book is None:
            if symbol not in self.symbols_held:
                raise invalid_symbol()
            raise RestError(503, -1, f"the recording holds no depth snapshot for {symbol} (yet)")
        return book.snapshot(limit)

    async def klines(
        self, symbol: str, interval: str, limit: int, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[list[Any]]:
        if symbol not in self.symbols_held:
            raise invalid_symbol()
        ms = interval_ms_of(interval)
        bars = self._bars.get(symbol)
        if bars is None:
            return []
        window = kline_window(ms, limit, bars.end_ms - 1, start_ms, end_ms, bars.start_ms)
        if window is None:
            return []
        first, last = window
        return kline_rows(aggregate_bars([bars.window(first, last + ms)], ms), ms)

    def _ingest(self, msg: dict[str, Any], raw: bytes, wanted: Container[str]) -> list[Frame]:
        stream, data = msg.get("stream"), msg.get("data")
        if isinstance(stream, str) and isinstance(data, dict):
            try:
                self._observe(data)
            except (KeyError, TypeError, ValueError):
                self.frames_skipped += 1  # still served: the terminal's parser must cope, as live
            return [(stream, orjson.dumps(data))] if stream in wanted else []
        if "lastUpdateId" in msg:
            self._take_snapshot(msg)
            return []
        adapter = dialect_of(msg)
        if adapter is None:
            self.frames_skipped += 1  # e.g. a subscribe reply the recorder kept
            return []
        out: list[Frame] = []
        converted = self._foreign.convert(adapter, raw)
        if not converted:
            self.frames_skipped += 1  # acks, heartbeats, candles, frames the adapter refused
        for stream, data in converted:
            if stream is None:  # a book snapshot: what /api/v3/depth answers from now on
                self._add_book(data.pop("s"), _ReplayBook(data))
                continue
            self._observe(data)
            if stream in wanted:
                out.append((stream, orjson.dumps(data)))
        return out

    def _observe(self, data: dict[str, Any]) -> None:
        """Keeps the REST state (books, bars) in step with what has been replayed."""
        symbol = data.get("s")
        if not isinstance(symbol, str):
            return
        self._symbols.add(symbol)
        event = data.get("e")
        if event == "depthUpdate":
            self._last_depth_symbol = symbol
            if self._pending_snapshot is not None:
                self._add_book(symbol, _ReplayBook(self._pending_snapshot))
                self._pending_snapshot = None
            if symbol in self._books:
                self._books[symbol].apply(data)
        elif event in ("trade", "aggTrade"):
            self._trade_event = self._trade_event or event
            if event == self._trade_event:
                self._record_trade(symbol, data)

    def _take_snapshot(self, msg: dict[str, Any]) -> None:
        """The REST answer names no symbol: it belongs to the depth stream just seen (or the next one)."""
        try:
            book = _ReplayBook(msg)
        except (KeyError, TypeError, ValueError):
            self.frames_skipped += 1
            return
        if isinstance(msg.get("s"), str):  # written by --record with its symbol
            self._add_book(msg["s"], book)
        elif self._last_depth_symbol is None:
            self._pending_snapshot = msg
        else:
            self._add_book(self._last_depth_symbol, book)

    def _add_book(self, symbol: str, book: _ReplayBook) -> None:
        self._books[symbol] = book
        self._books_changed.set()

    def _record_trade(self, symbol: str, data: dict[str, Any]) -> None:
        price, qty, t = float(data["p"]), float(data["q"]), int(data["T"])
        trade_id = int(data["t"] if "t" in data else data["a"])
        second = t // 1000 * 1000
        bars = self._bars.get(symbol)
        if bars is None:
            bars = self._bars[symbol] = Bars(1000, second)
            bars.open_flat(price)
        while bars.end_ms <= second:
            bars.open_flat(bars.last_close())
        bars.add_trade(price, qty, not data["m"], trade_id)


class _Pacer:
    """Recorded time -> loop time at ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._anchor: tuple[int, float] | None = None  # (recorded ns, loop time) the pace is measured from

    def delay(self, recorded_ns: int) -> float:
        """Seconds until a frame recorded at ``recorded_ns`` is due. Further behind than _REPLAY_MAX_LATE_S
        (the server was paused, the loop starved) the tape resumes from here instead of bursting."""
        now = asyncio.get_running_loop().time()
        if self._anchor is None:
            self._anchor = (recorded_ns, now)
        delay = self._anchor[1] + (recorded_ns - self._anchor[0]) / 1e9 / self.speed - now
        if delay < -_REPLAY_MAX_LATE_S:
            self._anchor = (recorded_ns, now)
            return 0.0
        return delay


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


def _event_ns(msg: dict[str, Any], previous: int | None) -> int | None:
    """Exchange event time of a frame without a receive time; bookTicker has none, it keeps the previous."""
    data = msg.get("data", msg)
    event_ms = data.get("E") if isinstance(data, dict) else None
    return event_ms * 1_000_000 if isinstance(event_ms, int) else previous


