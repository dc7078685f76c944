"""Local order book kept from a depth snapshot plus sequence-checked diffs (Binance's documented procedure).

The procedure, as ``OrderBook.apply`` implements it:

1. Diffs that arrive before any snapshot are buffered (bounded, oldest dropped and counted).
2. A snapshot (``is_snapshot``, ``first_id == last_id == lastUpdateId``) replaces the book; buffered diffs are
   then replayed through the same rules as live ones.
3. Until the first diff is applied after a snapshot, diffs with ``last_id <= lastUpdateId`` are dropped as already
   contained in it; the first one applied must straddle it: ``first_id <= lastUpdateId + 1 <= last_id``.
4. After that, every diff must continue the previous one: ``first_id == previous last_id + 1``. A diff wholly
   older than the book (``last_id <= last_update_id``, a redelivery) is ignored and counted as ``stale``; any other
   break is a gap: ``needs_resync`` becomes True, ``gaps`` is counted, and no diff is applied until the next
   snapshot. Diffs received meanwhile are buffered, because the new REST snapshot may be older than the newest of
   them, and are replayed after it exactly as in step 2.

Coinbase numbers its frames, not its book updates: ``sequence_num`` counts every frame of the connection, all
channels together, so a book update's id only has to be above the book's. With ``contiguous_ids = False`` that is the
whole rule for a diff, and continuity is checked by the caller over every frame (``book_guard.CoinbaseSequenceGuard``)
which calls ``mark_gap()`` when a number is missing; the book then waits for a fresh snapshot as in step 4.

Binance USD-M futures diffs say which diff they follow (``prev_id``, the exchange's ``pu``) and their ids are not
contiguous, so a diff with ``prev_id`` is checked by the futures rule instead: diffs with ``last_id <
lastUpdateId`` are dropped, the first one applied must have ``first_id <= lastUpdateId <= last_id``, and after that
``prev_id`` must equal the previous diff's ``last_id``; any other diff is a gap, handled as in step 4.

A reconnect makes the book untrustworthy whatever its ids say: the exchange may have restarted with lower ids (every
new diff would look stale) or diffs may have been lost while it was down. ``invalidate(since_ns)`` (the session
calls it whenever the feed connection opens or ends) empties the book until a fresh snapshot; diffs and snapshots
stamped before ``since_ns`` are dropped and counted in ``before_reconnect``, so the new book is built from the new
connection alone. A diff is stamped when it is received; a REST snapshot must be stamped when it was *requested*
(the session does): an answer from the old exchange that arrives after the reconnect is then refused too.

A book whose ids have run ahead of its stream (a snapshot from somewhere else, an exchange that restarted without the
reconnect being seen) would call every new diff stale and stay "valid" forever. So ``STALE_RUN_LIMIT`` stale diffs
in a row, received live, are not believed: the book needs a resync (counted in ``stale_resyncs``). Stale diffs
replayed from the buffer after a snapshot (those older than it, the normal case) do not count towards the run.

Quantities in a diff are absolute; quantity 0 removes the level. Prices and quantities stay float64 (market data;
DESIGN rule 5): the same decimal string always parses to the same float, so a float is a safe dict key.

Each side is a dict ``price -> qty`` plus a sorted list of its prices rebuilt only when read after a change, so a
burst of diffs costs one sort at the next read. Each side keeps at most ``max_levels`` levels: the levels farthest
from the touch are dropped when a side grows past that (as a depth-limited exchange book does).
"""

from __future__ import annotations

from collections import deque

from app.models import BookUpdate, Side

# Live diffs in a row older than the book before it is taken to be ahead of its stream (see the module docstring).
# Right after a snapshot only the diffs in flight while it was fetched can be stale, a handful at 10 diffs a second.
STALE_RUN_LIMIT = 50


class _BookSide:
    __slots__ = ("_sorted", "descending", "dirty", "levels")

    def __init__(self, descending: bool) -> None:
        self.descending = descending  # bids: best is the highest price
        self.levels: dict[float, float] = {}
        self._sorted: list[float] = []
        self.dirty = False

    def replace(self, rows: tuple[tuple[float, float], ...]) -> None:
        self.levels = {p: q for p, q in rows if q > 0.0}
        self.dirty = True

    def update(self, rows: tuple[tuple[float, float], ...]) -> None:
        levels = self.levels
        for p, q in rows:
            if q > 0.0:
                levels[p] = q
            else:
                levels.pop(p, None)
        if rows:
            self.dirty = True

    def prices(self, max_levels: int) -> list[float]:
        """Prices best first; trims the side to ``max_levels`` when it has grown past it."""
        if self.dirty:
            self._sorted = sorted(self.levels, reverse=self.descending)
            if len(self._sorted) > max_levels:
                for p in self._sorted[max_levels:]:
                    del self.levels[p]
                del self._sorted[max_levels:]
            self.dirty = False
        return self._sorted

    def clear(self) -> None:
        self.levels = {}
        self._sorted = []
        self.dirty = False


class OrderBook:
    """One symbol's book. ``apply`` returns True when the update changed the book.

    Read with ``best_bid()``, ``best_ask()`` -> ``(price, qty)`` or None, and ``levels(side, depth)``, where
    ``side`` names the side *of the book*: ``Side.BUY`` is the bids (highest first), ``Side.SELL`` the asks
    (lowest first). ``taker_levels(side, depth)`` is what an order of that side walks: a BUY walks the asks
    ascending, a SELL the bids descending.

    ``version`` moves on every change (the UI and the paper broker compare it); ``last_update_id`` is the
    exchange update id the book reflects (None before the first snapshot). ``is_valid`` is True when the book
    can be trusted: a snapshot has arrived and no gap is pending.
    """

    def __init__(self, symbol: str, max_levels: int = 1000, max_buffer: int = 1000) -> None:
        if max_levels < 1 or max_buffer < 1:
            raise ValueError("max_levels and max_buffer must be positive")
        self.symbol = symbol.upper()
        self.max_levels = max_levels
        self._bids = _BookSide(descending=True)
        self._asks = _BookSide(descending=False)
        self._buffer: deque[BookUpdate] = deque(maxlen=max_buffer)
        self._synced = False  # the first diff after the snapshot has been applied
        self.has_snapshot = False
        self.needs_resync = False
        self.last_update_id: int | None = None
        self.version = 0
        self.exchange_ms = 0
        # counters (DESIGN rule 7: nothing is lost silently)
        self.snapshots = 0
        self.diffs_applied = 0
        self.gaps = 0
        self.stale = 0  # diffs already contained in the book, dropped
        self.ignored = 0  # diffs not applied while waiting for a (new) snapshot
        self.buffer_dropped = 0  # buffered diffs lost because the buffer was full
        self.wrong_symbol = 0
        self.invalidations = 0  # reconnects that emptied the book until a fresh snapshot
        self.before_reconnect = 0  # updates received before the latest invalidation, dropped
        self.stale_resyncs = 0  # resyncs because STALE_RUN_LIMIT live diffs in a row were stale
        self._stale_run = 0  # live stale diffs in a row
        self._valid_from_ns = 0  # updates received earlier than this belong to a previous connection
        # False: ids only increase (Coinbase's connection-wide sequence_num); the caller checks continuity.
        self.contiguous_ids = True

    # ------------------------------------------------------------------------------------------------ updates

    def apply(self, update: BookUpdate) -> bool:
        if update.symbol and update.symbol.upper() != self.symbol:  # a REST snapshot names no symbol ("")
            self.wrong_symbol += 1
            return False
        if update.recv_ns < self._valid_from_ns:
            self.before_reconnect += 1
            return False
        if update.is_snapshot:
            self._apply_snapshot(update)
            return True
        if not self.has_snapshot or self.needs_resync:
            self._buffer_diff(update)
            return False
        if self._apply_diff(update):
            return True
        if self._stale_run >= STALE_RUN_LIMIT:
            self._stale_run = 0
            self.needs_resync = True
            self.stale_resyncs += 1
        return False

    def _buffer_diff(self, update: BookUpdate) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.buffer_dropped += 1
        self._buffer.append(update)
        self.ignored += 1

    def _apply_snapshot(self, snap: BookUpdate) -> None:
        self._bids.replace(snap.bids)
        self._asks.replace(snap.asks)
        self.last_update_id = snap.last_id
        self.exchange_ms = snap.exchange_ms
        self.has_snapshot = True
        self.needs_resync = False
        self._synced = False
        self.snapshots += 1
        self.version += 1
        buffered, self._buffer = list(self._buffer), deque(maxlen=self._buffer.maxlen)
        for diff in buffered:
            if self.needs_resync:  # a gap inside the buffer: keep the rest for the next snapshot
                self._buffer_diff(diff)
            else:
                self._apply_diff(diff)
        self._stale_run = 0  # buffered diffs older than the snapshot are expected, not a sign of a wrong book

    def _apply_diff(self, diff: BookUpdate) -> bool:
        last = self.last_update_id
        assert last is not None
        if diff.prev_id is not None:  # Binance futures: continuity by pu, see the module docstring
            if diff.last_id < last or (self._synced and diff.last_id == last):
                self.stale += 1
                self._stale_run += 1
                return False
            in_sequence = diff.prev_id == last if self._synced else diff.first_id <= last <= diff.last_id
        elif diff.last_id <= last:
            self.stale += 1
            self._stale_run += 1
            return False
        elif not self.contiguous_ids:
            in_sequence = True  # newer than the book; the caller vouches for continuity (mark_gap otherwise)
        else:
            # continue the previous diff exactly, or (first after a snapshot) straddle the snapshot's id
            in_sequence = diff.first_id == last + 1 if self._synced else diff.first_id <= last + 1 <= diff.last_id
        if not in_sequence:
            self.needs_resync = True
            self.gaps += 1
            self._buffer_diff(diff)
            return False
        self._stale_run = 0
        self._bids.update(diff.bids)
        self._asks.update(diff.asks)
        self.last_update_id = diff.last_id
        self.exchange_ms = diff.exchange_ms
        self._synced = True
        self.diffs_applied += 1
        self.version += 1
        if len(self._bids.levels) > 2 * self.max_levels or len(self._asks.levels) > 2 * self.max_levels:
            self._bids.prices(self.max_levels)  # trims; bounds memory even if nobody reads
            self._asks.prices(self.max_levels)
        return True

    def mark_gap(self) -> None:
        """The caller found updates missing (a frame number skipped): wait for a fresh snapshot, as for a gap."""
        if self.has_snapshot and not self.needs_resync:
            self.needs_resync = True
            self.gaps += 1

    def invalidate(self, since_ns: int) -> None:
        """A feed connection opened or ended at ``since_ns`` (perf_counter ns, the clock of ``recv_ns``): empty
        the book until a snapshot received from then on, and ignore every update received before."""
        self._valid_from_ns = max(self._valid_from_ns, since_ns)
        self.invalidations += 1
        self.clear()

    @property
    def status(self) -> str:
        """What the trader is told: SYNCED, RESYNCING (it was synced; a gap or a reconnect, waiting for a fresh
        snapshot) or NO SNAPSHOT (never synced, e.g. at start or on a feed whose books are kept elsewhere)."""
        if self.is_valid:
            return "SYNCED"
        return "RESYNCING" if self.snapshots or self.needs_resync else "NO SNAPSHOT"

    def clear(self) -> None:
        """Forget everything: the next snapshot starts the book afresh."""
        self._bids.clear()
        self._asks.clear()
        self._buffer.clear()
        self.has_snapshot = False
        self.needs_resync = False
        self._synced = False
        self._stale_run = 0
        self.last_update_id = None
        self.version += 1

    # ------------------------------------------------------------------------------------------------ reads

    @property
    def is_valid(self) -> bool:
        return self.has_snapshot and not self.needs_resync

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def best_bid(self) -> tuple[float, float] | None:
        return self._best(self._bids)

    def best_ask(self) -> tuple[float, float] | None:
        return self._best(self._asks)

    def _best(self, side: _BookSide) -> tuple[float, float] | None:
        prices = side.prices(self.max_levels)
        if not prices:
            return None
        return prices[0], side.levels[prices[0]]

    def levels(self, side: Side, depth: int = 20) -> list[tuple[float, float]]:
        """The book's ``side`` (BUY = bids, SELL = asks), best first, at most ``depth`` levels."""
        s = self._bids if side is Side.BUY else self._asks
        lv = s.levels
        return [(p, lv[p]) for p in s.prices(self.max_levels)[:depth]]

    def taker_levels(self, side: Side, depth: int = 1000) -> list[tuple[float, float]]:
        """The liquidity an order of ``side`` consumes, in walking order (BUY: asks ascending; SELL: bids
        descending)."""
        return self.levels(Side.SELL if side is Side.BUY else Side.BUY, depth)

    def mid(self) -> float | None:
        b, a = self.best_bid(), self.best_ask()
        return None if b is None or a is None else (b[0] + a[0]) / 2.0

    def depth_count(self) -> tuple[int, int]:
        return len(self._bids.levels), len(self._asks.levels)

    def stats(self) -> dict[str, int]:
        return {
            "snapshots": self.snapshots,
            "diffs_applied": self.diffs_applied,
            "gaps": self.gaps,
            "stale": self.stale,
            "ignored": self.ignored,
            "buffer_dropped": self.buffer_dropped,
            "wrong_symbol": self.wrong_symbol,
            "invalidations": self.invalidations,
            "before_reconnect": self.before_reconnect,
            "stale_resyncs": self.stale_resyncs,
        }
