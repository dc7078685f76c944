"""DecisionService: when to ask, cache then provider, timeouts and a circuit breaker.

It asks on every close of the decision timeframe and on "Ask now". Per symbol at most one request is in flight.
A request is never cancelled by a newer one: cancelling it would hide its timeout or HTTP error (a short decision
timeframe would then never show a failure, and the breaker would never see one) and pile new requests onto a failing
endpoint. Instead, asks that arrive while one is in flight are coalesced into one follow-up request, made from the
market state at the time it starts. A failure is
recorded as an ERROR decision, which the UI shows as an error card and which never becomes a proposal. After
``breaker_threshold`` consecutive failures the breaker opens: the model is reported unavailable and not called
until ``breaker_cooldown_s`` has passed; then it is half-open: exactly one trial request goes out (every other
symbol's gets a circuit_open error card meanwhile) and its outcome closes the breaker or opens it again. The breaker
counts only what the provider answered: a cache hit says nothing about the endpoint, so it neither resets the count
nor settles a trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.llm import prompt
from app.llm.cache import DecisionCache
from app.llm.providers import DecisionProvider, ProviderError
from app.llm.schema import CacheStatus, Decision, DecisionMeta
from app.market.features import MarketState, PositionState, compute_state
from app.market.state import MarketData
from app.perf.metrics import MODEL_HIT, MODEL_MISS, MODEL_SIMILAR, TICK_TO_PROPOSAL, Metrics

log = logging.getLogger(__name__)


class ModelState(StrEnum):
    READY = "ready"
    ASKING = "asking"
    UNAVAILABLE = "model unavailable"


@dataclass(slots=True)
class ServiceStats:
    requests: int = 0
    decisions: int = 0
    errors: int = 0
    coalesced: int = 0  # asks that arrived while a request was in flight, folded into one follow-up
    skipped_no_data: int = 0
    breaker_trips: int = 0
    by_badge: Counter[str] = field(default_factory=Counter)  # every decision recorded, by its card's badge


class DecisionService:
    def __init__(
        self,
        provider: DecisionProvider,
        market: MarketData,
        *,
        cache: DecisionCache | None = None,
        timeframe: str = "1m",
        timeout_s: float = 30.0,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 30.0,
        poll_s: float = 0.2,
        history: int = 200,
        position_of: Callable[[str], tuple[PositionState, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.provider = provider
        self.market = market
        self.cache = cache
        self.timeframe = timeframe
        self.timeout_s = timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown_s = breaker_cooldown_s
        self.stats = ServiceStats()
        self.decisions: deque[Decision] = deque(maxlen=history)  # oldest first
        self.version = 0  # bumps whenever a decision is added or the model state changes
        self.recorded = 0  # decisions and errors recorded since start (the deque keeps only the newest)
        self._poll_s = poll_s
        self._position_of = position_of or (lambda _symbol: (PositionState.FLAT, 0))
        self._clock = clock
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._ask_again: set[str] = set()  # symbols with an ask coalesced while their request is in flight
        self._failures = 0  # consecutive provider failures
        self._open_until = 0.0
        self._trial = False  # half-open: the one request allowed through is in flight
        self._last_bar: dict[str, int] = {}
        # Called with every successful decision and the state it was made from (the trading desk listens).
        self.listeners: list[Callable[[Decision, MarketState], None]] = []
        # Told when a request task dies of an exception the service did not handle (e.g. a listener raised).
        self.on_task_fault: Callable[[str, BaseException], None] | None = None

    # ----- state for the UI ---------------------------------------------------------------------------------
    @property
    def model_state(self) -> ModelState:
        if self._open_until > self._clock():
            return ModelState.UNAVAILABLE
        return ModelState.ASKING if self._in_flight else ModelState.READY

    @property
    def uses_cache(self) -> bool:
        return self.cache is not None

    # ----- triggers -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Ask on every close of the decision timeframe, for every symbol. Requests in flight are left alone when
        this loop ends (a supervised restart must not hide their failures); ``aclose`` ends them at stop."""
        while True:
            for symbol in self.market.symbols:
                if self._bar_closed(symbol):
                    self.ask_now(symbol)
            await asyncio.sleep(self._poll_s)

    def ask_now(self, symbol: str) -> asyncio.Task[None] | None:
        """Ask for a decision on ``symbol``: now, or if a request is in flight, once it has finished (one follow-up
        however many asks arrive meanwhile). Returns the symbol's request task (awaiting it covers the follow-up),
        or None if there is no data yet."""
        state = self.current_state(symbol)
        if state is None:
            self.stats.skipped_no_data += 1
            return None
        current = self._in_flight.get(symbol)
        if current is not None and not current.done():
            self._ask_again.add(symbol)
            self.stats.coalesced += 1
            return current
        task = asyncio.get_running_loop().create_task(self._serve(symbol, state), name=f"decision {symbol}")
        self._in_flight[symbol] = task
        task.add_done_callback(lambda t, s=symbol: self._forget(s, t))
        self.version += 1
        return task

    def current_state(self, symbol: str) -> MarketState | None:
        m = self.market[symbol]
        q = m.quote
        position, pnl_sign = self._position_of(symbol)
        return compute_state(
            m.candles.series(self.timeframe),
            symbol=symbol,
            quote_bid=q.bid if q else None,
            quote_ask=q.ask if q else None,
            position=position,
            position_pnl_sign=pnl_sign,
        )

    async def aclose(self) -> None:
        tasks = list(self._in_flight.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.cache is not None:
            await self.cache.aclose()

    # ----- internals ----------------------------------------------------------------------------------------
    def _bar_closed(self, symbol: str) -> bool:
        series = self.market[symbol].candles.series(self.timeframe)
        last = series.last()
        if last is None:
            return False
        previous = self._last_bar.get(symbol)
        self._last_bar[symbol] = last.open_ms
        # The first look only records where we are; a later change of the forming bar means one closed.
        return previous is not None and last.open_ms > previous

    def _forget(self, symbol: str, task: asyncio.Task[None]) -> None:
        if self._in_flight.get(symbol) is task:
            del self._in_flight[symbol]
            self._ask_again.discard(symbol)
        self.version += 1
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("decision task for %s died: %s", symbol, exc)
            if self.on_task_fault is not None:
                self.on_task_fault(task.get_name(), exc)

    async def _serve(self, symbol: str, state: MarketState) -> None:
        """The symbol's one request in flight, then one follow-up per batch of asks that arrived meanwhile."""
        await self._request(state)
        while symbol in self._ask_again:
            self._ask_again.discard(symbol)
            state = self.current_state(symbol)
            if state is None:
                return
            await self._request(state)

    async def _request(self, state: MarketState) -> None:
        self.stats.requests += 1
        now = self._clock()
        if self._open_until > now:
            self._record(self._error(state, "circuit_open", "model unavailable: too many recent failures, "
                                     f"retrying in {self._open_until - now:.0f} s"))
            return
        trial = self._failures >= self.breaker_threshold  # half-open: one request finds out if the model is back
        if trial and self._trial:
            self._record(self._error(state, "circuit_open", "model unavailable: a trial request is finding out "
                                     "whether it answers again"))
            return
        self._trial = self._trial or trial
        try:
            await self._attempt(state)
        finally:
            if trial:
                self._trial = False

    async def _attempt(self, state: MarketState) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                decision = await self._decide(state)
        except TimeoutError:
            self._failed(state, "timeout", f"no answer within {self.timeout_s:g} s")
        except ProviderError as exc:
            self._failed(state, exc.reason, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a provider must not take the terminal down
            log.exception("decision provider failed unexpectedly")
            self._failed(state, "internal", f"{type(exc).__name__}: {exc}")
        else:
            if decision.meta.cache_status not in (CacheStatus.HIT, CacheStatus.SIMILAR):  # the provider answered
                self._failures = 0
                self._open_until = 0.0
            self.stats.decisions += 1
            elapsed_ns = int((time.perf_counter() - started) * 1e9)
            stage = {CacheStatus.HIT: MODEL_HIT, CacheStatus.SIMILAR: MODEL_SIMILAR}.get(
                decision.meta.cache_status, MODEL_MISS)
            self.metrics.recorder(stage).record(elapsed_ns)
            self.metrics.recorder(TICK_TO_PROPOSAL).record(elapsed_ns)
            self._record(decision)
            for listener in self.listeners:
                listener(decision, state)
            log.debug("decision for %s in %.0f ms", state.symbol, (time.perf_counter() - started) * 1000)

    async def _decide(self, state: MarketState) -> Decision:
        if self.cache is None:
            return await self.provider.decide(state)
        digest = prompt.digest(prompt.render(state))
        return await self.cache.get_or_compute(
            state,
            model=self.provider.model,
            prompt_version=self.provider.prompt_version,
            prompt_digest=digest,
            compute=lambda: self.provider.decide(state),
        )

    def _failed(self, state: MarketState, reason: str, message: str) -> None:
        self._failures += 1
        if self._failures >= self.breaker_threshold and self._open_until <= self._clock():
            self._open_until = self._clock() + self.breaker_cooldown_s
            self.stats.breaker_trips += 1
            log.warning("model unavailable after %d failures; next try in %g s", self._failures,
                        self.breaker_cooldown_s)
        log.warning("decision for %s failed (%s): %s", state.symbol, reason, message)
        self._record(self._error(state, reason, message))

    def _error(self, state: MarketState, reason: str, message: str) -> Decision:
        self.stats.errors += 1
        return Decision.about(
            state,
            None,
            DecisionMeta(
                provider=self.provider.name,
                model=self.provider.model,
                prompt_version=self.provider.prompt_version,
                cache_status=CacheStatus.ERROR,
                error=f"{reason}: {message}",
            ),
        )

    def _record(self, decision: Decision) -> None:
        self.decisions.append(decision)
        self.stats.by_badge[decision.meta.cache_status.value] += 1
        self.recorded += 1
        self.version += 1

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"requests": s.requests, "decisions": s.decisions, "errors": s.errors, "coalesced": s.coalesced}
