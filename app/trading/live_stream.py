"""The live broker's user stream: ``watch_my_trades`` and ``watch_orders`` kept running by a supervising task that
reconnects with back-off and reconciles over REST after every (re)subscription, and the broker's tasks watched so
that none dies silently. A part of ``LiveBroker`` (a mixin: it works on the broker's books).

- **Up or down, said.** ``stream_up`` is True from the subscription's acknowledgement until the stream fails;
  ``stream_down_since_ms`` (the broker's clock) says since when it is down (None while up, or before ``start``), so
  the status bar can say "user stream down".
- **Back-off that means it.** Each failure waits longer (``BACKOFF_S``); the wait starts again from the shortest only
  after the stream stayed up ``STREAM_STABLE_S``: a stream that drops right after each reconciliation must not
  hammer the exchange every half second.
- **Bounded.** The subscription's acknowledgement (``authenticate``) waits at most the client's timeout; ``start``
  waits at most ``start_timeout_s`` for the first reconciliation, then raises ``LiveBrokerError``.
- **No silent deaths.** The supervisor and every task the broker spawns get a done-callback: an error ends in the
  log, ``counters.task_faults`` and ``on_fault(name, exc)`` (the session connects it to its Supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from app.trading.exchange_errors import explain
from app.trading.live_exchange import BINANCE_LIKE, ExOrder, parse_order, parse_trade

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
STREAM_STABLE_S = 30.0  # up this long: the next failure waits the shortest back-off again


class UserStream:
    """The supervising task of the user stream, and the watch on every task of the broker."""

    @property
    def stream_up(self) -> bool:
        """The user stream is subscribed and delivering (fills and order updates arrive as they happen)."""
        return self._stream_up

    @property
    def stream_down_since_ms(self) -> int | None:
        """Since when (the broker's clock) the user stream is down; None while it is up or before ``start``."""
        return self._stream_down_ms

    def _set_stream(self, up: bool) -> None:
        if up:
            self._stream_up, self._stream_down_ms = True, None
        elif self._stream_up or self._stream_down_ms is None:
            self._stream_up, self._stream_down_ms = False, self.clock_ms()

    # ------------------------------------------------------------------------------------------------ tasks

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.counters.task_faults += 1
        log.error("live broker task %s ended with an error", task.get_name(), exc_info=exc)
        if self.on_fault is not None:
            try:
                self.on_fault(task.get_name(), exc)
            except Exception:
                log.exception("on_fault failed for %s", task.get_name())

    # ------------------------------------------------------------------------------------------------ stream

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        first = True
        while not self._closed:
            watchers: list[asyncio.Task[None]] = []
            up_since: float | None = None
            try:
                if self.exchange in BINANCE_LIKE:  # the subscription is acknowledged: events flow from here
                    await asyncio.wait_for(self._client.authenticate(), self._timeout_ms / 1000)
                watchers = [loop.create_task(self._watch_trades(), name="live-watch-trades"),
                            loop.create_task(self._watch_orders(), name="live-watch-orders")]
                await asyncio.sleep(0)
                self._set_stream(True)
                up_since = loop.time()
                await self.reconcile("start" if first else "reconnect")
                first = False
                self._first_sync.set()
                done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    t.result()  # re-raise what ended it
                raise ConnectionError("the user stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                self._set_stream(False)
                self.counters.stream_reconnects += 1
                if up_since is not None and loop.time() - up_since >= STREAM_STABLE_S:
                    attempt = 0  # it had been up a good while: this is a new incident
                why = "the exchange did not acknowledge the subscription in time" if isinstance(
                    exc, TimeoutError) else explain(exc)
                log.warning("user stream interrupted (%s); reconnecting", why)
                if first and not self._first_sync.is_set():  # no stream yet: start still owes a reconciliation
                    with contextlib.suppress(Exception):
                        await self.reconcile("start (no user stream)")
                    self._first_sync.set()
                    first = False
                await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1
            finally:
                self.stream_failures_in_a_row = attempt
                for t in watchers:
                    t.cancel()
                for t in watchers:
                    with contextlib.suppress(BaseException):
                        await t

    async def _watch_trades(self) -> None:
        while True:
            trades = await self._client.watch_my_trades()
            for raw in trades:
                self.counters.stream_trades += 1
                try:
                    sym = self._our_symbol(raw.get("symbol"))
                    if sym is not None:
                        self._apply_trade(parse_trade(raw, sym), None)
                except Exception:
                    self.counters.errors += 1
                    log.exception("a trade from the user stream could not be applied: %r", raw)

    async def _watch_orders(self) -> None:
        while True:
            orders = await self._client.watch_orders()
            for raw in orders:
                try:
                    sym = self._our_symbol(raw.get("symbol"))
                    if sym is not None:
                        await self._on_stream_order(parse_order(raw, sym))
                except Exception:
                    self.counters.errors += 1
                    log.exception("an order update from the user stream could not be applied: %r", raw)

    async def _on_stream_order(self, ex_order: ExOrder) -> None:
        order = self._find(ex_order.client_id, ex_order.exchange_id)
        if order is None:
            if ex_order.symbol in self._symbols:
                await self._adopt(ex_order, None)
            return
        self._apply_state(order, ex_order)
