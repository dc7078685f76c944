"""Fan-out of market events to subscribers through bounded queues.

The socket reader publishes synchronously and never waits: each subscriber has its own buffer, so a slow
consumer delays only itself. Trades and depth diffs are kept in order (a full queue drops the oldest and counts
it); quotes and exchange candles are conflated to the latest per symbol, since only the newest matters.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable

from app.models import BookUpdate, Candle, MarketEvent, Quote, Trade

CONFLATED = (Quote, Candle)


class Subscription:
    def __init__(self, name: str, maxlen: int, kinds: tuple[type, ...]) -> None:
        self.name = name
        self.kinds = kinds
        self.maxlen = maxlen
        self.delivered = 0
        self.dropped = 0
        self.conflated = 0
        self._fifo: deque[MarketEvent] = deque()
        self._latest: dict[tuple[type, str], MarketEvent] = {}
        self._ready = asyncio.Event()

    def put(self, event: MarketEvent) -> None:
        if isinstance(event, CONFLATED):
            key = (type(event), event.symbol)
            if key in self._latest:
                self.conflated += 1
            self._latest[key] = event
        else:
            if len(self._fifo) >= self.maxlen:
                self._fifo.popleft()
                self.dropped += 1
            self._fifo.append(event)
        self._ready.set()

    def drain(self) -> list[MarketEvent]:
        """Everything queued: ordered events first, then the latest of each conflated kind."""
        out: list[MarketEvent] = list(self._fifo)
        self._fifo.clear()
        if self._latest:
            out.extend(self._latest.values())
            self._latest.clear()
        self._ready.clear()
        self.delivered += len(out)
        return out

    async def next_batch(self) -> list[MarketEvent]:
        await self._ready.wait()
        return self.drain()

    @property
    def depth(self) -> int:
        return len(self._fifo) + len(self._latest)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.published: Counter[str] = Counter()

    def subscribe(
        self,
        name: str,
        maxlen: int = 100_000,
        kinds: tuple[type, ...] = (Trade, Quote, BookUpdate, Candle),
    ) -> Subscription:
        sub = Subscription(name, maxlen, kinds)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.remove(sub)

    def publish(self, events: Iterable[MarketEvent]) -> None:
        subs = self._subs
        for ev in events:
            self.published[type(ev).__name__] += 1
            for sub in subs:
                if isinstance(ev, sub.kinds):
                    sub.put(ev)

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)
