"""DecisionService: when to ask, cache then provider, timeouts, a circuit breaker, and each symbol's current decision.

Cadence. Every symbol is asked (a) when the market clock crosses a bar boundary of the decision timeframe, (b) when
``interval_s`` has passed since its last ask, quiet symbol or not, and (c) on "Ask now". Each ask goes to the cache
first, so asking every few seconds costs a model call only when the market has moved out of tolerance (or the
answer aged out). The market clock (``market_ms``, exchange time in ms) is injected: the session gives the wall
clock for live feeds (never behind the newest trade seen) and the newest trade time for replays; the state is made
for that instant, clamped to no earlier than the newest bar's open. The boundary ask waits ``BOUNDARY_GRACE_MS``
after the boundary, for the closed bar's last trades. Scheduled asks are made only while the symbol's market data
is live (``why_not_live``): a dropped feed is not a quiet market, and its missing minutes would read as flat bars at
the last price. They are skipped meanwhile (``stats.skipped_not_live``); Ask now gets an ERROR card saying why.

Per symbol at most one request is in flight. A request is never cancelled by a newer one: cancelling it would hide
its timeout or HTTP error (a short cadence would then never show a failure, and the breaker would never see one)
and pile new requests onto a failing endpoint. Instead, asks that arrive while one is in flight are coalesced into
one follow-up request, made from the market state at the time it starts. A failure is recorded as an ERROR
decision, which the UI shows as an error card and which never becomes a proposal. After ``breaker_threshold``
consecutive failures the breaker opens: the model is reported unavailable and not called until
``breaker_cooldown_s`` has passed; then it is half-open: exactly one trial request goes out (every other symbol's
gets a circuit_open error card meanwhile) and its outcome closes the breaker or opens it again. While the model
is not called, an ask the cache can answer is still answered from it; only the others get the circuit_open error.
The breaker counts only what the provider answered: a cache hit says nothing about the endpoint, so it neither
resets the count nor settles a trial.

Current decision and history. ``current[symbol]`` is the symbol's latest answer (fresh or served from the cache)
with when its action became current and how often the cache has confirmed it since. ``decisions`` is the history:
an answer enters it only when it changes the symbol's action, when it is a *fresh* trade (BUY, SELL, CLOSE), or
when it is an ERROR. Fresh means a model call answered it (MISS, OFFLINE); without a cache (the offline rules answer
every ask) it means the state was made from a newer closed bar than the symbol's previous fresh answer. A fresh
HOLD that repeats a HOLD is no news: it refreshes the symbol's line (and its badge says MISS) but not the history,
which would otherwise gain one HOLD line per symbol per bar, since every new bar is a model call. An ERROR whose
reason is that of the symbol's newest history entry (an outage, every interval) is only counted
(``error_repeats[symbol]``). A cache confirmation updates ``current`` only, so a stream of served answers never
floods the history nor the proposals.
Errors go to the history but leave ``current`` as it was (its age keeps growing). Each history-worthy answer is
told to ``listeners`` as a ``DecisionEvent`` (the trading desk proposes from it).

``recent(window_s)`` counts asks, answers served, model calls, errors and what the cache saved over the last
``window_s`` seconds, to the minute (per-minute buckets, at most a day of them).
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
from app.llm.schema import Action, CacheStatus, Decision, DecisionMeta
from app.market.candles import TIMEFRAMES
from app.market.features import MarketState, PositionState, compute_state
from app.market.state import MarketData
from app.perf.metrics import MODEL_HIT, MODEL_MISS, MODEL_SIMILAR, TICK_TO_PROPOSAL, Metrics

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
# The bar-boundary ask waits this long (market clock) after the boundary: it is the new bar's one model call (the
# cache files answers by bar), and trades stamped before the boundary may still be on their way. Scheduled asks
# inside this window wait for it too, so the first state of a new bar includes those late trades.
BOUNDARY_GRACE_MS = 1_000
NOT_LIVE = "no_live_data"  # the error reason of an Ask now while the symbol's market data is not live
RECENT_WINDOW_S = 3600.0
BUCKET_S = 60.0
MAX_BUCKETS = 24 * 60  # recent() looks back at most a day: memory stays bounded whatever the run's length
SERVED = (CacheStatus.HIT, CacheStatus.SIMILAR)


class ModelState(StrEnum):
    READY = "ready"
    ASKING = "asking"
    UNAVAILABLE = "model unavailable"


@dataclass(slots=True)
class ServiceStats:
    requests: int = 0
    decisions: int = 0  # answers with a body (fresh or served), history-worthy or not
    errors: int = 0
    coalesced: int = 0  # asks that arrived while a request was in flight, folded into one follow-up
    skipped_no_data: int = 0
    skipped_not_live: int = 0  # scheduled asks not made because the symbol's market data was not live
    errors_folded: int = 0  # errors left out of the history: same reason as the symbol's previous history entry
    breaker_trips: int = 0
    by_badge: Counter[str] = field(default_factory=Counter)  # every answer (errors included), by its card's badge


@dataclass(frozen=True, slots=True)
class SymbolDecision:
    """A symbol's current decision: what the trader acts from, however often the cache has repeated it."""

    symbol: str
    decision: Decision  # the latest answer (fresh or served); never an ERROR
    state: MarketState
    action_since: float  # service clock (monotonic): when this action became the symbol's current one
    updated_at: float  # service clock: when the latest answer (fresh or cache-confirmed) landed
    confirmations: int  # answers served from the cache that repeated this action since action_since
    fresh: bool  # the latest answer came from a model call (MISS/OFFLINE), not the cache


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One history-worthy answer: it changed the symbol's action, or it is fresh, or it is an ERROR."""

    decision: Decision
    state: MarketState
    changed: bool  # its action differs from the symbol's previous current one (the first answer changes it)
    fresh: bool


@dataclass(frozen=True, slots=True)
class AskWindow:
    """What the service did over the last ``window_s`` seconds (to the minute). ``asks`` = ``served`` +
    ``model_calls`` + ``errors``: served counts HIT and SIMILAR answers and asks folded into another's request
    (``folded`` of them: answered by a model call already running, not by the cache)."""

    asks: int
    served: int
    model_calls: int
    errors: int
    saved_latency_s: float  # model time the served answers did not wait for (their stored answers' latency)
    saved_cost_usd: float
    window_s: float
    folded: int = 0


@dataclass(slots=True)
class _Bucket:
    minute: int
    asks: int = 0
    served: int = 0
    model_calls: int = 0
    errors: int = 0
    saved_latency_ms: float = 0.0
    saved_cost_usd: float = 0.0
    folded: int = 0


class DecisionService:
    def __init__(
        self,
        provider: DecisionProvider,
        market: MarketData,
        *,
        cache: DecisionCache | None = None,
        timeframe: str = "1m",
        interval_s: float = DEFAULT_INTERVAL_S,
        market_ms: Callable[[], int] | None = None,
        timeout_s: float = 30.0,
        breaker_threshold: int = 3,
        breaker_cooldown_s: float = 30.0,
        poll_s: float = 0.2,
        history: int = 200,
        position_of: Callable[[str], tuple[PositionState, int]] | None = None,
        why_not_live: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        """``market_ms``: the market clock (exchange time, ms); None: the newest trade time applied to ``market``.
        ``clock``: the service's own (monotonic seconds): the interval, the breaker, ages and ``recent``.
        ``why_not_live``: None while the symbol's market data is live, else why not (e.g. the feed's state,
        "RECONNECTING"); None: always live. A dropped feed must not be read as a quiet market: its missing minutes
        would become flat bars at the last price, and answers from them proposals."""
        self.metrics = metrics or Metrics()
        self.provider = provider
        self.market = market
        self.cache = cache
        self.timeframe = timeframe
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown_s = breaker_cooldown_s
        self.stats = ServiceStats()
        self.decisions: deque[Decision] = deque(maxlen=history)  # the history, oldest first
        self.current: dict[str, SymbolDecision] = {}
        self.version = 0  # bumps whenever the current decisions, the history or the model state change
        self.recorded = 0  # history entries recorded since start (the deque keeps only the newest)
        self._poll_s = poll_s
        self._position_of = position_of or (lambda _symbol: (PositionState.FLAT, 0))
        self._why_not_live = why_not_live or (lambda _symbol: None)
        self._clock = clock
        self._market_ms = market_ms or (lambda: market.last_exchange_ms)
        self._tf_ms = TIMEFRAMES[timeframe]
        # At most a tenth of a bar: on very short bars (tests, 1s) the grace must not cover the whole bar.
        self._grace_ms = min(BOUNDARY_GRACE_MS, self._tf_ms // 10)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._ask_again: set[str] = set()  # symbols with an ask coalesced while their request is in flight
        self._failures = 0  # consecutive provider failures
        self._open_until = 0.0
        self._trial = False  # half-open: the one request allowed through is in flight
        self._last_ask: dict[str, float] = {}  # service clock of each symbol's last ask
        self._boundary: dict[str, int] = {}  # the bar (market clock // timeframe) each symbol was last looked at in
        self._fresh_bar: dict[str, int] = {}  # bar_close_ms of each symbol's latest fresh answer (no cache)
        self._not_live: set[str] = set()  # symbols whose scheduled ask was skipped: asked as soon as data is live
        # The error reason of each symbol's newest history entry (None: it is an answer): a repeat of it is folded.
        self._last_error_reason: dict[str, str | None] = {}
        # Per symbol: errors folded since its newest history entry (the panel may say "repeated 12 times").
        self.error_repeats: dict[str, int] = {}
        self._buckets: deque[_Bucket] = deque(maxlen=MAX_BUCKETS)
        self._saved_seen = (0.0, 0.0)  # the cache's saved latency (ms) and cost already put in a bucket
        # Told every history-worthy answer (the trading desk listens).
        self.listeners: list[Callable[[DecisionEvent], None]] = []
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

    def now(self) -> float:
        """The service's clock, the one ``SymbolDecision.action_since`` / ``updated_at`` are on."""
        return self._clock()

    def recent(self, window_s: float = RECENT_WINDOW_S) -> AskWindow:
        """Asks and what answered them over the last ``window_s`` seconds, counted in whole minutes (a minute
        that began up to 60 s before the window still counts)."""
        first = int((self._clock() - window_s) // BUCKET_S) + 1
        b = [x for x in self._buckets if x.minute >= first]
        return AskWindow(
            asks=sum(x.asks for x in b), served=sum(x.served for x in b), model_calls=sum(x.model_calls for x in b),
            errors=sum(x.errors for x in b), saved_latency_s=sum(x.saved_latency_ms for x in b) / 1000.0,
            saved_cost_usd=sum(x.saved_cost_usd for x in b), window_s=window_s, folded=sum(x.folded for x in b),
        )

    # ----- triggers -----------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Ask every symbol on bar boundaries of the market clock and every ``interval_s``. Requests in flight are
        left alone when this loop ends (a supervised restart must not hide their failures); ``aclose`` ends them
        at stop."""
        while True:
            self.ask_due()
            await asyncio.sleep(self._poll_s)

    def ask_due(self) -> list[asyncio.Task[None]]:
        """Ask every symbol whose bar boundary was crossed or whose interval has passed; returns their request
        tasks (those with data)."""
        now = self._clock()
        market_ms = self._market_ms()
        if market_ms % self._tf_ms < self._grace_ms:  # a bar just closed: its last trades may be on their way
            return []
        bar = market_ms // self._tf_ms
        due = []
        for symbol in self.market.symbols:
            crossed = bar > self._boundary.get(symbol, bar)
            self._boundary[symbol] = bar
            last = self._last_ask.get(symbol)
            resumed = symbol in self._not_live and self._why_not_live(symbol) is None
            if (crossed or resumed or last is None or now - last >= self.interval_s) and (
                    task := self.ask_if_live(symbol)):
                due.append(task)
        return due

    def ask_if_live(self, symbol: str) -> asyncio.Task[None] | None:
        """A scheduled ask: made only while the symbol's market data is live, else skipped (counted) and made as
        soon as it is live again."""
        if self._why_not_live(symbol) is not None:
            self._last_ask[symbol] = self._clock()  # counted once per interval, not once per poll
            self._not_live.add(symbol)
            self.stats.skipped_not_live += 1
            return None
        self._not_live.discard(symbol)
        return self._ask(symbol)

    def ask_now(self, symbol: str) -> asyncio.Task[None] | None:
        """The trader's Ask now: as ``_ask``; while the symbol's market data is not live, an ERROR card says why
        (never a proposal) and None is returned."""
        if (why := self._why_not_live(symbol)) is not None:
            self._last_ask[symbol] = self._clock()
            state = self.current_state(symbol)
            if state is None:
                self.stats.skipped_no_data += 1
            else:
                self._answer_error(state, NOT_LIVE, f"no live market data: {why}")
            return None
        return self._ask(symbol)

    def _ask(self, symbol: str) -> asyncio.Task[None] | None:
        """Ask for a decision on ``symbol``: now, or if a request is in flight, once it has finished (one follow-up
        however many asks arrive meanwhile). Returns the symbol's request task (awaiting it covers the follow-up),
        or None if there is no data yet."""
        self._last_ask[symbol] = self._clock()
        current = self._in_flight.get(symbol)
        if current is not None and not current.done():
            if symbol in self._ask_again:  # folded into the follow-up another ask already asked for
                bucket = self._bucket()
                bucket.asks += 1
                bucket.served += 1
                bucket.folded += 1
            self._ask_again.add(symbol)
            self.stats.coalesced += 1
            return current
        state = self.current_state(symbol)
        if state is None:
            self.stats.skipped_no_data += 1
            return None
        task = asyncio.get_running_loop().create_task(self._serve(symbol, state), name=f"decision {symbol}")
        self._in_flight[symbol] = task
        task.add_done_callback(lambda t, s=symbol: self._forget(s, t))
        self.version += 1
        return task

    def current_state(self, symbol: str) -> MarketState | None:
        m = self.market[symbol]
        q = m.quote
        position, pnl_sign = self._position_of(symbol)
        series = m.candles.series(self.timeframe)
        newest = series.last()
        if newest is None:
            return None
        return compute_state(
            series,
            symbol=symbol,
            quote_bid=q.bid if q else None,
            quote_ask=q.ask if q else None,
            position=position,
            position_pnl_sign=pnl_sign,
            # The market clock may trail the newest bar (another symbol's trade, a replay's first frame).
            now_ms=max(int(self._market_ms()), newest.open_ms),
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
            if self._why_not_live(symbol) is not None:  # the feed dropped while the request was out
                self.stats.skipped_not_live += 1
                self._not_live.add(symbol)
                return
            state = self.current_state(symbol)
            if state is None:
                return
            await self._request(state)

    async def _request(self, state: MarketState) -> None:
        self.stats.requests += 1
        now = self._clock()
        if self._open_until > now:
            if not self._served_from_cache(state):
                self._answer_error(state, "circuit_open", "model unavailable: too many recent failures, "
                                   f"retrying in {self._open_until - now:.0f} s")
            return
        trial = self._failures >= self.breaker_threshold  # half-open: one request finds out if the model is back
        if trial and self._trial:
            if not self._served_from_cache(state):
                self._answer_error(state, "circuit_open", "model unavailable: a trial request is finding out "
                                   "whether it answers again")
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
            self._answered(decision, state)
            log.debug("decision for %s in %.0f ms", state.symbol, (time.perf_counter() - started) * 1000)

    def _served_from_cache(self, state: MarketState) -> bool:
        """While the model is not called (breaker open), a stored answer that fits still serves: True if one did.
        It says nothing about the endpoint, so the breaker is left as it is."""
        if self.cache is None:
            return False
        found = self.cache.lookup(state, model=self.provider.model, prompt_version=self.provider.prompt_version,
                                  prompt_digest=prompt.digest(prompt.render(state)))
        if found is None:
            return False
        self.stats.decisions += 1
        self._answered(found.decision, state)
        return True

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
        self._answer_error(state, reason, message)

    def _answer_error(self, state: MarketState, reason: str, message: str) -> None:
        self._answered(self._error(state, reason, message), state, error_reason=reason)

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

    def _answered(self, decision: Decision, state: MarketState, error_reason: str | None = None) -> None:
        """Every answer lands here: counted, made the symbol's current decision (errors excepted), and recorded in
        the history and told to the listeners when it is history-worthy (module docstring)."""
        status = decision.meta.cache_status
        self.stats.by_badge[status.value] += 1
        self._count(status)
        self.version += 1
        if decision.body is None:  # an ERROR: shown in the history, the current decision stands
            symbol = decision.symbol
            # The same failure again (an outage, every interval): counted, not recorded, so the history keeps
            # the decisions made before it rather than filling with copies of one error.
            if symbol in self._last_error_reason and self._last_error_reason[symbol] == (error_reason or "error"):
                self.error_repeats[symbol] = self.error_repeats.get(symbol, 0) + 1
                self.stats.errors_folded += 1
                return
            self._record(DecisionEvent(decision, state, changed=False, fresh=False), error_reason or "error")
            return
        symbol, now, action = decision.symbol, self._clock(), decision.body.action
        before = self.current.get(symbol)
        changed = before is None or before.decision.body is None or before.decision.body.action is not action
        fresh = self._is_fresh(decision, state)
        confirmations = 0 if changed else before.confirmations + (not fresh)
        self.current[symbol] = SymbolDecision(
            symbol=symbol, decision=decision, state=state,
            action_since=now if changed else before.action_since,
            updated_at=now, confirmations=confirmations, fresh=fresh,
        )
        if changed or (fresh and action is not Action.HOLD):
            self._record(DecisionEvent(decision, state, changed=changed, fresh=fresh))

    def _is_fresh(self, decision: Decision, state: MarketState) -> bool:
        if self.cache is not None:
            return decision.meta.cache_status not in SERVED
        # No cache: every ask is answered anew, and only a newer closed bar makes it news.
        previous = self._fresh_bar.get(state.symbol)
        if previous is not None and state.bar_close_ms <= previous:
            return False
        self._fresh_bar[state.symbol] = state.bar_close_ms
        return True

    def _record(self, event: DecisionEvent, error_reason: str | None = None) -> None:
        symbol = event.decision.symbol
        self._last_error_reason[symbol] = error_reason
        self.error_repeats[symbol] = 0
        self.decisions.append(event.decision)
        self.recorded += 1
        for listener in self.listeners:
            listener(event)

    def _count(self, status: CacheStatus) -> None:
        bucket = self._bucket()
        bucket.asks += 1
        if status in SERVED:
            bucket.served += 1
        elif status is CacheStatus.ERROR:
            bucket.errors += 1
        else:
            bucket.model_calls += 1
        if self.cache is not None:  # what the cache saved since the last answer (its stats are cumulative)
            s = self.cache.stats
            bucket.saved_latency_ms += s.latency_saved_ms - self._saved_seen[0]
            bucket.saved_cost_usd += s.cost_saved_usd - self._saved_seen[1]
            self._saved_seen = (s.latency_saved_ms, s.cost_saved_usd)

    def _bucket(self) -> _Bucket:
        minute = int(self._clock() // BUCKET_S)
        if not self._buckets or self._buckets[-1].minute != minute:
            self._buckets.append(_Bucket(minute))
        return self._buckets[-1]

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"requests": s.requests, "decisions": s.decisions, "errors": s.errors, "coalesced": s.coalesced}
