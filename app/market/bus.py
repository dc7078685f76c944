"""Fan-out of market events to subscribers through bounded queues.

The socket reader publishes synchronously and never waits: each subscriber has its own buffer, so a slow
consumer delays only itself and never the reader. Trades and depth diffs are kept in order (a full queue drops
the oldest and counts it); quotes and exchange candles are conflated to the latest per symbol, since only the
newest matters. Memory per subscriber is therefore bounded by ``maxlen`` ordered events plus one conflated event
per (kind, symbol).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable

from app.models import BookUpdate, Candle, MarketEvent, Quote, Trade

CONFLATED = (Quote, Candle)


class Subscription:
    def __init__(self, name: str, maxlen: int, kinds: tuple[type, ...]) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be positive")
        self.name = name
        self.kinds = kinds
        self.maxlen = maxlen
        self.received = 0  # events offered to this subscriber
        self.delivered = 0
        self.dropped = 0  # ordered events lost to a full queue (oldest first)
        self.conflated = 0  # quotes/candles replaced by a newer one before being read
        self.high_water = 0  # the longest the ordered queue has been
        self._fifo: deque[MarketEvent] = deque()
        self._latest: dict[tuple[type, str], MarketEvent] = {}
        self._ready = asyncio.Event()
        self._woken = False  # mirrors self._ready.is_set()

    def put(self, event: MarketEvent) -> None:
        # Once per event per subscriber (the feed's hot path): exact class tests, and the wake-up flag mirrored in
        # a bool so the asyncio.Event is touched once per batch, not once per event.
        self.received += 1
        cls = event.__class__
        if cls is Quote or cls is Candle:  # CONFLATED
            key = (cls, event.symbol)
            latest = self._latest
            if key in latest:
                self.conflated += 1
            latest[key] = event
        else:
            fifo = self._fifo
            n = len(fifo)
            if n >= self.maxlen:
                fifo.popleft()
                self.dropped += 1
                n -= 1
            fifo.append(event)
            if n >= self.high_water:
                self.high_water = n + 1
        if not self._woken:
            self._woken = True
            self._ready.set()

    def drain(self) -> list[MarketEvent]:
        """Everything queued: ordered events first, then the latest of each conflated kind."""
        out: list[MarketEvent] = list(self._fifo)
        self._fifo.clear()
        if self._latest:
            out.extend(self._latest.values())
            self._latest.clear()
        self._ready.clear()
        self._woken = False
        self.delivered += len(out)
        return out

    async def next_batch(self) -> list[MarketEvent]:
        await self._ready.wait()
        return self.drain()

    @property
    def depth(self) -> int:
        return len(self._fifo) + len(self._latest)


class EventBus:
    """``publish`` is synchronous and O(subscribers) per event; routing by event class is cached."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._routes: dict[type, list[Subscription]] = {}
        self._counts: dict[type, int] = {}

    def subscribe(
        self,
        name: str,
        maxlen: int = 100_000,
        kinds: tuple[type, ...] = (Trade, Quote, BookUpdate, Candle),
    ) -> Subscription:
        sub = Subscription(name, maxlen, kinds)
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.remove(sub)
        self._routes.clear()

    def publish(self, events: Iterable[MarketEvent]) -> None:
        routes, counts = self._routes, self._counts
        for ev in events:
            cls = ev.__class__
            subs = routes.get(cls)
            if subs is None:
                subs = routes[cls] = [s for s in self._subs if issubclass(cls, s.kinds)]
                counts.setdefault(cls, 0)
            counts[cls] += 1
            for sub in subs:
                sub.put(ev)

    @property
    def published(self) -> Counter[str]:
        """Events published, by kind name."""
        return Counter({cls.__name__: n for cls, n in self._counts.items()})

    @property
    def published_total(self) -> int:
        return sum(self._counts.values())

    @property
    def dropped_total(self) -> int:
        return sum(s.dropped for s in self._subs)

    @property
    def conflated_total(self) -> int:
        return sum(s.conflated for s in self._subs)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)
