"""One WebSocket connection to an exchange: subscribe, keep alive, reconnect, detect a stale feed.

Reconnection is websockets' own ``async for ws in connect(...)`` iterator (backoff with jitter on failed
connects). A connection that drops soon after opening is retried after a backoff delay as well, so a server
that accepts and immediately closes cannot make us spin. Frames are parsed by the exchange adapter (pure) and
the events are handed to ``on_events`` synchronously; that callback must not block (the bus only enqueues).

Trade ids are checked per symbol (Binance's trade and aggTrade ids are contiguous): a jump is a gap, counted
and kept in ``FeedStats.gaps`` with the missing ids; a trade id not above the last one delivered for its symbol
(a server that repeats recent trades after a reconnect) is dropped and counted in ``duplicates``, so nothing is
delivered twice. The last ids survive reconnects: the first trade of a new connection tells what was missed.
On a new connection, an id not above the last one but less than ``ID_RESET_WINDOW`` below it is a repeat unless its
exchange time is newer than the last delivered trade's by more than ``RESET_NEWER_BY_MS``: then the ids restarted.
A frame's trades are sequenced oldest first, whatever order the frame lists them in (Coinbase lists a
``market_trades`` event's trades newest first); a reconnect's snapshot that repeats delivered trades is then just
duplicates, and the trades in it not yet delivered are delivered. Within one connection an id more than
``ID_RESET_WINDOW`` away from the last is not believed on its own (one wild id would otherwise make every later
trade a "duplicate"): it is rejected (``trade_id_jump``) unless the next trade of that symbol follows it.

Exchange times are judged against a clock (:mod:`app.market.exchange_time`: the wall clock for a live feed, the
stream's own times for a replay); an event with an implausible one is dropped with a counted reason, the rest of
its frame delivered.
There is no trade resync (Binance has no keyless backfill over the stream), so a gap is reported, not filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import process_exception as default_process_exception

from app.market.adapters import ParseError
from app.market.exchange_time import ExchangeTimeWindow
from app.market.recording import Recorder
from app.models import FeedState, MarketEvent, Trade

log = logging.getLogger(__name__)

YIELD_EVERY = 32  # frames handled before the reader lets other tasks run
# Bytes the socket is read in at a time (asyncio's default is 256 KiB). websockets splits a read into frames in
# one callback, so a loopback burst of 256 KiB (~1,700 Binance frames) held the loop for tens of ms before the
# reader's yields could help; 16 KiB is ~100 frames a turn and still far above a real exchange's packets.
READ_CHUNK_BYTES = 16 * 1024

# A trade id this far below the last one, first seen on a new connection, is a restarted id sequence (a new
# simulator, an exchange reset), not a repeat: it is accepted and counted as a reset instead of dropping forever.
ID_RESET_WINDOW = 1_000_000
# Closer below, the trade's exchange time tells: a repeat is no newer than the last trade delivered (it is one of
# the trades before it), a restarted sequence's first trade is newer. The margin absorbs timestamps a repeat may
# carry rounded differently; a restart within it costs its first trades of that long, counted as duplicates.
RESET_NEWER_BY_MS = 1_000
GAP_LOG_INTERVAL_NS = 5_000_000_000


@dataclass(slots=True, frozen=True)
class TradeGap:
    """Trades ``first_missing`` .. ``last_missing`` of ``symbol`` never arrived (seen at ``recv_ns``)."""

    symbol: str
    first_missing: int
    last_missing: int
    recv_ns: int

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1


@dataclass(slots=True)
class FeedStats:
    """Counters read by the UI on its timer; written only by the connection."""

    state: FeedState = FeedState.CONNECTING
    frames: int = 0  # every frame received, good or bad
    parsed: int = 0  # frames the adapter accepted
    events: int = 0  # domain events delivered from them (duplicates not included)
    rejected: Counter[str] = field(default_factory=Counter)  # by ParseError reason
    duplicates: int = 0  # trades already delivered (id <= the last one for the symbol), dropped
    gap_count: int = 0  # jumps in a symbol's trade ids
    missing_trades: int = 0  # trade ids skipped over by those jumps
    id_resets: int = 0  # trade id sequences that restarted far below the last id
    gaps: deque[TradeGap] = field(default_factory=lambda: deque(maxlen=1000))  # the latest gaps
    reconnects: int = 0
    stale_events: int = 0
    connected_since_ns: int = 0
    last_frame_ns: int = 0
    last_error: str = ""
    transitions: deque[tuple[int, FeedState]] = field(default_factory=lambda: deque(maxlen=256))

    def set_state(self, state: FeedState) -> None:
        """Change state and remember the transition, so a short-lived state (stale) is never lost."""
        if state is not self.state:
            self.state = state
            self.transitions.append((time.perf_counter_ns(), state))

    @property
    def received(self) -> int:
        return self.frames

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def status(self) -> str:
        """What the status bar says: ``live``, ``stale``, ``reconnecting 3`` ..."""
        if self.state is FeedState.RECONNECTING and self.reconnects:
            return f"reconnecting {self.reconnects}"
        return self.state.value


def backoff(initial: float = 0.5, maximum: float = 30.0, factor: float = 1.8) -> Generator[float]:
    """Exponential backoff with full jitter on the first step (RFC 6455 7.2.3)."""
    yield random.uniform(0.0, initial)
    delay = initial
    while True:
        delay = min(maximum, delay * factor)
        yield delay * random.uniform(0.8, 1.2)


class FeedConnection:
    def __init__(
        self,
        url: str,
        adapter: ModuleType,
        on_events: Callable[[list[MarketEvent]], None],
        *,
        subscribe: Sequence[bytes] = (),
        stale_after_s: float = 10.0,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        open_timeout_s: float = 10.0,
        recorder: Recorder | None = None,
        max_size: int = 1 << 23,  # depth snapshots can be large; anything bigger is hostile (closed with 1009)
        reconnect_delays: Callable[[], Generator[float]] = backoff,
        taps: Sequence[Callable[[bytes | str, int], None]] = (),
        exchange_time: ExchangeTimeWindow | None = None,  # default: judged on the stream's own times
        on_boundary: Sequence[Callable[[int], None]] = (),
    ) -> None:
        self.url = url
        self.stats = FeedStats()
        self._adapter = adapter
        self._on_events = on_events
        self._subscribe = list(subscribe)
        self._stale_after_ns = int(stale_after_s * 1e9)
        self._ping_interval = ping_interval_s
        self._ping_timeout = ping_timeout_s
        self._open_timeout = open_timeout_s
        self._recorder = recorder
        self._max_size = max_size
        self._reconnect_delays = reconnect_delays
        self._ws: ClientConnection | None = None
        self._taps = list(taps)  # see raw frames before parsing (integrity checks that need the exact text)
        self.exchange_time = exchange_time or ExchangeTimeWindow("stream")
        # Called with perf_counter_ns() whenever a connection opens or ends: state built from the stream (order
        # books) cannot be trusted across that boundary.
        self._on_boundary = list(on_boundary)
        self._sending: set[asyncio.Task[None]] = set()
        self._last_trade_id: dict[str, int] = {}
        self._last_trade_ms: dict[str, int] = {}  # exchange time of the last trade delivered, per symbol
        self._seen_since_connect: set[str] = set()  # symbols with a trade on the current connection
        self._id_jump_candidate: dict[str, int] = {}  # a far-off trade id rejected, believed if the next follows it
        self._gap_logged_ns = 0
        self._gaps_unlogged = 0

    async def run(self) -> None:
        """Connect and deliver until cancelled. Never returns on its own."""
        connector = websockets.connect(
            self.url,
            open_timeout=self._open_timeout,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            max_size=self._max_size,
            max_queue=1024,
            process_exception=self._on_connect_error,
            reconnect_delays=self._reconnect_delays,
            close_timeout=2.0,
            compression=None,
        )
        quick_drops: Generator[float] | None = None
        watchdog = asyncio.create_task(self._watch_staleness(), name="feed-stale-watchdog")
        # aclosing: on cancellation the iterator must be closed here, awaited, not later by the garbage collector.
        try:
            async with contextlib.aclosing(aiter(connector)) as connections:
                async for ws in connections:
                    opened_ns = time.perf_counter_ns()
                    await self._serve(ws)
                    # The connection ended; reconnect at once unless it keeps dying young.
                    self.stats.reconnects += 1
                    if self.stats.state is not FeedState.STALE:  # keep saying why until we are back
                        self.stats.set_state(FeedState.RECONNECTING)
                    if time.perf_counter_ns() - opened_ns < 5_000_000_000:
                        quick_drops = quick_drops or self._reconnect_delays()
                        await asyncio.sleep(next(quick_drops))
                    else:
                        quick_drops = None
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            self.stats.set_state(FeedState.STOPPED)
            self._ws = None
            if self._recorder is not None:
                self._recorder.flush()

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        _limit_reads(ws)
        self._seen_since_connect.clear()
        stats = self.stats
        stats.connected_since_ns = stats.last_frame_ns = time.perf_counter_ns()
        for listener in self._on_boundary:
            listener(stats.connected_since_ns)
        try:
            for msg in self._subscribe:
                await ws.send(msg.decode())
            stats.set_state(FeedState.LIVE)
            log.info("feed connected: %s", self.url)
            on_frame, clock = self._on_frame, time.perf_counter_ns
            since_yield = 0
            async for raw in ws:
                on_frame(raw, clock())
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    # Frames already buffered are returned without suspending, so a burst could hold the loop
                    # (and the consumers, the window) for hundreds of frames: give them a turn.
                    since_yield = 0
                    await asyncio.sleep(0)
        except websockets.ConnectionClosed as exc:
            stats.last_error = f"connection closed: {exc}"  # e.g. "received 1011 (internal error) ..."
            log.warning("feed disconnected from %s: %s", self.url, stats.last_error)
        finally:
            self._ws = None
            now = time.perf_counter_ns()
            for listener in self._on_boundary:
                listener(now)

    def _on_frame(self, raw: bytes | str, recv_ns: int) -> None:
        stats = self.stats
        stats.frames += 1
        stats.last_frame_ns = recv_ns
        for tap in self._taps:
            tap(raw, recv_ns)
        if self._recorder is not None:
            self._recorder.write(recv_ns, raw)
        try:
            events = self._adapter.parse(raw, recv_ns)
        except ParseError as exc:
            stats.rejected[exc.reason] += 1
            _log_rejection(exc, stats.rejected_total)
            return
        stats.parsed += 1
        if len(events) == 1:  # the usual frame: one event
            ev = events[0]
            if ev.exchange_ms:  # an event without a time (Binance spot bookTicker) has nothing to judge
                self._screen_times(events)
                if not events:
                    return
            if ev.__class__ is Trade:
                symbol, tid = ev.symbol, ev.trade_id  # type: ignore[union-attr]
                if tid == self._last_trade_id.get(symbol, -2) + 1 and symbol in self._seen_since_connect:
                    # The next trade of its symbol on this connection: what _sequence would conclude, sooner.
                    self._last_trade_id[symbol] = tid
                    self._last_trade_ms[symbol] = ev.exchange_ms  # type: ignore[union-attr]
                    if self._id_jump_candidate:
                        self._id_jump_candidate.pop(symbol, None)
                else:
                    events = self._sequence(events)
                    if not events:
                        return
            stats.events += 1
            self._on_events(events)
            return
        if not events:
            return
        self._screen_times(events)
        if not events:
            return
        for ev in events:
            if ev.__class__ is Trade:
                events = self._sequence(events)
                if not events:
                    return
                break
        stats.events += len(events)
        self._on_events(events)

    def _screen_times(self, events: list[MarketEvent]) -> None:
        """Drops (in place) the events with an implausible exchange time, counted by reason; the rest of the frame
        goes on."""
        kept, bad_times = self.exchange_time.screen(events)
        if bad_times:
            stats = self.stats
            stats.rejected.update(bad_times)
            reason = next(iter(bad_times))
            _log_rejection(ParseError(reason, f"{sum(bad_times.values())} event(s) of a frame"), stats.rejected_total)
            events[:] = kept

    def _sequence(self, events: list[MarketEvent]) -> list[MarketEvent]:
        """Drops trades already delivered and records gaps in the trade ids, per symbol, oldest trade first."""
        if len(events) > 1:
            events = sorted(events, key=_trade_order)  # stable: other events keep their order, ahead of trades
        last = self._last_trade_id
        out: list[MarketEvent] = []
        for ev in events:
            if ev.__class__ is not Trade:
                out.append(ev)
                continue
            symbol, tid = ev.symbol, ev.trade_id  # type: ignore[union-attr]
            prev = last.get(symbol)
            if prev is not None and tid != prev + 1:
                if symbol in self._seen_since_connect and abs(tid - prev) > ID_RESET_WINDOW:
                    if not self._follows_id_jump(symbol, tid):
                        self.stats.rejected["trade_id_jump"] += 1
                        continue
                    self.stats.id_resets += 1  # two trades in a row agree: the ids really moved
                    log.warning("%s trade ids moved to %d (last was %d)", symbol, tid, prev)
                elif tid <= prev:
                    if symbol in self._seen_since_connect or (
                        tid > prev - ID_RESET_WINDOW
                        and ev.exchange_ms <= self._last_trade_ms.get(symbol, 0) + RESET_NEWER_BY_MS
                    ):
                        self.stats.duplicates += 1
                        continue
                    self.stats.id_resets += 1
                    log.warning("%s trade ids restarted at %d (last was %d)", symbol, tid, prev)
                else:
                    self._on_gap(TradeGap(symbol, prev + 1, tid - 1, ev.recv_ns))
            last[symbol] = tid
            self._last_trade_ms[symbol] = ev.exchange_ms  # type: ignore[union-attr]
            self._seen_since_connect.add(symbol)
            if self._id_jump_candidate:
                self._id_jump_candidate.pop(symbol, None)
            out.append(ev)
        return out

    def _follows_id_jump(self, symbol: str, tid: int) -> bool:
        """True when ``tid`` comes just after the far-off id rejected last for ``symbol``; else remember it."""
        candidate = self._id_jump_candidate.get(symbol)
        if candidate is not None and candidate < tid <= candidate + ID_RESET_WINDOW:
            del self._id_jump_candidate[symbol]
            return True
        self._id_jump_candidate[symbol] = tid
        return False

    def _on_gap(self, gap: TradeGap) -> None:
        stats = self.stats
        stats.gap_count += 1
        stats.missing_trades += gap.missing
        stats.gaps.append(gap)
        # Rate-limited by time: a flood of gaps is one line per interval with how many were not logged.
        self._gaps_unlogged += 1
        if gap.recv_ns - self._gap_logged_ns >= GAP_LOG_INTERVAL_NS:
            more = self._gaps_unlogged - 1
            log.warning("%s trades %d..%d missing (%d)%s; %d gaps, %d trades missing so far", gap.symbol,
                        gap.first_missing, gap.last_missing, gap.missing,
                        f" and {more} more gaps since the last report" if more else "", stats.gap_count,
                        stats.missing_trades)
            self._gap_logged_ns = gap.recv_ns
            self._gaps_unlogged = 0

    def send_soon(self, messages: Sequence[bytes]) -> None:
        """Send requests on the live connection (a resubscription); dropped if there is none: the next
        connection subscribes afresh anyway."""
        ws = self._ws
        if ws is None:
            return

        async def send() -> None:
            try:
                for m in messages:
                    await ws.send(m.decode())
            except websockets.ConnectionClosed:
                pass

        task = asyncio.get_running_loop().create_task(send(), name="feed-resubscribe")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _on_connect_error(self, exc: Exception) -> Exception | None:
        self.stats.set_state(FeedState.RECONNECTING)
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("cannot connect to %s: %s", self.url, self.stats.last_error)
        return default_process_exception(exc)

    async def _watch_staleness(self) -> None:
        """No frame for ``stale_after``: mark the feed stale and drop the socket so the iterator reconnects."""
        period = max(0.05, self._stale_after_ns / 4e9)
        while True:
            await asyncio.sleep(period)
            ws = self._ws
            if ws is None or time.perf_counter_ns() - self.stats.last_frame_ns < self._stale_after_ns:
                continue
            self.stats.set_state(FeedState.STALE)
            self.stats.stale_events += 1
            self.stats.last_error = f"no data for {self._stale_after_ns / 1e9:g} s"
            log.warning("feed stale (%s); reconnecting", self.stats.last_error)
            ws.transport.abort()  # a silent peer may never answer a close handshake


def _trade_order(ev: MarketEvent) -> int:
    return ev.trade_id if ev.__class__ is Trade else -1  # type: ignore[union-attr]


def _log_rejection(exc: ParseError, total: int) -> None:
    # Rate-limited by count: the first few, then every 1000th, so a hostile feed cannot flood the log.
    if total <= 5 or total % 1000 == 0:
        log.warning("rejected frame #%d: %s", total, exc)


def _limit_reads(ws: ClientConnection) -> None:
    """Reads of at most READ_CHUNK_BYTES on a plain socket transport (asyncio's ``max_size``; a TLS transport reads
    records of at most 16 KiB anyway)."""
    transport = getattr(ws, "transport", None)
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = READ_CHUNK_BYTES
