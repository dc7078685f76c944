"""What the live broker tells the rest of the terminal: its error, endpoints, account, reconciliation reports and
counters (``live_broker`` re-exports them; kept apart so its parts can share them without importing each other)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# Journal.record_reconciliation(at_ms, exchange, account, trigger, report)
JournalHook = Callable[[int, str, str, str, dict[str, Any]], None]
# on_fault(task name, exception): a task of the broker ended with an error (the session's Supervisor hears it)
FaultHook = Callable[[str, BaseException], None]
# on_warning(sentence): something the trader must read (a position the account does not hold ...)
WarningHook = Callable[[str], None]

EXCHANGE_NAMES = {"binance": "Binance", "built-in": "built-in exchange", "coinbase": "Coinbase", "kraken": "Kraken"}


class LiveBrokerError(Exception):
    """The live broker cannot trade (keys rejected, no network, unknown exchange ...); str() is one sentence."""


@dataclass(frozen=True)
class LiveEndpoints:
    """The built-in exchange on loopback: ``rest`` = "http://127.0.0.1:PORT", ``ws_api`` = ".../ws-api/v3"."""

    rest: str
    ws_api: str


@dataclass(frozen=True)
class LiveAccount:
    exchange: str
    testnet: bool
    account: str  # masked key (+ uid)
    balances: dict[str, Decimal]  # free + locked per asset, non-zero only


@dataclass
class Reconciliation:
    """What one comparison of our orders with the exchange account found."""

    trigger: str
    at_ms: int
    orders_updated: list[dict[str, Any]] = field(default_factory=list)
    fills_recovered: list[dict[str, Any]] = field(default_factory=list)
    unknown_orders: list[dict[str, Any]] = field(default_factory=list)  # adopted, origin MANUAL
    balance_differences: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # each session symbol whose position (from fills) differs from the account's coins: symbol, position, account,
    # difference. Reported every time; ``changed`` says whether it differs from what the last report said.
    position_differences: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)  # orders awaiting their answer: not concluded
    # bracket legs a crash left missing (an entry done without its stop; a take-profit whose stop was canceled
    # before its exit was sent) and what was done about each: entry, symbol, action, note, and the orders' ids
    bracket_repairs: list[dict[str, Any]] = field(default_factory=list)
    changed_positions: bool = False

    def report(self) -> dict[str, Any]:
        return {"orders_updated": self.orders_updated, "fills_recovered": self.fills_recovered,
                "unknown_orders": self.unknown_orders, "balance_differences": self.balance_differences,
                "errors": self.errors, "position_differences": self.position_differences,
                "unresolved": self.unresolved, "bracket_repairs": self.bracket_repairs}

    @property
    def clean(self) -> bool:
        """Nothing new: a position difference already reported (coins held before this session) does not count."""
        return not (self.orders_updated or self.fills_recovered or self.unknown_orders or self.balance_differences
                    or self.errors or self.unresolved or self.bracket_repairs
                    or self.changed_positions)


@dataclass
class LiveCounters:
    orders_sent: int = 0
    orders_rejected: int = 0  # by the exchange or before sending
    fills: int = 0
    stream_trades: int = 0  # trades received from the user stream (a fill already recovered over REST included)
    cancels: int = 0
    cancel_refusals: int = 0
    reconciliations: int = 0
    fills_recovered: int = 0
    orders_adopted: int = 0
    in_flight_lookups: int = 0  # submits whose answer was lost and were looked up by client id
    kill_waits: int = 0  # cancel_all waited for submits still awaiting their answer
    stream_reconnects: int = 0
    task_faults: int = 0  # broker tasks that ended with an error (each also goes to on_fault)
    errors: int = 0
    listener_errors: int = 0
