"""Composition root: wires market -> (later) decisions -> trading, and owns every task's lifetime.

The session knows nothing of Qt. The UI reads ``market``, ``feed`` and ``bus`` on its own timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.llm.cache import DecisionCache
from app.llm.local import DECISION_TIMEOUT_S as LOCAL_DECISION_TIMEOUT_S
from app.llm.local import LocalModelProvider
from app.llm.providers import DecisionProvider, OfflineProvider, OpenAIProvider
from app.llm.service import DecisionService
from app.market import exchanges, history, ticker24h
from app.market.adapters import binance, coinbase, kraken
from app.market.book_guard import CoinbaseSequenceGuard, KrakenBookGuard
from app.market.bus import EventBus, Subscription
from app.market.candles import TIMEFRAMES
from app.market.connection import FeedConnection, FeedStats
from app.market.exchange_time import ExchangeTimeWindow
from app.market.instruments import Instruments, load_instruments
from app.market.recording import Recorder
from app.market.state import MarketData
from app.models import BookUpdate, FeedState, Quote, Trade
from app.perf.metrics import CANDLE_UPDATE, EXCHANGE_TO_RECEIVE, RECEIVE_TO_BUS, Metrics
from app.perf.probes import LoopLagProbe, ProcessProbe
from app.supervision import Supervisor
from app.trading.broker import Broker, PaperBroker
from app.trading.desk import TradingDesk
from app.trading.journal import Journal, JournalError
from app.trading.journal_owner import PAPER, claim, live_stamp
from app.trading.live_start import (
    LiveStart,
    cash_held_in_balance,
    first_quote,
    live_starting_cash,
    start_exchange,
)
from app.trading.portfolio import q_money
from app.trading.proposals import AutoApproveLimits, ProposalBook
from app.trading.restore import restore
from app.trading.risk import RiskLimits, RiskManager


def _model_key() -> str | None:
    from app.secrets import Secrets  # OPENAI_API_KEY wins, then the OS keyring (or this session's memory)

    return Secrets().get("llm_api_key")


def _digest(key: str | None) -> str:
    """Which key is in use, without keeping the key itself on the session."""
    return hashlib.sha256((key or "").encode()).hexdigest()


if TYPE_CHECKING:
    from app.market.sim.process import ExchangeProcess
    from app.market.sim.server import ExchangeSimulator

log = logging.getLogger(__name__)

LOOP_LAG = "loop_lag"  # how late a 20 ms timer fires: what the window feels

HTTP_BUILD_WAIT_S = 5.0  # at stop: how long a REST client still being built is waited for
STOP_TIMEOUT_S = 5.0
STREAM_DOWN_SHOWN_S = 3.0  # the user stream down longer than this shows on the status bar, in red


class Session:
    def __init__(self, settings: Settings, live: LiveStart | None = None) -> None:
        """``live``: what ``app.trading.live_start.open_live`` found before the session (None: live trading was not
        asked for). With a broker in it the desk trades live on it, on the live session's own journal; without,
        paper, and the trader is told why. A built-in exchange it started is this session's (not started again)."""
        self.settings = settings
        self.live = live
        self.symbols = settings.feed_symbols()
        self.bus = EventBus()
        self.market = MarketData(self.symbols, capacity=settings.candle_capacity)
        self.simulator: ExchangeSimulator | ExchangeProcess | None = live.exchange if live is not None else None
        self.connection: FeedConnection | None = None
        self.recorder: Recorder | None = None
        self.started_ns = time.perf_counter_ns()
        self.history_loaded: dict[str, int] = {}
        self.supervisor = Supervisor()  # every task's lifetime: faults counted, restarted or shown as FAULT
        self._http = None  # httpx.AsyncClient, made on first use
        self._http_building: asyncio.Future | None = None
        # The watchlist's 24 h statistics: polled from the feed's exchange once it is known (start), or why none.
        self.ticker24h: ticker24h.Ticker24hPoller | ticker24h.Ticker24hUnavailable = ticker24h.Ticker24hUnavailable(
            "24 h statistics not loaded yet")
        self._sequenced_book = True
        self._depth_path, self._klines_path = exchanges.SPOT_DEPTH_PATH, exchanges.SPOT_KLINES_PATH
        self.kraken_books: KrakenBookGuard | None = None
        self.coinbase_sequence: CoinbaseSequenceGuard | None = None
        self._book_from_rest = True
        self._market_sub = self.bus.subscribe("market", maxlen=200_000)
        self.paper_broker: PaperBroker | None = None  # the desk's broker when it trades on paper
        # Whichever broker the desk trades on takes its own share of the market (trades, quotes), on its own task;
        # see _run_broker for how it is ordered against the desk's books and marks.
        self._broker_sub: Subscription = self.bus.subscribe("broker", maxlen=200_000, kinds=(Trade, Quote))
        self._market_live = asyncio.Event()  # set once history is in and market events are applied as they come
        self._live_broker_started = False
        self._stream_down_since: float | None = None  # monotonic: when the live user stream was first seen down
        self.metrics = Metrics()
        self.loop_lag = LoopLagProbe(self.metrics.recorder(LOOP_LAG))
        self.process = ProcessProbe()
        self._receive_to_bus = self.metrics.recorder(RECEIVE_TO_BUS)
        self._candle_update = self.metrics.recorder(CANDLE_UPDATE)
        self._exchange_to_receive = self.metrics.recorder(EXCHANGE_TO_RECEIVE)
        self.feed_rate = self.metrics.rate("messages_per_s", source=lambda: self.feed.frames)
        self._model_key_digest = ""
        self._replaced_providers: list[DecisionProvider] = []  # closed once their requests have had their time
        self.model_fallback: str | None = None  # why the local model gave way to the offline rules, if it did
        self._retired_cache: DecisionCache | None = None  # the local model's, after a fallback
        self.provider = self._make_provider()
        # The cache is for models: the offline rules answer in microseconds and their cards must say OFFLINE.
        cache = DecisionCache(
            settings.decision_cache_tolerances(), ttl_s=settings.cache_ttl_s, max_entries=settings.cache_max_entries,
            price_band_atr=settings.cache_price_band_atr,
        ) if self.provider.name != "offline" and settings.cache_enabled else None
        live_broker = live.broker if live is not None else None
        self.journal = Journal(live.journal_path if live_broker is not None and live is not None
                               else settings.journal_path)
        try:  # whose journal: stamped for this session's account, or JournalError (the terminal says why)
            claim(self.journal, live_stamp(live.account) if live is not None and live.account is not None
                  and live_broker is not None else PAPER)
        except JournalError:
            self.journal.close()
            raise
        # One registry of instruments; a live broker has filled it from the exchange's markets already.
        self.instruments = live.instruments if live is not None else Instruments()
        self.desk = self._make_desk(cache)
        if live is not None and live.reason:  # live trading was asked for and is not on: the trader is told why
            self.desk.say("warn", live.reason)
        for note in live.notes if live is not None else ():
            self.desk.say("info", note)
        if self.is_live and self.settings.auto_approve and not self.desk.proposals.auto_approve:
            self.desk.say("info", "Auto-approve is off in live trading unless --auto-approve is on this run's "
                                  "command line: every live order waits for your approval.")
        self.decisions = DecisionService(
            self.provider,
            self.market,
            cache=cache,
            timeframe=settings.decision_timeframe,
            interval_s=settings.decision_interval_s,
            market_ms=self.market_ms,
            timeout_s=self._decision_timeout_s(),
            position_of=self.desk.position_state,
            why_not_live=self.why_not_live,
            metrics=self.metrics,
        )
        self.decisions.listeners.append(self.desk.on_decision_event)

    def market_ms(self) -> int:
        """The market clock decisions are made on (exchange time, ms). A replay's is the newest trade time seen:
        its bars close as the recording says, whatever its speed. A live or synthetic feed's is the wall clock,
        but never behind the newest trade (a clock running late must not leave bars forming that have closed)."""
        if self.settings.replay is not None:
            return self.market.last_exchange_ms
        return max(int(time.time() * 1000), self.market.last_exchange_ms)

    def why_not_live(self, _symbol: str) -> str | None:
        """None while the feed is LIVE (a replay: while connected to the replaying exchange), else its state: no
        decision is made and no proposal approved from market data that stopped coming. One connection carries every
        symbol. A session that has no feed (not started: tests and scripts that bring their own data) has nothing to
        judge."""
        if self.connection is None:
            return None
        state = self.feed.state
        return None if state is FeedState.LIVE else state.name

    def _make_desk(self, cache: DecisionCache | None) -> TradingDesk:
        s = self.settings
        # The one restore path (also what the crash tests check): fills replayed through Portfolio.apply_fill, the
        # day's starting equity, the risk state, and which open orders resume.
        instruments = self.instruments
        live = self.live.broker if self.live is not None else None
        starting_cash = s.starting_cash
        if live is not None and live.account is not None:
            # The account's cash now, less what the live journal's fills moved: replayed, they give the cash now.
            starting_cash = live_starting_cash(self.journal, live.account.balances,
                                               first_quote(instruments, self.symbols))
        # Live: every open order of the journal goes to the broker, whose reconciliation asks the exchange (one in
        # flight at the quit may have filled since); paper cancels what cannot resume.
        restored = restore(self.journal, starting_cash=starting_cash, symbols=self.symbols,
                           daily_loss_limit=s.daily_loss_limit, now_ms=int(time.time() * 1000),
                           reconcile=live is not None)
        broker: Broker
        if live is not None:
            broker = live
            live.journal_hook = self.journal.record_reconciliation  # what each reconciliation found
            # done entries whose legs a crash may have left unplaced, and their legs: placed at reconciliation
            live.restore_bracket_orders(self.journal.bracket_orders())
            # A broker task that died (the user stream's supervisor, an order's follow-up) is a FAULT on the status
            # bar like any part of the terminal; what the trader must read (a position the account does not hold)
            # goes to the messages.
            live.on_fault = self._live_broker_fault
            live.on_warning = lambda sentence: self.desk.say("warn", sentence)
        else:
            # Order ids carry the session start so they never collide with a previous session's in the journal.
            # One registry of instruments shared by proposals, risk and the broker; filled from the exchange at start.
            broker = self.paper_broker = PaperBroker(
                maker_fee=s.maker_fee, taker_fee=s.taker_fee, id_prefix=f"P{int(time.time() * 1000)}-",
                instruments=instruments)
        risk = RiskManager(RiskLimits(
            max_order_notional=s.max_order_notional,
            max_position_value=s.max_position_value,
            order_value_by_symbol=s.max_order_value_by_symbol,
            position_value_by_symbol=s.max_position_value_by_symbol,
            max_open_orders=s.max_open_orders,
            price_band_pct=s.price_band_pct,
            daily_loss_limit=s.daily_loss_limit,
        ), instruments=instruments)
        proposals = ProposalBook(expiry_s=s.proposal_expiry_s, max_drift_pct=s.max_drift_pct,
                                 auto_approve=self._auto_approve(), instruments=instruments,
                                 auto_limits=AutoApproveLimits(s.auto_approve_min_confidence,
                                                               s.auto_approve_max_order_value))
        desk = TradingDesk(
            broker=broker, risk=risk, portfolio=restored.portfolio, journal=self.journal, proposals=proposals,
            metrics=self.metrics, spawn=self.spawn,  # auto-approvals supervised, cancelled at stop
            symbols=self.symbols, on_position_change=cache.on_position_change if cache is not None else None,
            why_not_live=self.why_not_live,
        )
        if self.paper_broker is not None:
            for book in desk.books.values():  # the desk applies the updates; the paper broker walks the same books
                self.paper_broker.on_book(book)
        else:
            live.price_of = desk.last_price  # type: ignore[union-attr]  # what a market order's value is judged at
        # After the desk listens to the broker, so every order canceled or resumed at restart is journaled.
        log.info("%s", desk.resume_from(restored))
        desk.fills = list(reversed(self.journal.recent_fills(1000)))  # the blotter shows history, not only today
        return desk

    def _auto_approve(self) -> bool:
        """Paper: the setting (or --auto-approve). Live: only --auto-approve on this run's command line
        (``LiveStart.auto_approve``); a settings file that turns it on is not enough to send orders nobody
        confirmed to an exchange account."""
        live = self.live
        if live is None or live.broker is None:
            return self.settings.auto_approve
        return live.auto_approve

    def _make_provider(self) -> DecisionProvider:
        s = self.settings
        if s.llm_url is None:
            if s.decision_source == "rules":
                return OfflineProvider()
            return LocalModelProvider(threads=s.local_model_threads)
        key = _model_key()
        self._model_key_digest = _digest(key)
        return OpenAIProvider(
            base_url=s.llm_url,
            model=s.llm_model,
            api_key=key,
            timeout_s=s.llm_timeout_s,
            max_retries=s.llm_max_retries,
        )

    def _decision_timeout_s(self) -> float:
        """The local model answers one symbol at a time: its questions may wait behind the others'."""
        if isinstance(self.provider, LocalModelProvider):
            return max(self.settings.decision_timeout_s, LOCAL_DECISION_TIMEOUT_S)
        return self.settings.decision_timeout_s

    def apply_model_key(self) -> bool:
        """Use the model key as it is now, if it changed (the settings dialog just stored one; a key kept in
        memory only would otherwise never be used). New requests go to a new provider; requests in flight finish
        on the old one, closed once they have had their time. True if the provider was replaced."""
        if self.settings.llm_url is None or _digest(_model_key()) == self._model_key_digest:
            return False
        old = self.provider
        self.provider = self.decisions.provider = self._make_provider()
        log.info("model API key changed: new requests use it")
        self._replaced_providers.append(old)

        def close_old() -> None:
            if old in self._replaced_providers:  # else stop() has closed it already
                self._replaced_providers.remove(old)
                self.spawn(old.aclose(), "close replaced provider")

        asyncio.get_running_loop().call_later(self.settings.decision_timeout_s, close_old)
        return True

    @property
    def source_label(self) -> str:
        s = self.settings
        if s.exchange == "sim":
            dialect = "" if s.sim_protocol == "binance" else f" ({s.sim_protocol} protocol)"
            if s.replay is not None:
                return f"BUILT-IN EXCHANGE · replay {s.replay.name} ×{s.replay_speed:g}{dialect}"
            return f"BUILT-IN EXCHANGE · synthetic{dialect}"
        return f"{s.exchange.upper()} · {'via ' + s.ws_url if s.ws_url else 'live'}"

    @property
    def feed(self) -> FeedStats:
        return self.connection.stats if self.connection else FeedStats()

    @property
    def broker_label(self) -> str:
        """The broker's own label, the one source of what the status bar, title, ticket, cards, dialogs and the
        smoke test's JSON say: "PAPER", "LIVE · Binance testnet", "LIVE · built-in exchange" ..."""
        return self.desk.broker.label

    def user_stream_down_s(self, now: float | None = None) -> float | None:
        """How long the live broker's user stream (fills, order updates) has been down, once that is longer than
        ``STREAM_DOWN_SHOWN_S`` (a reconnect that quick is not worth a red word); None while it is up, for a paper
        broker, and before the live broker started. ``now``: ``time.monotonic()``."""
        broker = self.desk.broker
        if not self._live_broker_started or getattr(broker, "stream_up", True):
            self._stream_down_since = None
            return None
        now = time.monotonic() if now is None else now
        if self._stream_down_since is None:
            self._stream_down_since = now
        down = now - self._stream_down_since
        return down if down > STREAM_DOWN_SHOWN_S else None

    @property
    def is_live(self) -> bool:
        return self.desk.broker.mode == "LIVE"

    async def _start_exchange(self) -> ExchangeSimulator | ExchangeProcess:
        """The built-in exchange, in its own process unless ``sim_process`` is off. Imported here, once the window
        is up: the window does not need it to appear."""
        return await start_exchange(self.settings, self.symbols)

    async def start(self) -> None:
        """Start the built-in exchange if chosen, connect the feed, load history. Raises before anything runs when
        the built-in exchange cannot start: ExchangeStartError from its process (port taken, bad replay file), or
        in-process RecordingError / SimulatorPortInUse."""
        s = self.settings
        if isinstance(self.provider, LocalModelProvider):  # loads while the exchange starts, after the first paint
            self.spawn(self.provider.run(self._local_model_failed), "local model")
        if s.exchange == "sim":
            if self.simulator is None:  # else live_start started it, with its trading API on
                self.simulator = await self._start_exchange()
            feed = exchanges.plan(s.sim_protocol, self.symbols, ws_url=self.simulator.ws_url,
                                  rest_url=self.simulator.rest_url, simulated=True)
        else:
            # Live on a testnet: its own market data (its prices are the ones its orders fill at).
            testnet = self.live is not None and self.live.testnet
            feed = exchanges.plan(s.exchange, self.symbols, ws_url=s.ws_url, rest_url=s.rest_url, testnet=testnet)
        if self.is_live:
            await self._start_live_broker()
        rest_base = feed.rest_base
        self._depth_path, self._klines_path = feed.depth_path, feed.klines_path
        # --record: every frame as received, to replay later (lost from here once; now built with the connection)
        self.recorder = Recorder(s.record_path) if s.record_path is not None else None
        taps = []
        if feed.adapter is kraken:
            self.kraken_books = KrakenBookGuard(self.symbols, lambda msgs: self.connection.send_soon(msgs))
            taps.append(self.kraken_books.on_raw)
        boundaries = [self._invalidate_books]
        if feed.adapter is coinbase:  # its books are checked by frame numbers and resync from level2 snapshots
            self.coinbase_sequence = CoinbaseSequenceGuard(self.symbols, self.desk.books,
                                                           lambda msgs: self.connection.send_soon(msgs))
            taps.append(self.coinbase_sequence.on_raw)
            boundaries.append(self.coinbase_sequence.on_boundary)
        self._book_from_rest = feed.book_from_rest
        self.connection = FeedConnection(
            feed.url, feed.adapter, self.bus.publish, subscribe=feed.subscribe, stale_after_s=s.stale_after_s,
            recorder=self.recorder, taps=taps, on_boundary=boundaries,
            # A replay's frames carry their recorded times: judged on the stream's own clock, not the wall's.
            exchange_time=ExchangeTimeWindow("stream" if s.replay is not None else "wall"),
        )
        self._sequenced_book = feed.sequenced_book
        # Each part restarts after a failure: the connection reconnects from scratch, the market consumer goes on
        # with the next batch (history is loaded once only), the decision loop and the desk's ticks hold no state
        # that a failure could leave half-updated.
        sup = self.supervisor
        self.spawn(self._load_instruments(feed.instruments_api, feed.instruments_base), "instruments")
        sup.supervise("feed", self.connection.run)
        sup.supervise("loop-lag probe", self.loop_lag.run)
        sup.supervise("market", lambda: self._run_market(rest_base), restart_factory=self._consume_market)
        sup.supervise("decisions", self.decisions.run)
        sup.supervise("desk", lambda: self._run_desk(rest_base))
        self.ticker24h = ticker24h.for_feed(s.sim_protocol if s.exchange == "sim" else s.exchange, feed,
                                            simulated=s.exchange == "sim", client=self._http_client,
                                            symbols=self.symbols)
        if isinstance(self.ticker24h, ticker24h.Ticker24hPoller):  # slow, never fatal: failures are counted
            sup.supervise("24 h statistics", self.ticker24h.run)
        # Its own subscription, consumed by its own task: the desk does not feed the broker.
        sup.supervise(f"{self.desk.broker.mode.lower()} broker", self._run_broker)
        self.decisions.on_task_fault = lambda name, exc: sup.record_fault(name, exc, stopped=False)

    async def _start_live_broker(self) -> None:
        """The desk restored the live journal: now the broker reconciles it with the account (open orders, fills
        missed while away, balances) and starts its user stream. A failure is said to the trader; the broker's own
        supervisor keeps trying the stream."""
        journaled = {f.id for f in self.journal.all_fills()}
        day_open = self.desk.portfolio.day_start_ms is not None
        self._live_broker_started = True  # from here its user stream is meant to be up
        try:
            await self.desk.broker.start()
            self._absorb_recovered_fills(journaled, day_open)
        except Exception as exc:
            log.exception("the live broker did not start")
            self.desk.say("error", f"{self.broker_label}: the account could not be reconciled ({exc}); orders may "
                                   "be refused until the exchange answers")
        else:
            self.desk.say("info", f"{self.broker_label}: account reconciled, user stream on")

    def _live_broker_fault(self, name: str, exc: BaseException) -> None:
        """The live broker's ``on_fault``: one of its tasks ended with an error. Nobody restarts that task, so it
        is a FAULT in red on the status bar until the terminal restarts (the smoke test fails on it too)."""
        self.supervisor.record_fault(f"live broker · {name}", exc, stopped=True)

    def _absorb_recovered_fills(self, journaled: set[str], day_open: bool) -> None:
        """The starting cash was the account's balance less what the journal's fills moved; fills made while the
        terminal was away, recovered just now, are in that balance already: their cash must not count twice."""
        assert self.live is not None
        recovered = [f for f in self.journal.all_fills() if f.id not in journaled]
        back = cash_held_in_balance(recovered, self.live.balances_ms)
        if back:
            portfolio = self.desk.portfolio
            portfolio.cash = q_money(portfolio.cash + back)
            portfolio.starting_cash = q_money(portfolio.starting_cash + back)
            portfolio.version += 1
            if not day_open:  # the day began at the first recovered fill, on the short cash: it begins again
                portfolio.resume_day(None, portfolio.equity())
            log.info("%d fills made while away were in the account's balance already: cash %s", len(recovered),
                     portfolio.cash)

    def _local_model_failed(self, sentence: str) -> None:
        """The local model could not start or died: the offline rules propose from now on, uncached (their cards
        say OFFLINE), and the trader is told why. A handled fallback, not a task fault; the smoke test's
        counters show it as ``model_fallback``."""
        local = self.provider
        self.model_fallback = sentence
        self.provider = self.decisions.provider = OfflineProvider()
        # Its requests in flight finish (answered by the rules); the cache is closed at stop with the rest.
        self._retired_cache, self.decisions.cache = self.decisions.cache, None
        self._replaced_providers.append(local)  # closed at stop (its process may still need reaping)
        self.desk.say("warn", sentence)

    async def stop(self) -> None:
        for t in await self.supervisor.stop(STOP_TIMEOUT_S):
            log.error("task %s did not stop within %g s", t.get_name(), STOP_TIMEOUT_S)
        # Each resource is released even if another fails (a disk full while the recording flushes must not
        # leave the exchange process or the journal open).
        # Decision requests in flight end first (the decisions loop leaves them be when it stops or restarts).
        closers: list[tuple[str, Any]] = [("decisions", self.decisions.aclose)]
        closers += [(f"provider {i}", p.aclose) for i, p in enumerate(self._providers())]
        # The desk first: proposals nobody reviewed are journaled EXPIRED while the journal is still open.
        closers += [("desk", self.desk.close)]
        closers += [("retired cache", self._retired_cache.aclose if self._retired_cache else None)]
        closers += [("broker", self.desk.broker.aclose), ("http", self._close_http),
                    ("journal", self.journal.close), ("recorder", self.recorder.close if self.recorder else None),
                    ("exchange", self.simulator.stop if self.simulator else None)]
        self._replaced_providers.clear()
        for what, close in closers:
            if close is None:
                continue
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("closing the %s failed", what)
        log.info("session stopped")

    async def _close_http(self) -> None:
        """The REST client; one still being built when the session stops is waited for (a few seconds at most) and
        closed too: its worker thread does not outlive the loop, and no client is left open."""
        building = self._http_building
        if self._http is None and building is not None:
            try:
                self._http = await asyncio.wait_for(asyncio.shield(building), HTTP_BUILD_WAIT_S)
            except Exception as exc:  # a failed or slow build: nothing to close (the thread ends on its own)
                log.warning("the REST client was still being built at stop: %s", exc or type(exc).__name__)
                return
        if self._http is not None:
            await self._http.aclose()

    def _providers(self) -> list[DecisionProvider]:
        """The provider in use and any replaced by a new key whose delayed close has not run yet."""
        return [self.provider, *self._replaced_providers]

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A one-off task owned by the session: cancelled at stop; if it raises, a fault (crash report, FAULT)."""
        return self.supervisor.spawn(coro, name)

    @property
    def task_faults(self) -> int:
        """Session tasks that failed since start (restarted or not): the smoke test fails when this is not 0."""
        return self.supervisor.fault_count

    async def _run_market(self, rest_base: str | None) -> None:
        # The feed is already connected and the bus buffers it, so history can load first without losing
        # live trades; applying history before live trades keeps the forming bar continuous.
        if rest_base is not None and not (self.settings.exchange == "sim" and self.settings.replay is not None):
            await self._load_history(rest_base)
            # A first proposal as soon as there is history, not only after the next bar closes.
            self._apply(self._market_sub.drain())
            for symbol in self.symbols:
                self.decisions.ask_if_live(symbol)
        await self._consume_market()

    async def _consume_market(self) -> None:
        sub = self._market_sub
        self._market_live.set()
        while True:
            self._apply(await sub.next_batch())

    def _apply(self, batch: list) -> None:
        if not batch:
            return
        t0 = time.perf_counter_ns()
        self._record_arrival(batch, t0)
        self.market.apply(batch)
        self._candle_update.record(time.perf_counter_ns() - t0)
        if not self._sequenced_book:
            batch = [ev for ev in batch if not isinstance(ev, BookUpdate)]
        self.desk.on_market(batch)

    async def _run_broker(self) -> None:
        """The broker's market. Paper: trades fill resting limits and trigger stops, quotes price market orders.
        Live: trades reaching a take-profit the terminal holds send its exit. Restarted with the next batch after a
        failure (the broker keeps its orders).

        Ordering. Both subscriptions get every event at the same ``publish``, in the same order, but two tasks
        consume them, so on its own the broker could see a trade before the desk has applied the book updates
        published ahead of it (a stop would walk a book older than the trade that triggered it). So before the
        broker takes a batch, this task applies whatever the market subscription holds: all of it was published
        no later than the batch's last event, hence the books the paper broker walks, and the desk's marks (last
        price) that the live broker values market orders at, include every update published before each trade of
        the batch. They may be newer than an earlier trade of the batch (a later update is applied already),
        never older. Quotes in the batch are the newest per symbol (conflated), as the desk's. Until history is
        loaded the market's events wait in the bus (candles must stay continuous) and so does the broker: it never
        fills against books that history loading holds back."""
        await self._market_live.wait()
        broker, sub = self.desk.broker, self._broker_sub
        while True:
            batch = await sub.next_batch()
            try:
                self._apply(self._market_sub.drain())
            except Exception as exc:  # the market's fault, not the broker's: counted as it, the broker goes on
                self.supervisor.record_fault("market", exc, stopped=False)
            broker.on_market(batch)

    def _record_arrival(self, batch: list, now_ns: int) -> None:
        """Receipt -> subscriber for every event; exchange -> receipt for trades (it includes the clock offset)."""
        to_bus = self._receive_to_bus
        wall_now_ns = time.time_ns()
        for ev in batch:
            waited = now_ns - ev.recv_ns
            to_bus.record(waited)
            if isinstance(ev, Trade):  # wall time at receipt minus the exchange's stamp
                self._exchange_to_receive.record(wall_now_ns - waited - ev.exchange_ms * 1_000_000)

    async def _run_desk(self, rest_base: str | None) -> None:
        """Once a second: proposals expire, equity is sampled; an order book without a snapshot gets one."""
        while True:
            self.desk.tick()
            for symbol, book in self.desk.books.items():
                if rest_base is not None and self._book_from_rest and (not book.has_snapshot or book.needs_resync):
                    await self._load_depth(rest_base, symbol)
            await asyncio.sleep(1.0)

    async def _load_instruments(self, api: str, base: str | None) -> None:
        """Each symbol's tick, lot and minimums from the exchange's own REST API (the built-in exchange serves
        Binance's exchangeInfo whatever protocol it speaks; see exchanges.plan); what cannot be loaded is said to
        the trader, on safe defaults."""
        loaded = await load_instruments(await self._http_client(), api, self.symbols, base)
        self.instruments.add(loaded.loaded, {})
        for symbol, text in loaded.problems.items():
            self.instruments.problems[symbol] = text
        self.desk.say_instrument_problems()

    def _invalidate_books(self, since_ns: int) -> None:
        """The feed connected or dropped: no book is trusted (nor filled from) until a fresh snapshot, and no bid/ask
        until the new connection sends one."""
        for book in self.desk.books.values():
            book.invalidate(since_ns)
        if self.paper_broker is not None:
            self.paper_broker.feed_reset(since_ns)

    async def _load_depth(self, rest_base: str, symbol: str) -> None:
        import httpx

        try:
            client = await self._http_client()
            # Stamped when asked, not when answered: an answer from before a reconnect (the old exchange's ids) that
            # arrives after it must be refused by the book like anything else from the old connection.
            asked_ns = time.perf_counter_ns()
            resp = await client.get(f"{rest_base}{self._depth_path}", params={"symbol": symbol, "limit": 1000})
            resp.raise_for_status()
            answer = resp.json()
            snap = binance.parse_depth_snapshot(answer, symbol, asked_ns)
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            log.warning("no depth snapshot for %s: %s", symbol, exc)
            return
        if self.recorder is not None:  # where it arrived in the stream, which is where a replay must serve it
            self.recorder.write_depth_snapshot(time.perf_counter_ns(), symbol, answer)
        self.desk.books[symbol].apply(snap)

    async def _http_client(self):
        """One REST client for the session. httpx's import and TLS context (certificate loading) take ~100 ms:
        built in a worker thread so the window keeps painting; requests are async on this loop."""
        if self._http is None:
            # One build shared by every part asking at start (instruments, history, depth, 24 h statistics): a
            # client each would leave all but the last one open.
            if self._http_building is None:
                self._http_building = asyncio.ensure_future(asyncio.to_thread(history.make_client))
            building = self._http_building
            try:
                client = await asyncio.shield(building)
            except Exception:
                # A failed build is not kept: the next caller builds again (a cancelled caller is not a failure:
                # CancelledError is no Exception, and the shielded build goes on for the others).
                if self._http_building is building and building.done():
                    self._http_building = None
                raise
            self._http = self._http or client
        return self._http

    async def _load_history(self, rest_base: str) -> None:
        limit = self.settings.history_bars
        if limit == 0:
            return
        import httpx

        client = await self._http_client()

        async def one(symbol: str, tf: str) -> None:
            try:
                candles = await history.fetch_binance_klines(client, rest_base, symbol, tf, limit, self._klines_path)
            except (httpx.HTTPError, ValueError, TypeError, IndexError, KeyError) as exc:
                log.warning("no %s %s history from %s: %s", symbol, tf, rest_base, exc)
                return
            self.market.load_history(symbol, tf, candles)
            self.history_loaded[f"{symbol} {tf}"] = len(candles)

        # All at once: live events wait in the bus until history is in, so every round trip saved shows.
        await asyncio.gather(*(one(symbol, tf) for symbol in self.symbols for tf in TIMEFRAMES))
