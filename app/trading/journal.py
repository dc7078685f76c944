"""The journal: every proposal, review, order update, fill, balance and risk event, in one SQLite file.

It is what survives a crash and what the trader learns from afterwards.

Durability. The file is in WAL mode with ``synchronous=NORMAL`` and every ``record_*`` call is one short
transaction committed before it returns. A commit appends the transaction's pages to the ``-wal`` file with
``write()``, so once the call returns the data is in the operating system's page cache: a killed process (SIGKILL,
a segfault, the UI frozen and shot) loses nothing that was acknowledged, and the next open replays the WAL. What
NORMAL gives up against FULL is the ``fsync`` per commit: after a power cut or a kernel crash the transactions
committed since the last checkpoint may be lost, but the database is never corrupt. FULL would cost a disk flush
(0.1 to several ms) on the event loop for every fill; ``Journal(path, synchronous="FULL")`` is there for whoever
wants it.

Cost. Calls are synchronous and run on the asyncio loop thread (no threads). Measured on the development machine
(2 vCPU VM, ext4, SQLite 3.40, Python 3.12; 5,000 calls of each kind), per call: record_proposal median 36 µs
(mean 45-50), record_review 19 µs, record_order 20 µs, record_fill 15 µs, record_balance 16 µs, record_risk_event
12 µs; p99 under 150 µs for every kind. About one call in 340 also runs SQLite's WAL auto-checkpoint (every ~1,000
pages), which syncs the files and takes 2-7 ms. ``tests/trading/test_journal.py::test_record_cost_is_measured``
prints the figures of the machine it runs on.

Money. Quantities, prices, fees, cash and equity are ``Decimal`` stored as TEXT (``str(d)``) and read back with
``Decimal(text)``: the value and its exponent round-trip exactly ("0.50" stays "0.50"). Inside JSON columns
(review dicts, risk-event orders, balance positions) Decimals are stored as strings too. Market data in the stored
MarketState and model numbers in the decision are floats, stored as JSON numbers (repr, exact round trip).

Schema. ``PRAGMA user_version`` is the schema version; ``MIGRATIONS[i]`` takes a database from version i to i + 1.
Opening an older file migrates it in one transaction (all or nothing); a file from a newer version of the program
raises ``JournalVersionError`` before anything is written to it, and so does a SQLite file of another application
(``PRAGMA application_id``).

- v1: proposals, reviews (without ``edited``), orders, fills, risk_events.
- v2: ``reviews.edited`` (the trader's edit beside the original, for MODIFIED) and the ``balances`` table.
- v3: ``balances.day_start_ms``, ``day_start_equity`` and ``marks``: the UTC day's starting equity and the last
  prices, so a restart within the day carries on the day's PnL (and the daily loss limit) from where it was.
- v4: ``orders.exchange_id`` (the exchange's id of a live order; ours is its client order id) and the
  ``reconciliations`` table: what each comparison of the journal with a live exchange account found (orders
  updated, fills recovered, orders the journal did not know, balance differences, errors), as JSON.
- v5: ``fills.fee_asset`` (the asset a commission was paid in; NULL = the quote currency, as every fill before v5)
  and the ``account_stamp`` table: the one account this journal belongs to (PAPER, or LIVE on an exchange, testnet
  or not, which account), so a session can refuse to mix another account's fills into it.

Restart. ``restart_records()`` reads, in one snapshot, what ``app.trading.restore.restore`` rebuilds the terminal
from: every fill in recording order (replayed through ``Portfolio.apply_fill``, the one rule), the orders whose last
recorded status is NEW or PARTIALLY_FILLED, the proposals still PENDING, the last balance and the last kill
switch / resume / risk-state event. The journal itself does no arithmetic on positions.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import platformdirs

from app.llm.schema import CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import MarketState, PositionState
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Position, Side
from app.trading.portfolio import apply_to_position

log = logging.getLogger(__name__)

APP_NAME = "ai-trading-terminal"
FILE_NAME = "journal.sqlite3"
APPLICATION_ID = 0x41495454  # "AITT" in the SQLite header: this file is a trading journal
BUSY_TIMEOUT_MS = 5000  # only another process holding the file (a DB browser mid-write) ever makes us wait
TABLES = ("proposals", "reviews", "orders", "fills", "balances", "risk_events", "reconciliations", "account_stamp")


class JournalError(Exception):
    """The journal file cannot be used, or a record refers to something never recorded."""


class JournalVersionError(JournalError):
    """The file was written by a newer version of the program, or is not a trading journal."""


class ReviewKind(StrEnum):
    APPROVED = "APPROVED"
    MODIFIED = "MODIFIED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    AUTO_APPROVED = "AUTO_APPROVED"

    @property
    def taken(self) -> bool:
        return self in (ReviewKind.APPROVED, ReviewKind.MODIFIED, ReviewKind.AUTO_APPROVED)


PENDING = "PENDING"  # proposals.status before any review; afterwards it is the last review's kind


# ----- schema -----------------------------------------------------------------------------------------------------


def _to_v1(conn: sqlite3.Connection) -> None:
    for stmt in (
        """CREATE TABLE proposals (
            id TEXT PRIMARY KEY,
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            timeframe TEXT NOT NULL,
            state_ms INTEGER NOT NULL,
            action TEXT,
            body TEXT,
            features TEXT,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt_version TEXT NOT NULL,
            cache_status TEXT NOT NULL,
            cache_age_s REAL,
            cache_distance REAL,
            latency_ms REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cost TEXT NOT NULL,
            cost_known INTEGER NOT NULL,
            error TEXT,
            status TEXT NOT NULL DEFAULT 'PENDING'
        )""",
        "CREATE INDEX proposals_created ON proposals(created_ms)",
        """CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            proposal_id TEXT NOT NULL REFERENCES proposals(id),
            at_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            original TEXT,
            reason TEXT,
            decision_time_ms REAL
        )""",
        "CREATE INDEX reviews_proposal ON reviews(proposal_id)",
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            proposal_id TEXT,
            origin TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            type TEXT NOT NULL,
            qty TEXT NOT NULL,
            limit_price TEXT,
            stop_price TEXT,
            parent_id TEXT,
            reduce_only INTEGER NOT NULL,
            stop_loss_pct TEXT,
            take_profit_pct TEXT,
            status TEXT NOT NULL,
            filled_qty TEXT NOT NULL,
            avg_price TEXT,
            fees TEXT NOT NULL,
            reject_reason TEXT,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        )""",
        "CREATE INDEX orders_status ON orders(status)",
        "CREATE INDEX orders_proposal ON orders(proposal_id)",
        "CREATE INDEX orders_parent ON orders(parent_id)",
        """CREATE TABLE fills (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            order_id TEXT NOT NULL REFERENCES orders(id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            qty TEXT NOT NULL,
            price TEXT NOT NULL,
            fee TEXT NOT NULL,
            liquidity TEXT NOT NULL,
            exchange_ms INTEGER NOT NULL
        )""",
        "CREATE INDEX fills_order ON fills(order_id)",
        """CREATE TABLE risk_events (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            code TEXT NOT NULL,
            message TEXT NOT NULL,
            order_json TEXT
        )""",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ):
        conn.execute(stmt)


def _to_v3(conn: sqlite3.Connection) -> None:
    for stmt in (
        "ALTER TABLE balances ADD COLUMN day_start_ms INTEGER",
        "ALTER TABLE balances ADD COLUMN day_start_equity TEXT",
        "ALTER TABLE balances ADD COLUMN marks TEXT",
    ):
        conn.execute(stmt)


def _to_v2(conn: sqlite3.Connection) -> None:
    for stmt in (
        "ALTER TABLE reviews ADD COLUMN edited TEXT",
        # fill_seq: the last fill recorded when the snapshot was taken, so restore can add the fills after it.
        """CREATE TABLE balances (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            cash TEXT NOT NULL,
            equity TEXT NOT NULL,
            positions TEXT NOT NULL,
            fill_seq INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX balances_at ON balances(at_ms)",
    ):
        conn.execute(stmt)


def _to_v4(conn: sqlite3.Connection) -> None:
    for stmt in (
        "ALTER TABLE orders ADD COLUMN exchange_id TEXT",
        "CREATE INDEX orders_exchange_id ON orders(exchange_id)",
        # One row per reconciliation of a live broker with its exchange account; the counts are columns (to query),
        # the details (which orders, which fills, balance differences, errors) are the JSON report.
        """CREATE TABLE reconciliations (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            exchange TEXT NOT NULL,
            account TEXT NOT NULL,
            trigger TEXT NOT NULL,
            orders_updated INTEGER NOT NULL,
            fills_recovered INTEGER NOT NULL,
            unknown_orders INTEGER NOT NULL,
            balance_differences INTEGER NOT NULL,
            errors INTEGER NOT NULL,
            report TEXT NOT NULL
        )""",
        "CREATE INDEX reconciliations_at ON reconciliations(at_ms)",
    ):
        conn.execute(stmt)


def _to_v5(conn: sqlite3.Connection) -> None:
    for stmt in (
        # NULL = the quote currency: what every fill recorded before v5 was charged in.
        "ALTER TABLE fills ADD COLUMN fee_asset TEXT",
        # At most one row (id = 1): a journal belongs to one account; no row = never stamped (made before v5).
        """CREATE TABLE account_stamp (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            mode TEXT NOT NULL,
            exchange TEXT,
            testnet INTEGER,
            account TEXT
        )""",
    ):
        conn.execute(stmt)


def _to_v6(conn: sqlite3.Connection) -> None:
    for stmt in (
        # Bracket legs at absolute prices (typed as prices on the ticket), used as given whatever the fill.
        "ALTER TABLE orders ADD COLUMN stop_loss_price TEXT",
        "ALTER TABLE orders ADD COLUMN take_profit_price TEXT",
    ):
        conn.execute(stmt)


# MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit: released files depend on them.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_v1, _to_v2, _to_v3, _to_v4, _to_v5, _to_v6)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    return platformdirs.user_data_path(APP_NAME) / FILE_NAME


# ----- records read back ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    proposal_id: str
    at_ms: int
    kind: str
    original: dict[str, Any] | None  # what was proposed (the proposal's body unless the caller gave its own)
    edited: dict[str, Any] | None  # what was sent instead, for MODIFIED
    reason: str | None
    decision_time_ms: float | None  # how long the human took


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    id: str
    created_ms: int
    expires_ms: int
    status: str  # PENDING, or the kind of its last review
    decision: Decision
    state: MarketState | None
    features: dict[str, Any] | None  # the stored MarketState as a dict, as written
    review: ReviewRecord | None  # the last review


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    at_ms: int
    cash: Decimal
    equity: Decimal
    positions: dict[str, tuple[Decimal, Decimal]]  # symbol -> (signed qty, avg price)
    day_start_ms: int | None = None  # the UTC day the portfolio's day PnL counted from (None before v3)
    day_start_equity: Decimal | None = None
    marks: dict[str, Decimal] = field(default_factory=dict)  # symbol -> last price, for the positions held


@dataclass(frozen=True, slots=True)
class RiskEventRecord:
    at_ms: int
    kind: str
    code: str
    message: str
    order: dict[str, Any] | None


# The risk events that set the risk state a restart must restore (a VETO changes nothing).
RISK_CONTROL_KINDS = ("KILL", "RESUME", "STATE")


@dataclass(frozen=True, slots=True)
class RestartRecords:
    """What a restarted terminal is rebuilt from, read in one snapshot (``app.trading.restore`` does the rebuild)."""

    fills: list[Fill]  # every fill, in recording order
    open_orders: list[Order]  # last recorded status NEW / PARTIALLY_FILLED, oldest first
    pending_proposals: list[str]  # ids of proposals never reviewed, oldest first
    last_balance: BalanceRecord | None
    risk_control: RiskEventRecord | None  # the last KILL / RESUME / STATE event


@dataclass(frozen=True, slots=True)
class HistoryRecords:
    """The trade history a (re)started terminal shows (``Journal.history``), read in one snapshot and bounded.

    ``fills`` replayed from ``start_positions`` (what the last balance before ``since_ms`` held, or flat) rebuild
    every position, closed or open, as the portfolio's own rule makes it; the journal does no arithmetic on them."""

    since_ms: int
    start_positions: dict[str, tuple[Decimal, Decimal]]  # symbol -> (signed qty, avg price) before ``fills``
    fills: list[Fill]  # oldest first; the first ones may be a little older than since_ms (since the balance)
    orders: list[Order]  # created since since_ms, and every order still open; newest first
    fills_truncated: bool = False  # more fills than the bound: the oldest were left out (and the start is flat)
    orders_truncated: bool = False


HISTORY_FILL_LIMIT = 20_000  # months of an active account; read and replayed in ~0.3 s at start
HISTORY_ORDER_LIMIT = 500

ACCOUNT_MODES = ("PAPER", "LIVE")


@dataclass(frozen=True)
class AccountStamp:
    """The account a journal belongs to (``Journal.stamp_account`` / ``account_stamp``)."""

    mode: str  # "PAPER" or "LIVE"
    exchange: str | None  # "binance", "built-in", ...; None for paper
    testnet: bool | None  # None for paper
    account: str | None  # what identifies it to the trader (masked key, uid); None for paper

    def __post_init__(self) -> None:
        if self.mode not in ACCOUNT_MODES:
            raise ValueError(f"account stamp mode must be one of {ACCOUNT_MODES}, not {self.mode!r}")
        if self.testnet is not None and not isinstance(self.testnet, bool):
            raise TypeError(f"account stamp testnet must be a bool or None, not {type(self.testnet).__name__}")


RECONCILIATION_PARTS = ("orders_updated", "fills_recovered", "unknown_orders", "balance_differences", "errors")


@dataclass(frozen=True, slots=True)
class ReconciliationRecord:
    """One comparison of the journal with a live exchange account (``Journal.record_reconciliation``)."""

    at_ms: int
    exchange: str
    account: str
    trigger: str  # "start", "reconnect", "in-flight" ...: why it ran
    report: dict[str, Any]  # RECONCILIATION_PARTS -> lists (Decimals as strings), plus anything else the broker adds

    def count(self, part: str) -> int:
        return len(self.report.get(part) or ())


# ----- counterfactual -----------------------------------------------------------------------------------------------

# path(symbol, start_ms, end_ms) -> [(ms, price), ...]: prices observed in that window (candle closes, or highs and
# lows as separate points for a bar-accurate test of the stops), in any order.
PricePath = Callable[[str, int, int], Iterable[tuple[int, float | Decimal]]]


class Exit(StrEnum):
    TAKE_PROFIT = "TAKE_PROFIT"
    STOP_LOSS = "STOP_LOSS"
    HORIZON = "HORIZON"  # neither level touched: out at the last price at or before the horizon
    NO_DATA = "NO_DATA"  # no price after the entry (or no entry price stored): left out of the totals
    PENDING = "PENDING"  # its horizon has not passed yet (the report's now_ms): not scored, left out of the totals


@dataclass(frozen=True, slots=True)
class CounterfactualRow:
    proposal_id: str
    symbol: str
    action: str  # BUY / SELL
    kind: str  # the review: REJECTED / EXPIRED (not taken) or APPROVED / MODIFIED / AUTO_APPROVED (taken)
    taken: bool
    entry_ms: int  # the exchange time of the state the proposal was made from
    entry_price: Decimal | None  # the state's last price
    notional: Decimal  # size_pct of the report's equity
    # The proposal as the model made it, played on the price path:
    exit_ms: int | None
    exit_price: Decimal | None
    exit: Exit
    sim_pnl_pct: Decimal | None  # % of notional, after fee_rate on both legs
    sim_pnl: Decimal | None  # quote currency
    # What was really earned (taken only): the fills of its orders and their bracket children.
    actual_pnl: Decimal | None = None  # realized after fees, plus any open remainder marked at the horizon price
    actual_pnl_pct: Decimal | None = None  # of the entry fills' notional
    actual_fees: Decimal | None = None
    open_qty: Decimal = Decimal(0)  # still open at the last fill (marked, not closed)


@dataclass(frozen=True, slots=True)
class CounterfactualReport:
    """Did the trader's overrides add value? ``rows`` are oldest first.

    - ``missed_pnl``: what the rejected and expired proposals would have earned (positive: saying no cost money).
    - ``taken_pnl``: what the approved / modified / auto-approved ones actually earned.
    - ``model_pnl``: what taking every proposal exactly as proposed would have earned (simulated).
    - ``override_value``: sum over rows with a simulation of (actual, or 0 when not taken) minus simulated, i.e.
      what the trader's decisions earned beyond following the model blindly.
    """

    rows: list[CounterfactualRow]
    equity: Decimal
    horizon_ms: int
    rejected_pnl: Decimal
    expired_pnl: Decimal
    missed_pnl: Decimal
    taken_pnl: Decimal
    taken_sim_pnl: Decimal
    model_pnl: Decimal
    override_value: Decimal
    no_data: int
    pending: int = 0  # proposals whose horizon had not passed at now_ms: listed, not scored, not in the sums
    now_ms: int | None = None  # the time the report was made at (None: every horizon taken as passed)


def report_totals(rows: list[CounterfactualRow], equity: Decimal, horizon_ms: int,
                  now_ms: int | None = None) -> CounterfactualReport:
    """The report over ``rows`` (oldest first) with its sums (see ``CounterfactualReport``): the one rule for the
    journal's BUY / SELL report and for the one with CLOSE rows added (``app.trading.counterfactual``). A PENDING
    row (its horizon not passed at ``now_ms``) is in no sum."""
    zero = Decimal(0)

    def total(rs: Iterable[CounterfactualRow], attr: str) -> Decimal:
        return sum((v for r in rs if (v := getattr(r, attr)) is not None), zero)

    all_rows, rows = rows, [r for r in rows if r.exit != Exit.PENDING]
    simulated = [r for r in rows if r.sim_pnl is not None]
    taken = [r for r in rows if r.taken]
    rejected = total((r for r in rows if r.kind == ReviewKind.REJECTED), "sim_pnl")
    expired = total((r for r in rows if r.kind == ReviewKind.EXPIRED), "sim_pnl")
    override = sum(((r.actual_pnl or zero) - r.sim_pnl for r in simulated if r.sim_pnl is not None), zero)
    return CounterfactualReport(
        rows=all_rows,
        equity=equity,
        horizon_ms=horizon_ms,
        rejected_pnl=rejected,
        expired_pnl=expired,
        missed_pnl=rejected + expired,
        taken_pnl=total(taken, "actual_pnl"),
        taken_sim_pnl=total(taken, "sim_pnl"),
        model_pnl=total(simulated, "sim_pnl"),
        override_value=override,
        no_data=len(rows) - len(simulated),
        pending=len(all_rows) - len(rows),
        now_ms=now_ms,
    )


def pending_row(p: ProposalRecord, action: str, entry: Decimal | None, notional: Decimal) -> CounterfactualRow:
    """A reviewed proposal whose horizon has not passed: listed, not scored (see ``Exit.PENDING``)."""
    assert p.review is not None
    kind = ReviewKind(p.review.kind)
    return CounterfactualRow(
        proposal_id=p.id, symbol=p.decision.symbol, action=action, kind=kind.value, taken=kind.taken,
        entry_ms=p.decision.state_ms, entry_price=entry, notional=notional, exit_ms=None, exit_price=None,
        exit=Exit.PENDING, sim_pnl_pct=None, sim_pnl=None)


# ----- helpers ------------------------------------------------------------------------------------------------------


# Columns holding a moment as epoch milliseconds (UTC); durations in ms (latency_ms, decision_time_ms) are not times.
EPOCH_MS_COLUMNS = frozenset({"created_ms", "expires_ms", "state_ms", "at_ms", "updated_ms", "exchange_ms",
                              "day_start_ms"})


def iso_utc(ms: int | None) -> str:
    """Epoch milliseconds as ISO-8601 UTC to the millisecond (``2024-08-08T10:00:00.000Z``); empty for none (and
    for 0, which the journal writes for a time it never knew)."""
    if not ms:
        return ""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _money(v: Decimal | int | None) -> str | None:
    """Exact text of a Decimal (or int). A float here would already have lost exactness: refuse it."""
    if v is None:
        return None
    if isinstance(v, Decimal) or (isinstance(v, int) and not isinstance(v, bool)):
        return str(v)
    raise TypeError(f"money must be Decimal, not {type(v).__name__} ({v!r})")


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _num(v: float | int | Decimal) -> Decimal:
    """A market price or model number as Decimal, through its shortest repr (60000.1 -> Decimal('60000.1'))."""
    return v if isinstance(v, Decimal) else Decimal(str(v))


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    if is_dataclass(o) and not isinstance(o, type):
        return asdict(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"cannot store {type(o).__name__} in the journal")


def _dumps(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=_json_default, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_STATE_FIELDS = frozenset(f.name for f in fields(MarketState))


def _state(features: dict[str, Any] | None) -> MarketState | None:
    if features is None:
        return None
    kw = {k: v for k, v in features.items() if k in _STATE_FIELDS}
    if "position" in kw:
        kw["position"] = PositionState(kw["position"])
    try:
        return MarketState(**kw)
    except TypeError:  # stored by a MarketState with other fields: the dict is still in ProposalRecord.features
        return None


_FILL_COLUMNS = "id, order_id, symbol, side, qty, price, fee, liquidity, exchange_ms, fee_asset"
_ORDER_COLUMNS = (
    "id, proposal_id, origin, symbol, side, type, qty, limit_price, stop_price, parent_id, reduce_only, "
    "stop_loss_pct, take_profit_pct, status, filled_qty, avg_price, fees, reject_reason, created_ms, updated_ms, "
    "exchange_id, stop_loss_price, take_profit_price"
)
_PROPOSAL_SELECT = """
    SELECT p.*, r.at_ms AS r_at_ms, r.kind AS r_kind, r.original AS r_original, r.edited AS r_edited,
           r.reason AS r_reason, r.decision_time_ms AS r_decision_time_ms
    FROM proposals p
    LEFT JOIN reviews r ON r.id = (SELECT MAX(id) FROM reviews WHERE proposal_id = p.id)
"""


@contextmanager
def _unique(message: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as e:
        raise JournalError(message) from e


def _fill(row: sqlite3.Row) -> Fill:
    return Fill(
        id=row["id"],
        order_id=row["order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        qty=Decimal(row["qty"]),
        price=Decimal(row["price"]),
        fee=Decimal(row["fee"]),
        liquidity=Liquidity(row["liquidity"]),
        exchange_ms=row["exchange_ms"],
        fee_asset=row["fee_asset"],
    )


def _order(row: sqlite3.Row) -> Order:
    request = OrderRequest(
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        qty=Decimal(row["qty"]),
        limit_price=_dec(row["limit_price"]),
        stop_price=_dec(row["stop_price"]),
        origin=OrderOrigin(row["origin"]),
        proposal_id=row["proposal_id"],
        parent_id=row["parent_id"],
        reduce_only=bool(row["reduce_only"]),
        stop_loss_pct=_dec(row["stop_loss_pct"]),
        take_profit_pct=_dec(row["take_profit_pct"]),
        stop_loss_price=_dec(row["stop_loss_price"]),
        take_profit_price=_dec(row["take_profit_price"]),
    )
    return Order(
        id=row["id"],
        request=request,
        status=OrderStatus(row["status"]),
        created_ms=row["created_ms"],
        filled_qty=Decimal(row["filled_qty"]),
        avg_price=_dec(row["avg_price"]),
        fees=Decimal(row["fees"]),
        reject_reason=row["reject_reason"],
        updated_ms=row["updated_ms"],
        exchange_id=row["exchange_id"],
    )


def _proposal(row: sqlite3.Row) -> ProposalRecord:
    body = DecisionBody.model_validate(json.loads(row["body"])) if row["body"] is not None else None
    meta = DecisionMeta(
        provider=row["provider"],
        model=row["model"],
        prompt_version=row["prompt_version"],
        latency_ms=row["latency_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=float(row["cost"]),
        cost_known=bool(row["cost_known"]),
        cache_status=CacheStatus(row["cache_status"]),
        cache_age_s=row["cache_age_s"],
        cache_distance=row["cache_distance"],
        error=row["error"],
    )
    decision = Decision(
        symbol=row["symbol"], timeframe=row["timeframe"], state_ms=row["state_ms"], body=body, meta=meta
    )
    features = _loads(row["features"])
    review = None
    if row["r_kind"] is not None:
        review = ReviewRecord(
            proposal_id=row["id"],
            at_ms=row["r_at_ms"],
            kind=row["r_kind"],
            original=_loads(row["r_original"]),
            edited=_loads(row["r_edited"]),
            reason=row["r_reason"],
            decision_time_ms=row["r_decision_time_ms"],
        )
    return ProposalRecord(
        id=row["id"],
        created_ms=row["created_ms"],
        expires_ms=row["expires_ms"],
        status=row["status"],
        decision=decision,
        state=_state(features),
        features=features,
        review=review,
    )


def _positions_json(positions: dict[str, tuple[Decimal, Decimal]]) -> str:
    return json.dumps({s: [_money(q), _money(p)] for s, (q, p) in positions.items()}, separators=(",", ":"))


def _positions(text: str) -> dict[str, tuple[Decimal, Decimal]]:
    return {s: (Decimal(q), Decimal(p)) for s, (q, p) in json.loads(text).items()}


_BALANCE_COLUMNS = "at_ms, cash, equity, positions, day_start_ms, day_start_equity, marks"


def _balance(r: sqlite3.Row) -> BalanceRecord:
    marks = json.loads(r["marks"]) if r["marks"] else {}
    return BalanceRecord(
        r["at_ms"], Decimal(r["cash"]), Decimal(r["equity"]), _positions(r["positions"]),
        day_start_ms=r["day_start_ms"], day_start_equity=_dec(r["day_start_equity"]),
        marks={s: Decimal(m) for s, m in marks.items()},
    )


def _risk_event(r: sqlite3.Row) -> RiskEventRecord:
    return RiskEventRecord(r["at_ms"], r["kind"], r["code"], r["message"], _loads(r["order_json"]))


def read_history(path: Path, since_ms: int, *, fill_limit: int = HISTORY_FILL_LIMIT,
                 order_limit: int = HISTORY_ORDER_LIMIT) -> HistoryRecords:
    """``Journal.history`` of the journal file at ``path`` through a read-only connection of its own, made and closed
    in the calling thread: for a worker thread (the blotter's history at start), while the loop thread's
    ``Journal`` goes on writing (WAL: the read is one consistent snapshot)."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return _read_history(conn, since_ms, fill_limit, order_limit)
    finally:
        conn.close()


def _read_history(c: sqlite3.Connection, since_ms: int, fill_limit: int, order_limit: int) -> HistoryRecords:
    c.execute("BEGIN")  # a read transaction: the balance and the fills after it agree
    try:
        start = c.execute(
            "SELECT positions, fill_seq FROM balances WHERE at_ms <= ? ORDER BY at_ms DESC, id DESC LIMIT 1",
            (since_ms,),
        ).fetchone()
        start_seq = 0 if start is None else start["fill_seq"]
        rows = c.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE seq > ? ORDER BY seq DESC LIMIT ?",
            (start_seq, fill_limit + 1),
        ).fetchall()
        orders = [_order(r) for r in c.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE created_ms >= ? OR status IN (?, ?) "
            "ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            (since_ms, OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value, order_limit + 1),
        )]
    finally:
        c.execute("COMMIT")
    fills_truncated = len(rows) > fill_limit
    positions = {} if start is None or fills_truncated else _positions(start["positions"])
    return HistoryRecords(
        since_ms=since_ms,
        start_positions=positions,
        fills=[_fill(r) for r in reversed(rows[:fill_limit])],
        orders=orders[:order_limit],
        fills_truncated=fills_truncated,
        orders_truncated=len(orders) > order_limit,
    )


# ----- the journal --------------------------------------------------------------------------------------------------


class Journal:
    """The SQLite journal. One instance per file, used from the loop thread only; a context manager."""

    def __init__(self, path: Path | None = None, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; every write below opens and commits its own.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._open(synchronous.upper())
        except BaseException:
            self._conn.close()
            raise
        self._conn.row_factory = sqlite3.Row

    def _open(self, synchronous: str) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Read-only checks first: a file we must not touch is left exactly as it was.
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            tables = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise JournalError(f"{self.path} is not a readable SQLite database: {e}") from e
        self._check(version, app_id)
        if version == 0 and tables:
            raise JournalVersionError(f"{self.path} holds tables but no journal schema version; not touching it")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("journal %s: WAL unavailable (journal_mode=%s); commits are still durable", self.path, mode)
        c.execute(f"PRAGMA synchronous = {synchronous}")
        c.execute("PRAGMA foreign_keys = ON")
        if version < SCHEMA_VERSION:
            self._migrate()

    def _check(self, version: int, app_id: int) -> None:
        if app_id not in (0, APPLICATION_ID):
            raise JournalVersionError(
                f"{self.path} is a SQLite file of another application (application_id {app_id:#x}); not touching it"
            )
        if version > SCHEMA_VERSION:
            raise JournalVersionError(
                f"{self.path} was written by a newer version of the terminal (journal schema v{version}; this "
                f"version reads up to v{SCHEMA_VERSION}). It was left untouched: upgrade the terminal, or move the "
                "file away to start a new journal."
            )

    def _migrate(self) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]  # again, under the write lock
            self._check(version, c.execute("PRAGMA application_id").fetchone()[0])
            if version > 0:
                log.info("journal %s: migrating schema v%d -> v%d", self.path, version, SCHEMA_VERSION)
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](c)
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            c.execute("COMMIT")
        except BaseException as e:
            c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise JournalError(f"{self.path}: migrating the journal to v{SCHEMA_VERSION} failed: {e}") from e
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed before the caller returns (and so before the UI can acknowledge it)."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    # ----- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file; the last connection folds the WAL back into the database."""
        if self._conn is None:
            return
        try:
            self._conn.execute("PRAGMA optimize")
        finally:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    # ----- recording --------------------------------------------------------------------------------------------
    def record_proposal(
        self, proposal_id: str, decision: Decision, state: MarketState | None, created_ms: int, expires_ms: int
    ) -> None:
        body = decision.body
        m = decision.meta
        with self._write() as c, _unique(f"proposal {proposal_id} is already recorded"):
            c.execute(
                "INSERT INTO proposals (id, created_ms, expires_ms, symbol, timeframe, state_ms, action, body, "
                "features, provider, model, prompt_version, cache_status, cache_age_s, cache_distance, latency_ms, "
                "prompt_tokens, completion_tokens, cost, cost_known, error, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    proposal_id,
                    created_ms,
                    expires_ms,
                    decision.symbol,
                    decision.timeframe,
                    decision.state_ms,
                    None if body is None else body.action.value,
                    None if body is None else _dumps(body.model_dump(mode="json")),
                    None if state is None else _dumps(state.as_dict()),
                    m.provider,
                    m.model,
                    m.prompt_version,
                    m.cache_status.value,
                    m.cache_age_s,
                    m.cache_distance,
                    m.latency_ms,
                    m.prompt_tokens,
                    m.completion_tokens,
                    repr(float(m.cost_usd)),  # shortest repr: float(text) gives the same float back
                    int(m.cost_known),
                    m.error,
                    PENDING,
                ),
            )

    def record_review(
        self,
        proposal_id: str,
        kind: str,
        at_ms: int,
        *,
        original: dict[str, Any] | None = None,
        edited: dict[str, Any] | None = None,
        reason: str | None = None,
        decision_time_ms: float | None = None,
    ) -> None:
        """Record the trader's (or the clock's) verdict and set the proposal's status to it, atomically.

        ``original`` defaults to the proposal's body as the model made it; for MODIFIED, ``edited`` is what was sent.
        """
        kind = ReviewKind(kind).value  # an unknown kind is a bug: ValueError
        with self._write() as c:
            try:
                c.execute(
                    "INSERT INTO reviews (proposal_id, at_ms, kind, original, edited, reason, decision_time_ms) "
                    "VALUES (?, ?, ?, COALESCE(?, (SELECT body FROM proposals WHERE id = ?)), ?, ?, ?)",
                    (proposal_id, at_ms, kind, _dumps(original), proposal_id, _dumps(edited), reason,
                     decision_time_ms),
                )
            except sqlite3.IntegrityError as e:
                raise JournalError(f"review of proposal {proposal_id}, which was never recorded") from e
            c.execute("UPDATE proposals SET status = ? WHERE id = ?", (kind, proposal_id))

    def record_order(self, order: Order) -> None:
        """Insert the order, or update its status, fills, fees and quantity. The quantity may only shrink: a bracket
        leg is cut down to what its filled sibling left (an amend down, as exchanges allow); the rest of the request
        never changes.

        An id already recorded for a different order (another symbol, side, type or creation time, or a larger
        quantity: a broker whose ids restart with each session) raises JournalError instead of overwriting it."""
        r = order.request
        with self._write() as c:
            cur = c.execute(
                f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES ({', '.join('?' * 23)}) "
                "ON CONFLICT(id) DO UPDATE SET status = excluded.status, filled_qty = excluded.filled_qty, "
                "avg_price = excluded.avg_price, fees = excluded.fees, reject_reason = excluded.reject_reason, "
                "updated_ms = excluded.updated_ms, exchange_id = COALESCE(excluded.exchange_id, orders.exchange_id), "
                "qty = excluded.qty "
                "WHERE orders.symbol = excluded.symbol AND orders.side = excluded.side AND orders.type = excluded.type "
                "AND CAST(excluded.qty AS REAL) <= CAST(orders.qty AS REAL) "
                "AND orders.created_ms = excluded.created_ms",
                (
                    order.id,
                    r.proposal_id,
                    r.origin.value,
                    r.symbol,
                    r.side.value,
                    r.type.value,
                    _money(r.qty),
                    _money(r.limit_price),
                    _money(r.stop_price),
                    r.parent_id,
                    int(r.reduce_only),
                    _money(r.stop_loss_pct),
                    _money(r.take_profit_pct),
                    order.status.value,
                    _money(order.filled_qty),
                    _money(order.avg_price),
                    _money(order.fees),
                    order.reject_reason,
                    order.created_ms,
                    order.updated_ms,
                    order.exchange_id,
                    _money(r.stop_loss_price),
                    _money(r.take_profit_price),
                ),
            )
            if cur.rowcount == 0:
                raise JournalError(f"order id {order.id} is already recorded for another order; ids must be unique")

    def record_fill(self, fill: Fill) -> None:
        """Record a fill. Its order must have been recorded first. The same fill twice is recorded once (an
        exchange replaying fills after a reconnect), with a warning; the same id for a different fill raises."""
        with self._write() as c:
            try:
                cur = c.execute(
                    f"INSERT INTO fills ({_FILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO NOTHING",
                    (
                        fill.id,
                        fill.order_id,
                        fill.symbol,
                        fill.side.value,
                        _money(fill.qty),
                        _money(fill.price),
                        _money(fill.fee),
                        fill.liquidity.value,
                        fill.exchange_ms,
                        fill.fee_asset,
                    ),
                )
            except sqlite3.IntegrityError as e:
                raise JournalError(
                    f"fill {fill.id} belongs to order {fill.order_id}, which the journal has not recorded "
                    "(record_order must come before its fills)"
                ) from e
            if cur.rowcount == 0:
                row = c.execute(f"SELECT {_FILL_COLUMNS} FROM fills WHERE id = ?", (fill.id,)).fetchone()
                if _fill(row) != fill:
                    raise JournalError(f"fill id {fill.id} is already recorded for another fill; ids must be unique")
                log.warning("journal: fill %s was already recorded; the duplicate was ignored", fill.id)

    def record_balance(
        self,
        at_ms: int,
        cash: Decimal,
        equity: Decimal,
        positions: dict[str, tuple[Decimal, Decimal]],
        *,
        day_start_ms: int | None = None,
        day_start_equity: Decimal | None = None,
        marks: dict[str, Decimal] | None = None,
    ) -> None:
        """A snapshot of cash, equity and positions (symbol -> (signed qty, avg price)), with the portfolio's day
        start and last prices (what a restart within the same UTC day needs to carry on the day's PnL)."""
        marks_json = None if marks is None else json.dumps({s: _money(m) for s, m in marks.items()},
                                                           separators=(",", ":"))
        with self._write() as c:
            c.execute(
                "INSERT INTO balances (at_ms, cash, equity, positions, fill_seq, day_start_ms, day_start_equity, "
                "marks) VALUES (?, ?, ?, ?, (SELECT IFNULL(MAX(seq), 0) FROM fills), ?, ?, ?)",
                (at_ms, _money(cash), _money(equity), _positions_json(positions), day_start_ms,
                 _money(day_start_equity), marks_json),
            )

    def record_risk_event(
        self, at_ms: int, kind: str, code: str, message: str, order: dict[str, Any] | None = None
    ) -> None:
        """A veto, the kill switch, a resume, a change of risk state; ``order`` is the request concerned."""
        with self._write() as c:
            c.execute(
                "INSERT INTO risk_events (at_ms, kind, code, message, order_json) VALUES (?, ?, ?, ?, ?)",
                (at_ms, str(kind), code, message, _dumps(order)),
            )

    def record_reconciliation(
        self, at_ms: int, exchange: str, account: str, trigger: str, report: dict[str, Any]
    ) -> None:
        """What a live broker's reconciliation found. ``report`` holds a list for each of ``RECONCILIATION_PARTS``
        (missing ones are empty): their lengths are stored as columns, the whole report as JSON."""
        for part in RECONCILIATION_PARTS:
            value = report.get(part)
            if value is not None and not isinstance(value, list | tuple):
                raise TypeError(f"reconciliation part {part!r} must be a list, not {type(value).__name__}")
        counts = [len(report.get(part) or ()) for part in RECONCILIATION_PARTS]
        with self._write() as c:
            c.execute(
                "INSERT INTO reconciliations (at_ms, exchange, account, trigger, orders_updated, fills_recovered, "
                "unknown_orders, balance_differences, errors, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (at_ms, exchange, account, trigger, *counts, _dumps(report)),
            )

    def stamp_account(self, stamp: AccountStamp) -> None:
        """Write the account this journal belongs to (replacing any earlier stamp: the caller decides whether a
        different one may be replaced; ``account_stamp`` tells what is there)."""
        if not isinstance(stamp, AccountStamp):
            raise TypeError(f"stamp_account takes an AccountStamp, not {type(stamp).__name__}")
        with self._write() as c:
            c.execute(
                "INSERT INTO account_stamp (id, mode, exchange, testnet, account) VALUES (1, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET mode = excluded.mode, exchange = excluded.exchange, "
                "testnet = excluded.testnet, account = excluded.account",
                (stamp.mode, stamp.exchange, None if stamp.testnet is None else int(stamp.testnet), stamp.account),
            )

    # ----- reading ----------------------------------------------------------------------------------------------
    def account_stamp(self) -> AccountStamp | None:
        """The account this journal belongs to; None when it was never stamped (every journal made before v5)."""
        r = self._conn.execute("SELECT mode, exchange, testnet, account FROM account_stamp WHERE id = 1").fetchone()
        if r is None:
            return None
        return AccountStamp(r["mode"], r["exchange"], None if r["testnet"] is None else bool(r["testnet"]),
                            r["account"])

    def reconciliations(self, limit: int = 100) -> list[ReconciliationRecord]:
        """Newest first."""
        rows = self._conn.execute(
            "SELECT at_ms, exchange, account, trigger, report FROM reconciliations ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [ReconciliationRecord(r["at_ms"], r["exchange"], r["account"], r["trigger"], json.loads(r["report"]))
                for r in rows]

    def recent_orders(self, limit: int = 200) -> list[Order]:
        """Newest first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY created_ms DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [_order(r) for r in rows]

    def recent_fills(self, limit: int = 200) -> list[Fill]:
        """Newest first."""
        rows = self._conn.execute(f"SELECT {_FILL_COLUMNS} FROM fills ORDER BY seq DESC LIMIT ?", (limit,))
        return [_fill(r) for r in rows]

    def fills_since(self, since_ms: int, limit: int = 1000) -> list[Fill]:
        """The newest ``limit`` fills whose exchange time is at or after ``since_ms``, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE exchange_ms >= ? ORDER BY seq DESC LIMIT ?", (since_ms, limit)
        ).fetchall()
        return [_fill(r) for r in reversed(rows)]

    def orders_since(self, since_ms: int, limit: int = HISTORY_ORDER_LIMIT) -> list[Order]:
        """The newest ``limit`` orders created at or after ``since_ms``, and every order still open, newest first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE created_ms >= ? OR status IN (?, ?) "
            "ORDER BY created_ms DESC, rowid DESC LIMIT ?",
            (since_ms, OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value, limit),
        )
        return [_order(r) for r in rows]

    def history(self, since_ms: int, *, fill_limit: int = HISTORY_FILL_LIMIT,
                order_limit: int = HISTORY_ORDER_LIMIT) -> HistoryRecords:
        """Orders and fills for the blotter's history after a restart (see ``HistoryRecords``), in one snapshot:
        the positions of the last balance recorded at or before ``since_ms`` and every fill recorded after it (at
        most ``fill_limit``, the newest), the orders since ``since_ms`` (at most ``order_limit``). Off the loop
        thread: ``read_history`` (its own read-only connection)."""
        return _read_history(self._conn, since_ms, fill_limit, order_limit)

    def all_fills(self) -> list[Fill]:
        """Every fill, oldest first: to rebuild a Portfolio with its own arithmetic (and rounding) on restart."""
        return [_fill(r) for r in self._conn.execute(f"SELECT {_FILL_COLUMNS} FROM fills ORDER BY seq")]

    def proposals(self, limit: int = 200) -> list[ProposalRecord]:
        """Newest first, each with its last review."""
        rows = self._conn.execute(_PROPOSAL_SELECT + " ORDER BY p.created_ms DESC, p.rowid DESC LIMIT ?", (limit,))
        return [_proposal(r) for r in rows]

    def balances(self, limit: int = 1000) -> list[BalanceRecord]:
        """Newest first: the equity curve across sessions."""
        rows = self._conn.execute(
            f"SELECT {_BALANCE_COLUMNS} FROM balances ORDER BY at_ms DESC, id DESC LIMIT ?", (limit,)
        )
        return [_balance(r) for r in rows]

    def risk_events(self, limit: int = 200) -> list[RiskEventRecord]:
        """Newest first."""
        rows = self._conn.execute(
            "SELECT at_ms, kind, code, message, order_json FROM risk_events ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_risk_event(r) for r in rows]

    def open_orders(self) -> list[Order]:
        """NEW and PARTIALLY_FILLED orders, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status IN (?, ?) ORDER BY created_ms, rowid",
            (OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value),
        )
        return [_order(r) for r in rows]

    def bracket_orders(self) -> list[Order]:
        """For a live restart (``LiveBroker.restore_bracket_orders``): the done entries with a stop-loss or
        take-profit whose legs were never placed (a crash between the fill and the legs) or still work, each with
        every leg it had, oldest first. An entry whose legs have all ended is history: not read."""
        open_ = (OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value)
        entries = (
            "SELECT e.id FROM orders e WHERE e.origin != ? AND e.status NOT IN (?, ?) "
            "AND (e.stop_loss_pct IS NOT NULL OR e.take_profit_pct IS NOT NULL OR e.stop_loss_price IS NOT NULL "
            "     OR e.take_profit_price IS NOT NULL) "
            "AND (NOT EXISTS (SELECT 1 FROM orders l WHERE l.parent_id = e.id) "
            "     OR EXISTS (SELECT 1 FROM orders l WHERE l.parent_id = e.id AND l.status IN (?, ?)))"
        )
        args = (OrderOrigin.BRACKET.value, *open_, *open_)
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id IN ({entries}) "
            f"OR (origin = ? AND parent_id IN ({entries})) ORDER BY created_ms, rowid",
            (*args, OrderOrigin.BRACKET.value, *args),
        )
        orders = [_order(r) for r in rows]
        return [o for o in orders if o.request.origin is OrderOrigin.BRACKET or o.filled_qty > 0]

    def pending_proposals(self) -> list[str]:
        """Ids of the proposals never reviewed, oldest first."""
        rows = self._conn.execute("SELECT id FROM proposals WHERE status = ? ORDER BY created_ms, rowid", (PENDING,))
        return [r["id"] for r in rows]

    def expire_pending(self, at_ms: int, reason: str) -> list[str]:
        """Give every proposal still PENDING its final review, EXPIRED with ``reason``, in one transaction (the
        terminal closing, or a restart finding proposals a crash left pending). Returns their ids."""
        with self._write() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM proposals WHERE status = ? ORDER BY created_ms, rowid",
                                           (PENDING,))]
            for pid in ids:
                c.execute(
                    "INSERT INTO reviews (proposal_id, at_ms, kind, original, reason) "
                    "VALUES (?, ?, ?, (SELECT body FROM proposals WHERE id = ?), ?)",
                    (pid, at_ms, ReviewKind.EXPIRED.value, pid, reason),
                )
            c.executemany("UPDATE proposals SET status = ? WHERE id = ?",
                          [(ReviewKind.EXPIRED.value, pid) for pid in ids])
        return ids

    def restart_records(self) -> RestartRecords:
        """What a restart rebuilds the terminal from, in one read snapshot (see ``app.trading.restore``)."""
        c = self._conn
        c.execute("BEGIN")  # a read transaction: every query below sees the same snapshot
        try:
            fills = self.all_fills()
            open_orders = self.open_orders()
            pending = self.pending_proposals()
            last = c.execute(
                f"SELECT {_BALANCE_COLUMNS} FROM balances ORDER BY at_ms DESC, id DESC LIMIT 1"
            ).fetchone()
            control = c.execute(
                "SELECT at_ms, kind, code, message, order_json FROM risk_events "
                f"WHERE kind IN ({', '.join('?' * len(RISK_CONTROL_KINDS))}) ORDER BY id DESC LIMIT 1",
                RISK_CONTROL_KINDS,
            ).fetchone()
        finally:
            c.execute("COMMIT")
        return RestartRecords(
            fills=fills,
            open_orders=open_orders,
            pending_proposals=pending,
            last_balance=None if last is None else _balance(last),
            risk_control=None if control is None else _risk_event(control),
        )

    # ----- export -----------------------------------------------------------------------------------------------
    def export_csv(self, directory: Path | str) -> list[Path]:
        """One CSV per table (``TABLES`` order), header first, rows in recording order, money as stored. Beside
        every epoch-millisecond time column (``created_ms``) is the same time for people, ISO-8601 in UTC
        (``created_utc``: 2024-08-08T10:00:00.000Z); the epoch columns stay for programs."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        out: list[Path] = []
        c = self._conn
        c.execute("BEGIN")  # one snapshot for all tables
        try:
            for table in TABLES:
                cur = c.execute(f"SELECT * FROM {table} ORDER BY rowid")
                path = directory / f"{table}.csv"
                names = [d[0] for d in cur.description]
                times = [i for i, n in enumerate(names) if n in EPOCH_MS_COLUMNS]
                header: list[str] = []
                for i, n in enumerate(names):
                    header.append(n)
                    if i in times:
                        header.append(n.removesuffix("_ms") + "_utc")
                with path.open("w", newline="", encoding="utf-8") as fh:
                    w = csv.writer(fh)
                    w.writerow(header)
                    for row in cur:
                        out_row: list[Any] = []
                        for i, v in enumerate(tuple(row)):
                            out_row.append(v)
                            if i in times:
                                out_row.append(iso_utc(v))
                        w.writerow(out_row)
                out.append(path)
        finally:
            c.execute("COMMIT")
        return out

    # ----- counterfactual -----------------------------------------------------------------------------------------
    def counterfactual_report(
        self,
        path: PricePath,
        *,
        equity: Decimal | None = None,
        horizon_ms: int = 15 * 60_000,
        fee_rate: Decimal = Decimal(0),
        since_ms: int | None = None,
        now_ms: int | None = None,
    ) -> CounterfactualReport:
        """What the reviewed BUY/SELL proposals earned, or would have earned, had they been taken as proposed.
        A proposal whose horizon ends after ``now_ms`` (the time the report is made at; None: all are over) is
        PENDING: not scored at the price of the moment, and left out of the totals.

        Each one is played on ``path(symbol, entry_ms, entry_ms + horizon_ms)``: entry at the stored state's last
        price at its exchange time; exit at the first price that touches the stop-loss or take-profit level
        (``entry * (1 -/+ pct / 100)``, filled at the level), else at the last price at or before the horizon.
        Only prices strictly after the entry count. Notional is ``size_pct`` of ``equity`` (default: the last
        recorded equity); ``fee_rate`` is charged on both legs (pass the broker's taker fee to compare like with
        like: actual results are after real fees). Taken proposals also get their actual result from the fills
        of their orders and bracket children (``apply_to_position``, the portfolio's rule); an open remainder is
        marked at the last path price.
        """
        if equity is None:
            row = self._conn.execute("SELECT equity FROM balances ORDER BY at_ms DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise ValueError("no equity given and no balance recorded yet")
            equity = Decimal(row["equity"])
        where = " WHERE r.kind IS NOT NULL AND p.action IN ('BUY', 'SELL')"
        params: tuple[Any, ...] = ()
        if since_ms is not None:
            where += " AND p.created_ms >= ?"
            params = (since_ms,)
        rows = self._conn.execute(_PROPOSAL_SELECT + where + " ORDER BY p.created_ms, p.rowid", params).fetchall()
        report_rows = [self._counterfactual_row(_proposal(r), path, equity, horizon_ms, fee_rate, now_ms)
                       for r in rows]
        return report_totals(report_rows, equity, horizon_ms, now_ms)

    def _counterfactual_row(
        self, p: ProposalRecord, path: PricePath, equity: Decimal, horizon_ms: int, fee_rate: Decimal,
        now_ms: int | None = None,
    ) -> CounterfactualRow:
        body = p.decision.body
        assert body is not None and p.review is not None  # selected by the query
        symbol = p.decision.symbol
        kind = ReviewKind(p.review.kind)
        start = p.decision.state_ms
        end = start + horizon_ms
        last = (p.features or {}).get("last_price")
        entry = None if last is None else _num(last)
        notional = equity * _num(body.size_pct) / 100
        if now_ms is not None and end > now_ms:
            return pending_row(p, body.action.value, entry, notional)
        points = sorted((int(ms), _num(px)) for ms, px in path(symbol, start, end) if start < ms <= end)

        exit_ms: int | None = None
        exit_price: Decimal | None = None
        how = Exit.NO_DATA
        sim_pct = sim_pnl = None
        if entry is not None and entry > 0:
            direction = 1 if body.action == "BUY" else -1
            sl = None if body.stop_loss_pct is None else entry * (1 - direction * _num(body.stop_loss_pct) / 100)
            tp = None if body.take_profit_pct is None else entry * (1 + direction * _num(body.take_profit_pct) / 100)
            for ms, px in points:
                if sl is not None and (px - sl) * direction <= 0:
                    exit_ms, exit_price, how = ms, sl, Exit.STOP_LOSS
                    break
                if tp is not None and (px - tp) * direction >= 0:
                    exit_ms, exit_price, how = ms, tp, Exit.TAKE_PROFIT
                    break
                exit_ms, exit_price, how = ms, px, Exit.HORIZON
            if exit_price is not None:
                move = (exit_price - entry) / entry * direction
                sim_pct = (move - fee_rate * (1 + exit_price / entry)) * 100
                sim_pnl = notional * sim_pct / 100

        actual = actual_pct = fees = None
        open_qty = Decimal(0)
        if kind.taken:
            actual, actual_pct, fees, open_qty = self._actual(p.id, symbol, body.action.value, points)
        return CounterfactualRow(
            proposal_id=p.id,
            symbol=symbol,
            action=body.action.value,
            kind=kind.value,
            taken=kind.taken,
            entry_ms=start,
            entry_price=entry,
            notional=notional,
            exit_ms=exit_ms,
            exit_price=exit_price,
            exit=how,
            sim_pnl_pct=sim_pct,
            sim_pnl=sim_pnl,
            actual_pnl=actual,
            actual_pnl_pct=actual_pct,
            actual_fees=fees,
            open_qty=open_qty,
        )

    def _actual(
        self, proposal_id: str, symbol: str, action: str, points: Sequence[tuple[int, Decimal]]
    ) -> tuple[Decimal, Decimal | None, Decimal, Decimal]:
        rows = self._conn.execute(
            f"""WITH RECURSIVE tree(id) AS (
                    SELECT id FROM orders WHERE proposal_id = ?
                    UNION SELECT o.id FROM orders o JOIN tree ON o.parent_id = tree.id
                )
                SELECT {_FILL_COLUMNS} FROM fills WHERE order_id IN (SELECT id FROM tree) ORDER BY seq""",
            (proposal_id,),
        )
        pos = Position(symbol)
        entry_notional = Decimal(0)
        for r in rows:
            f = _fill(r)
            apply_to_position(pos, f)
            if f.side.value == action:
                entry_notional += f.qty * f.price
        pnl = pos.realized_pnl
        if pos.qty != 0 and points:
            pnl += pos.qty * (points[-1][1] - pos.avg_price)
        pct = pnl / entry_notional * 100 if entry_notional else None
        return pnl, pct, pos.fees, pos.qty
