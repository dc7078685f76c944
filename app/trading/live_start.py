"""Before the session exists: choose the broker. Paper unless live trading was asked for (``--live`` or the setting
``live_trading``) *and* the exchange took the keys *and* the trader confirmed (the dialog, or ``--confirm-live`` in a
scripted run; never implied). Every other outcome is paper with the reason, in a sentence for the trader.

With the built-in exchange (``--exchange sim --live``) the exchange is started here, its trading API on, with a key
pair made for this run only (given to the exchange and to the LiveBroker, registered with the log scrubber): the
whole live path runs on loopback. The started exchange is handed to the session, which then does not start another.

Qt-free: the confirmation is a coroutine the caller passes (the window's dialog, or one that answers yes).
"""

from __future__ import annotations

import asyncio
import logging
import secrets as token
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.logs import register_secret
from app.market.instruments import Instruments
from app.models import Side

if TYPE_CHECKING:
    from app.market.sim.process import ExchangeProcess
    from app.market.sim.server import ExchangeSimulator
    from app.models import Fill
    from app.trading.journal import Journal
    from app.trading.live_broker import LiveAccount, LiveBroker, LiveEndpoints

log = logging.getLogger(__name__)

# Settings.exchange -> the LiveBroker's exchange; binance-futures is not spot (the live broker trades spot only).
LIVE_EXCHANGE = {"sim": "built-in", "binance": "binance", "coinbase": "coinbase", "kraken": "kraken"}
EXCHANGE_WORDS = {"built-in": "the built-in exchange", "binance": "Binance", "coinbase": "Coinbase",
                  "kraken": "Kraken"}
CONNECT_TIMEOUT_S = 30.0  # loading markets and the balance; ccxt's own request timeout is shorter
STAYS_PAPER = "Trading on PAPER."

# (account, label) -> True to trade live. The window's dialog, or --confirm-live's "yes".
Confirm = Callable[["LiveAccount", str], Awaitable[bool]]


@dataclass
class LiveStart:
    """What ``open_live`` found. ``broker`` set: trade live on it (connected, confirmed). Else paper, and
    ``reason`` says why (None when live trading was not asked for)."""

    broker: LiveBroker | None = None
    account: LiveAccount | None = None
    journal_path: Path | None = None  # the live session's own journal
    exchange: ExchangeSimulator | ExchangeProcess | None = None  # the built-in exchange started for this run
    reason: str | None = None
    instruments: Instruments = field(default_factory=Instruments)  # filled from the exchange's markets
    balances_ms: int = 0  # when the account's balances were asked for (connect): older fills are in them
    notes: list[str] = field(default_factory=list)  # what the trader is told at start (an info message each)
    # Live: auto-approve only when this run's command line said --auto-approve (the settings file's does not carry
    # into live: every live order is confirmed by the trader unless they asked otherwise for this run).
    auto_approve: bool = False

    @property
    def live(self) -> bool:
        return self.broker is not None

    @property
    def testnet(self) -> bool:
        return bool(self.broker is not None and self.broker.testnet)


def mode_words(exchange: str, testnet: bool) -> str:
    """"Binance testnet", "Binance MAINNET", "the built-in exchange": what the reasons and logs name (what the
    trader sees as the broker's name is the broker's own ``label``)."""
    name = EXCHANGE_WORDS.get(exchange, exchange)
    if exchange == "built-in":
        return name
    return f"{name} {'testnet' if testnet else 'MAINNET'}"


def live_journal_path(settings: Settings, exchange: str, testnet: bool, journal_given: bool) -> Path:
    """``--journal FILE`` names this run's journal, live or not. Otherwise a live session keeps its own beside the
    paper one (``journal-live-binance-testnet.sqlite``): paper cash and positions never mix with an account's."""
    if journal_given and settings.journal_path is not None:
        return settings.journal_path
    from app.trading.journal import default_path

    paper = settings.journal_path or default_path()
    suffix = "-testnet" if testnet and exchange != "built-in" else ""
    return paper.parent / f"journal-live-{exchange}{suffix}.sqlite"


def exchange_keys(exchange: str, secrets: Any = None) -> tuple[str | None, str | None]:
    """The trader's key and secret for ``exchange``: environment first, then the OS keyring (``app.secrets``)."""
    from app.secrets import Secrets, exchange_key_names

    store = secrets if secrets is not None else Secrets()
    key_name, secret_name = exchange_key_names(exchange)
    return store.get(key_name), store.get(secret_name)


def run_key_pair() -> tuple[str, str]:
    """A key pair for the built-in exchange, this run only; registered with the log scrubber like any secret."""
    key, secret = token.token_hex(32), token.token_hex(32)
    register_secret(key)
    register_secret(secret)
    return key, secret


def _play_account(settings: Settings, symbols: list[str]) -> dict[str, Decimal]:
    """The built-in exchange's account for a live run: the paper account's money in the quote currency and none of
    the symbols' coins (the exchange would otherwise give some of each), so the account is exactly what the
    terminal's portfolio starts from and reconciliation has no difference to report."""
    from app.market.instruments import split_symbol

    pairs = [split_symbol(sym) for sym in symbols]
    balances = {base: Decimal(0) for base, _quote in pairs}
    for _base, quote in pairs:  # a quote currency is money even where another symbol trades it as a coin
        balances[quote] = Decimal(settings.starting_cash)
    return balances


async def start_exchange(settings: Settings, symbols: list[str], trading_keys: tuple[str, str] | None = None
                         ) -> ExchangeSimulator | ExchangeProcess:
    """The built-in exchange, in its own process unless ``sim_process`` is off; with ``trading_keys`` (key,
    secret) its trading API is on for that account, funded with ``starting_cash`` of the quote currency only
    (``_play_account``). Raises ExchangeStartError (process), RecordingError or SimulatorPortInUse (in-process) when
    it cannot start."""
    s = settings
    if s.sim_process:
        from app.market.sim.process import ExchangeProcess

        kw: dict[str, Any] = {}
        if trading_keys:
            kw["trading_keys"] = trading_keys
            kw["balances"] = ",".join(f"{a}={v}" for a, v in _play_account(s, symbols).items())
        exchange: ExchangeSimulator | ExchangeProcess = ExchangeProcess(
            symbols=symbols, trades_per_s=s.sim_trades_per_s, protocol=s.sim_protocol, port=s.sim_port,
            replay=s.replay, replay_speed=s.replay_speed, **kw,
        )
    else:
        from app.market.sim.markets import MultiMarket
        from app.market.sim.replay import ReplaySource
        from app.market.sim.server import ExchangeSimulator

        source = (
            ReplaySource(s.replay, speed=s.replay_speed)
            if s.replay is not None
            else MultiMarket.for_symbols(symbols, s.sim_trades_per_s)
        )
        kw = {}
        if trading_keys:
            from app.market.sim.order_api_setup import TradingSetup

            kw["trading"] = TradingSetup(keys=dict([trading_keys]), balances=_play_account(s, symbols))
        exchange = ExchangeSimulator(source, port=s.sim_port, protocol=s.sim_protocol, **kw)
    await exchange.start()
    return exchange


async def open_live(settings: Settings, confirm: Confirm, *, journal_given: bool = False, secrets: Any = None,
                    connect_timeout_s: float = CONNECT_TIMEOUT_S, auto_approve: bool = False) -> LiveStart:
    """Connect a LiveBroker (proves the keys, loads the filters into ``LiveStart.instruments``), then ask
    ``confirm``; see the module docstring. Never raises for a refusal (keys, network, declined): the result is
    paper with the reason. The built-in exchange's start errors do raise, as they would in a paper session.
    ``auto_approve``: --auto-approve was on this run's command line (``confirm`` is built knowing it, to say so)."""
    symbols = settings.feed_symbols()
    exchange = LIVE_EXCHANGE.get(settings.exchange)
    if exchange is None:
        return _paper(f"Live trading covers spot markets (Binance, Coinbase, Kraken or the built-in exchange), not "
                      f"{settings.exchange}.")
    testnet = settings.live_testnet and exchange != "built-in"
    started = None
    endpoints = None
    if exchange == "built-in":
        key, secret = run_key_pair()
        started = await start_exchange(settings, symbols, trading_keys=(key, secret))
        trading_url, ws_api_url = getattr(started, "trading_url", None), getattr(started, "ws_api_url", None)
        if not trading_url or not ws_api_url:
            return _paper("The built-in exchange started without its trading API.", started)
        from app.trading.live_broker import LiveEndpoints

        endpoints = LiveEndpoints(rest=trading_url, ws_api=ws_api_url)
    else:
        key, secret = exchange_keys(exchange, secrets)
        if not key or not secret:
            env_key, env_secret = f"{exchange.upper()}_API_KEY", f"{exchange.upper()}_API_SECRET"
            return _paper(f"No {EXCHANGE_WORDS[exchange]} API key and secret: set {env_key} and {env_secret} in the "
                          f"environment or store them in the OS keyring ({exchange}_api_key, {exchange}_api_secret).")
    start = await connect_live(settings, confirm, exchange=exchange, key=key, secret=secret, testnet=testnet,
                               endpoints=endpoints, started=started, journal_given=journal_given,
                               connect_timeout_s=connect_timeout_s)
    start.auto_approve = start.live and auto_approve
    if started is not None and start.live and start.journal_path is not None:
        # The account was made with the exchange this run started and ends with it: a journal of an earlier run
        # would restore positions and cash this account does not have. A real exchange's account persists, and
        # so does its journal.
        note = set_aside(start.journal_path)
        if note is not None:
            log.info("%s", note)
            start.notes.append(note)
    return start


def set_aside(path: Path) -> str | None:
    """Move the journal at ``path`` (with its SQLite side files) to ``<name>.previous<suffix>``, replacing an older
    one, so that this run starts on a fresh journal. Returns what the trader is told, or None if there was none."""
    if not path.exists():
        return None
    previous = path.with_name(f"{path.stem}.previous{path.suffix}")
    sides = ("", "-wal", "-shm", "-journal")
    for side in sides:
        Path(f"{previous}{side}").unlink(missing_ok=True)
    for side in sides:
        source = Path(f"{path}{side}")
        if source.exists():
            source.replace(Path(f"{previous}{side}"))
    return (f"The built-in exchange opens a new account each run: this run's live journal starts empty; the "
            f"previous one is kept as {previous.name}.")


async def connect_live(settings: Settings, confirm: Confirm, *, exchange: str, key: str, secret: str, testnet: bool,
                       endpoints: LiveEndpoints | None = None, started: Any = None, journal_given: bool = False,
                       connect_timeout_s: float = CONNECT_TIMEOUT_S) -> LiveStart:
    """``open_live`` once the keys are known: connect (the exchange judges the keys), confirm, choose the
    journal. ``endpoints`` point the broker at the built-in exchange ``started`` for this run."""
    from app.trading.live_broker import LiveBroker, LiveBrokerError

    symbols = settings.feed_symbols()
    instruments = Instruments()
    where = mode_words(exchange, testnet)
    try:
        broker = LiveBroker(exchange=exchange, api_key=key, secret=secret, testnet=testnet, instruments=instruments,
                            endpoints=endpoints, id_prefix=_id_prefix(), symbols=symbols)
    except LiveBrokerError as exc:
        return _paper(str(exc), started)
    balances_ms = int(time.time() * 1000)
    try:
        account = await asyncio.wait_for(broker.connect(), connect_timeout_s)
    except (LiveBrokerError, TimeoutError) as exc:
        await _close(broker)
        why = (str(exc) if isinstance(exc, LiveBrokerError)
               else f"{where} did not answer within {connect_timeout_s:g} s.")
        return _paper(f"Live trading on {where} is not possible: {why}", started)
    log.info("live trading: %s connected, account %s", where, account.account)
    path = live_journal_path(settings, exchange, testnet, journal_given)
    # Before asking: a journal of another account (a paper journal given with --journal, another exchange, network
    # or key) would make its cash and positions this account's. The built-in exchange's is set aside each run.
    from app.trading.journal_owner import live_refusal, live_stamp

    refused = live_refusal(path, live_stamp(account), fresh=started is not None)
    if refused is not None:
        await _close(broker)
        return _paper(refused, started)
    if not await confirm(account, broker.label):
        await _close(broker)
        return _paper(f"Live trading on {where} was not confirmed.", started)
    return LiveStart(broker=broker, account=account, journal_path=path, exchange=started, instruments=instruments,
                     balances_ms=balances_ms)


def live_starting_cash(journal: Journal, balances: dict[str, Decimal], quote: str) -> Decimal:
    """The live portfolio's starting cash, chosen so that the journal's fills replayed on it give the account's
    cash now: the quote currency's balance minus what the journaled fills moved. The first live session starts on
    the balance itself."""
    from app.trading.portfolio import Portfolio

    flow = Portfolio(starting_cash=Decimal(0))
    for fill in journal.all_fills():
        flow.apply_fill(fill)
    return balances.get(quote, Decimal(0)) - flow.cash


def cash_held_in_balance(fills: Iterable[Fill], balances_ms: int) -> Decimal:
    """Fills the start reconciliation recovered (made while the terminal was away) that are older than the balance
    the starting cash came from: that balance holds their cash already, and the portfolio has just counted it a
    second time. What to add back to the portfolio's cash."""
    from app.trading.portfolio import FeeIn, fee_in

    back = Decimal(0)
    for f in fills:
        if f.exchange_ms < balances_ms:
            notional = f.qty * f.price
            fee = f.fee if fee_in(f) is FeeIn.QUOTE else Decimal(0)  # a fee in the coin never touched the cash
            back += notional + fee if f.side is Side.BUY else fee - notional
    return back


def first_quote(instruments: Instruments, symbols: Iterable[str]) -> str:
    for symbol in symbols:
        quote = instruments.get(symbol).quote
        if quote:
            return quote
    return "USDT"


def _id_prefix() -> str:
    """Our client order ids: "L" + this session's start in hex + "-": unique across sessions, within Binance's 36."""
    return f"L{time.time_ns() // 1_000_000:x}-"


def _paper(reason: str, started: Any = None) -> LiveStart:
    text = f"{reason} {STAYS_PAPER}"
    log.warning("%s", text)
    return LiveStart(reason=text, exchange=started)


async def _close(broker: Any) -> None:
    try:
        await broker.aclose()
    except Exception:
        log.exception("closing the live broker failed")
