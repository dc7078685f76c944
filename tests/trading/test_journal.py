"""The journal on real SQLite files: exact round trips, restore, migrations, export, counterfactuals, SIGKILL."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.llm.schema import Action, CacheStatus, Decision, DecisionBody, DecisionMeta
from app.market.features import MarketState, PositionState
from app.models import Fill, Liquidity, Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Side
from app.trading import journal as journal_mod
from app.trading.journal import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    TABLES,
    Exit,
    Journal,
    JournalError,
    JournalVersionError,
)
from app.trading.portfolio import Portfolio
from app.trading.restore import restore

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
D = Decimal


def make_state(symbol: str = "BTCUSDT", last: float = 60_000.0, ms: int = T0, **kw: object) -> MarketState:
    values: dict[str, object] = dict(
        symbol=symbol, timeframe="1m", exchange_ms=ms, bar_close_ms=ms, last_price=last, ema_fast=last * 1.001,
        ema_slow=last * 0.999,
        vwap=last + 0.1, ret_1=0.0123, ret_5=-0.456, ret_15=1.0 / 3.0, ret_60=2.5, ema_spread_pct=0.2002,
        rsi=61.25, atr_pct=0.137, vwap_dist_pct=-0.000166, volume_ratio=1.75, spread_bps=0.1666, move_pct=0.0042,
    )
    values.update(kw)
    return MarketState(**values)  # type: ignore[arg-type]


def make_decision(
    action: Action = Action.BUY,
    *,
    symbol: str = "BTCUSDT",
    ms: int = T0,
    size_pct: float = 10.0,
    sl: float | None = 1.0,
    tp: float | None = 2.0,
    **meta: object,
) -> Decision:
    body = DecisionBody(action=action, size_pct=size_pct, stop_loss_pct=sl, take_profit_pct=tp, confidence=0.8,
                        rationale="EMA spread widening with volume")
    m = dict(provider="openai", model="gpt-4o-mini", prompt_version="p3", latency_ms=812.25, prompt_tokens=512,
             completion_tokens=64, cost_usd=0.000123, cache_status=CacheStatus.MISS)
    m.update(meta)
    return Decision(symbol=symbol, timeframe="1m", state_ms=ms, body=body, meta=DecisionMeta(**m))  # type: ignore[arg-type]


def order(
    oid: str,
    side: Side,
    qty: str,
    *,
    symbol: str = "BTCUSDT",
    type_: OrderType = OrderType.MARKET,
    limit: str | None = None,
    status: OrderStatus = OrderStatus.NEW,
    created_ms: int = T0,
    **req: object,
) -> Order:
    limit_price = None if limit is None else D(limit)
    request = OrderRequest(symbol, side, type_, D(qty), limit_price=limit_price, **req)  # type: ignore[arg-type]
    return Order(oid, request, status, created_ms=created_ms, updated_ms=created_ms)


def fill(fid: str, oid: str, side: Side, qty: str, price: str, fee: str, *, symbol: str = "BTCUSDT",
         ms: int = T0) -> Fill:
    return Fill(fid, oid, symbol, side, D(qty), D(price), D(fee), Liquidity.TAKER, ms)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


# ----- round trips --------------------------------------------------------------------------------------------------


def test_pragmas_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "deep" / "user-data"
    monkeypatch.setattr(journal_mod.platformdirs, "user_data_path", lambda app: data / app)
    with Journal() as j:
        assert j.path == data / "ai-trading-terminal" / "journal.sqlite3"
        assert j.path.exists()
        c = j._conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        assert j.schema_version == SCHEMA_VERSION
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_proposal_round_trip_with_features_and_meta(db: Path) -> None:
    state = make_state(position=PositionState.LONG, position_pnl_sign=-1)
    decision = make_decision(
        Action.SELL, size_pct=2.5, sl=0.7, tp=1.3, cache_status=CacheStatus.SIMILAR, cache_age_s=12.5,
        cache_distance=0.8125, cost_usd=0.1 + 0.2, cost_known=False,
    )
    hold = make_decision(Action.HOLD, sl=None, tp=None, provider="offline", model="rules",
                         cache_status=CacheStatus.OFFLINE, cost_usd=0.0)
    with Journal(db) as j:
        j.record_proposal("p1", decision, state, T0 + 5, T0 + 30_005)
        j.record_proposal("p2", hold, None, T0 + 6, T0 + 30_006)
        with pytest.raises(JournalError, match="already recorded"):
            j.record_proposal("p2", decision, None, T0 + 7, T0 + 30_007)
    with Journal(db) as j:
        newest, first = j.proposals(10)
    assert newest.id == "p2" and newest.state is None and newest.features is None
    assert newest.decision == hold
    assert first.id == "p1"
    assert first.decision == decision  # every meta field, the float cost 0.30000000000000004 included
    assert first.decision.meta.cost_usd == 0.1 + 0.2
    assert first.state == state
    assert first.features == state.as_dict()
    assert (first.created_ms, first.expires_ms, first.status, first.review) == (T0 + 5, T0 + 30_005, "PENDING", None)


def test_reviews_keep_original_and_edited_side_by_side(db: Path) -> None:
    with Journal(db) as j:
        for pid in ("m", "r", "e"):
            j.record_proposal(pid, make_decision(), make_state(), T0, T0 + 30_000)
        original = {"side": "BUY", "qty": D("0.01666"), "type": "MARKET", "limit_price": None}
        edited = {"side": "BUY", "qty": D("0.00500"), "type": "LIMIT", "limit_price": D("59900.00")}
        j.record_review("m", "MODIFIED", T0 + 4_000, original=original, edited=edited, decision_time_ms=3_987.5)
        j.record_review("r", "REJECTED", T0 + 2_000, reason="news at 14:30", decision_time_ms=1_500.0)
        j.record_review("e", "EXPIRED", T0 + 30_000, reason="no decision within 30 s")
        with pytest.raises(ValueError):
            j.record_review("e", "MAYBE", T0)
        with pytest.raises(JournalError, match="never recorded"):
            j.record_review("nope", "APPROVED", T0)
    with Journal(db) as j:
        recs = {p.id: p for p in j.proposals(10)}
        reviews = j._conn.execute("SELECT count(*) FROM reviews").fetchone()[0]
    assert reviews == 3  # the failed ones left nothing behind
    m = recs["m"].review
    assert m is not None and recs["m"].status == "MODIFIED"
    # Decimals in review dicts are stored as exact strings, side by side.
    assert m.original == {"side": "BUY", "qty": "0.01666", "type": "MARKET", "limit_price": None}
    assert m.edited == {"side": "BUY", "qty": "0.00500", "type": "LIMIT", "limit_price": "59900.00"}
    assert (m.kind, m.at_ms, m.decision_time_ms, m.reason) == ("MODIFIED", T0 + 4_000, 3_987.5, None)
    r = recs["r"].review
    assert r is not None and recs["r"].status == "REJECTED"
    assert r.original == make_decision().body.model_dump(mode="json")  # type: ignore[union-attr]  # what the model proposed
    assert (r.edited, r.reason, r.decision_time_ms) == (None, "news at 14:30", 1_500.0)
    e = recs["e"].review
    assert e is not None and recs["e"].status == "EXPIRED" and e.decision_time_ms is None


def test_orders_are_upserted_through_status_changes(db: Path) -> None:
    o = order("o1", Side.BUY, "0.50", type_=OrderType.LIMIT, limit="60000.10", origin=OrderOrigin.MODEL,
              proposal_id="p1", stop_loss_pct=D("1.00"), take_profit_pct=D("2.50"))
    with Journal(db) as j:
        j.record_order(o)
        o.status, o.filled_qty, o.avg_price, o.fees, o.updated_ms = (
            OrderStatus.PARTIALLY_FILLED, D("0.20"), D("60000.10"), D("1.200002"), T0 + 100)
        j.record_order(o)
        o.status, o.filled_qty, o.avg_price, o.fees, o.updated_ms = (
            OrderStatus.FILLED, D("0.50"), D("60000.06"), D("3.0000030"), T0 + 250)
        j.record_order(o)
        stop = order("o2", Side.SELL, "0.50", type_=OrderType.STOP_MARKET, origin=OrderOrigin.BRACKET,
                     parent_id="o1", stop_price=D("59400.1"), reduce_only=True, created_ms=T0 + 251)
        j.record_order(stop)
        rej = order("o3", Side.BUY, "5", status=OrderStatus.REJECTED, created_ms=T0 + 300)
        rej.reject_reason = "insufficient cash"
        j.record_order(rej)
        with pytest.raises(JournalError, match="another order"):  # a broker whose ids restart each session
            j.record_order(order("o1", Side.SELL, "0.50", created_ms=T0 + 9_999))
        with pytest.raises(TypeError, match="Decimal"):
            float_qty = OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.1)  # type: ignore[arg-type]
            j.record_order(Order("o4", float_qty, OrderStatus.NEW, T0))
    with Journal(db) as j:
        got = j.recent_orders(10)
        rows = j._conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert rows == 3
    assert got == [rej, stop, o]  # newest first, every field, the request rebuilt
    back = got[2]
    assert back.status is OrderStatus.FILLED
    assert str(back.fees) == "3.0000030" and str(back.request.qty) == "0.50"  # exponent kept, not just the value
    assert str(back.request.stop_loss_pct) == "1.00"


def test_fills_balances_and_risk_events_round_trip(db: Path) -> None:
    f1 = fill("f1", "o1", Side.BUY, "0.00123", "60000.01", "0.0073800123", ms=T0 + 1)
    f2 = Fill("f2", "o1", "BTCUSDT", Side.BUY, D("0.1"), D("1E+5"), D("0"), Liquidity.MAKER, T0 + 2)
    with Journal(db) as j:
        j.record_order(order("o1", Side.BUY, "1"))
        j.record_fill(f1)
        j.record_fill(f2)
        j.record_fill(f1)  # a replayed duplicate: recorded once
        with pytest.raises(JournalError, match="another fill"):
            j.record_fill(fill("f1", "o1", Side.SELL, "0.00123", "60000.01", "0.0073800123", ms=T0 + 1))
        with pytest.raises(JournalError, match="record_order must come before"):
            j.record_fill(fill("f3", "ghost", Side.SELL, "1", "1", "0"))
        j.record_balance(T0 + 5, D("39493.95"), D("100493.950"), {"BTCUSDT": (D("-0.6"), D("60500.5"))})
        j.record_balance(T0 + 9, D("1.0E-8"), D("0"), {})
        j.record_risk_event(T0 + 7, "VETO", "max_notional", "order notional 150,000 over 100,000",
                            {"symbol": "BTCUSDT", "qty": D("2.5"), "side": Side.BUY})
        j.record_risk_event(T0 + 8, "KILL", "kill_switch", "kill switch")
    with Journal(db) as j:
        assert j.recent_fills(10) == [f2, f1]
        assert str(j.recent_fills(1)[0].price) == "1E+5"
        b_new, b_old = j.balances()
        events = j.risk_events()
    assert (b_old.at_ms, b_old.cash, b_old.equity) == (T0 + 5, D("39493.95"), D("100493.950"))
    assert str(b_old.equity) == "100493.950"
    assert b_old.positions == {"BTCUSDT": (D("-0.6"), D("60500.5"))}
    assert str(b_new.cash) == "1.0E-8" and b_new.positions == {}
    assert [(e.kind, e.code) for e in events] == [("KILL", "kill_switch"), ("VETO", "max_notional")]
    assert events[1].order == {"symbol": "BTCUSDT", "qty": "2.5", "side": "BUY"}
    assert events[0].order is None


# ----- restore ------------------------------------------------------------------------------------------------------


def test_restart_records_read_fills_open_orders_pending_balance_and_risk_control(db: Path) -> None:
    limit_buy = order("o4", Side.BUY, "0.2", type_=OrderType.LIMIT, limit="59000", created_ms=T0 + 40,
                      origin=OrderOrigin.MODEL, proposal_id="p1", stop_loss_pct=D("1"), take_profit_pct=D("2"))
    eth = order("o5", Side.BUY, "2", symbol="ETHUSDT", type_=OrderType.LIMIT, limit="2000", created_ms=T0 + 50)
    with Journal(db) as j:
        j.record_proposal("p1", make_decision(), make_state(), T0, T0 + 30_000)
        j.record_review("p1", "APPROVED", T0 + 1_000, decision_time_ms=1_000.0)
        j.record_proposal("p2", make_decision(), make_state(), T0 + 5, T0 + 30_005)  # never reviewed
        for oid, side, qty, price, fee, ms in (
            ("o1", Side.BUY, "0.5", "60000", "3", T0 + 10),
            ("o3", Side.SELL, "0.4", "62000", "2.48", T0 + 30),
        ):
            o = order(oid, side, qty, created_ms=ms)
            j.record_order(o)
            j.record_fill(fill("f" + oid, oid, side, qty, price, fee, ms=ms))
            o.status, o.filled_qty, o.avg_price, o.fees = OrderStatus.FILLED, D(qty), D(price), D(fee)
            j.record_order(o)
        j.record_balance(T0 + 31, D("39493.95"), D("100493.95"), {"BTCUSDT": (D("0.1"), D("60000"))},
                         day_start_ms=T0 - T0 % 86_400_000, day_start_equity=D("100000.5"),
                         marks={"BTCUSDT": D("62000.5")})
        j.record_order(limit_buy)
        j.record_order(eth)
        eth.status, eth.filled_qty, eth.updated_ms = OrderStatus.PARTIALLY_FILLED, D("0.5"), T0 + 60
        j.record_order(eth)
        for oid, status in (("o6", OrderStatus.CANCELED), ("o7", OrderStatus.REJECTED)):
            j.record_order(order(oid, Side.SELL, "1", status=status, created_ms=T0 + 70))
        j.record_risk_event(T0 + 80, "KILL", "kill_switch", "halt")
        j.record_risk_event(T0 + 90, "VETO", "HALTED", "vetoed")  # not a change of state

    with Journal(db) as j:
        r = j.restart_records()
    assert [f.id for f in r.fills] == ["fo1", "fo3"]
    assert r.open_orders == [limit_buy, eth]
    assert r.pending_proposals == ["p2"]
    assert r.last_balance is not None
    assert (r.last_balance.day_start_ms, r.last_balance.day_start_equity) == (T0 - T0 % 86_400_000, D("100000.5"))
    assert r.last_balance.marks == {"BTCUSDT": D("62000.5")}
    assert r.risk_control is not None and (r.risk_control.kind, r.risk_control.at_ms) == ("KILL", T0 + 80)


def test_restart_records_of_an_empty_journal(db: Path) -> None:
    with Journal(db) as j:
        r = j.restart_records()
    assert (r.fills, r.open_orders, r.pending_proposals, r.last_balance, r.risk_control) == ([], [], [], None, None)


def test_expire_pending_gives_each_pending_proposal_a_final_review(db: Path) -> None:
    with Journal(db) as j:
        for pid in ("p1", "p2", "p3"):
            j.record_proposal(pid, make_decision(), make_state(), T0, T0 + 30_000)
        j.record_review("p2", "REJECTED", T0 + 1, reason="no")
        assert j.expire_pending(T0 + 5, "closing") == ["p1", "p3"]
        assert j.expire_pending(T0 + 6, "again") == []
        by_id = {p.id: p for p in j.proposals()}
    assert {pid: (p.status, p.review.kind, p.review.reason) for pid, p in by_id.items()} == {  # type: ignore[union-attr]
        "p1": ("EXPIRED", "EXPIRED", "closing"), "p2": ("REJECTED", "REJECTED", "no"),
        "p3": ("EXPIRED", "EXPIRED", "closing"),
    }
    assert by_id["p1"].review.original == make_decision().body.model_dump(mode="json")  # type: ignore[union-attr]


# ----- schema versions ----------------------------------------------------------------------------------------------

# Schema v1 exactly as the first release created it (frozen here on purpose: the migration must read this).
V1_SQL = """
CREATE TABLE proposals (
    id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL, state_ms INTEGER NOT NULL, action TEXT, body TEXT, features TEXT, provider TEXT NOT NULL,
    model TEXT NOT NULL, prompt_version TEXT NOT NULL, cache_status TEXT NOT NULL, cache_age_s REAL,
    cache_distance REAL, latency_ms REAL NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost TEXT NOT NULL, cost_known INTEGER NOT NULL, error TEXT, status TEXT NOT NULL DEFAULT 'PENDING');
CREATE INDEX proposals_created ON proposals(created_ms);
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY, proposal_id TEXT NOT NULL REFERENCES proposals(id), at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL, original TEXT, reason TEXT, decision_time_ms REAL);
CREATE INDEX reviews_proposal ON reviews(proposal_id);
CREATE TABLE orders (
    id TEXT PRIMARY KEY, proposal_id TEXT, origin TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
    type TEXT NOT NULL, qty TEXT NOT NULL, limit_price TEXT, stop_price TEXT, parent_id TEXT,
    reduce_only INTEGER NOT NULL, stop_loss_pct TEXT, take_profit_pct TEXT, status TEXT NOT NULL,
    filled_qty TEXT NOT NULL, avg_price TEXT, fees TEXT NOT NULL, reject_reason TEXT, created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL);
CREATE INDEX orders_status ON orders(status);
CREATE INDEX orders_proposal ON orders(proposal_id);
CREATE INDEX orders_parent ON orders(parent_id);
CREATE TABLE fills (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL REFERENCES orders(id),
    symbol TEXT NOT NULL, side TEXT NOT NULL, qty TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL,
    liquidity TEXT NOT NULL, exchange_ms INTEGER NOT NULL);
CREATE INDEX fills_order ON fills(order_id);
CREATE TABLE risk_events (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
    order_json TEXT);
INSERT INTO proposals VALUES ('v1p', 1000, 31000, 'BTCUSDT', '1m', 900, 'BUY',
    '{"action":"BUY","size_pct":5.0,"limit_price":null,"stop_loss_pct":1.0,"take_profit_pct":2.0,"confidence":0.6,"rationale":"old"}',
    '{"symbol":"BTCUSDT","last_price":60000.0}', 'offline', 'rules', 'p1', 'OFFLINE', NULL, NULL, 0.5, 0, 0, '0.0', 1,
    NULL, 'REJECTED');
INSERT INTO reviews (proposal_id, at_ms, kind, original, reason, decision_time_ms)
    VALUES ('v1p', 2000, 'REJECTED', NULL, 'too late', 1000.0);
INSERT INTO orders VALUES ('v1o', NULL, 'MANUAL', 'BTCUSDT', 'BUY', 'LIMIT', '0.250', '59999.99', NULL, NULL, 0,
    NULL, NULL, 'NEW', '0', NULL, '0', NULL, 3000, 3000);
INSERT INTO orders VALUES ('v1f', NULL, 'MANUAL', 'BTCUSDT', 'BUY', 'MARKET', '0.1', NULL, NULL, NULL, 0,
    NULL, NULL, 'FILLED', '0.1', '60000.5', '0.006', NULL, 3500, 3600);
INSERT INTO fills (id, order_id, symbol, side, qty, price, fee, liquidity, exchange_ms)
    VALUES ('v1fill', 'v1f', 'BTCUSDT', 'BUY', '0.1', '60000.5', '0.006', 'TAKER', 3600);
INSERT INTO risk_events (at_ms, kind, code, message, order_json) VALUES (4000, 'VETO', 'max_qty', 'too big', NULL);
"""


def build_v1(path: Path, extra: str = "") -> None:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SQL + extra + f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;")
    conn.close()


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def test_migrates_a_hand_built_v1_database(db: Path) -> None:
    build_v1(db)
    with Journal(db) as j:
        assert j.schema_version == SCHEMA_VERSION == 6
        c = j._conn
        assert columns(c, "reviews")[-1] == "edited"
        assert columns(c, "balances")[-3:] == ["day_start_ms", "day_start_equity", "marks"]
        assert "balances" in {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (p,) = j.proposals()
        assert (p.id, p.status, p.decision.body.action, p.decision.body.size_pct) == ("v1p", "REJECTED", "BUY", 5.0)  # type: ignore[union-attr]
        assert p.features == {"symbol": "BTCUSDT", "last_price": 60000.0} and p.state is None  # partial: kept raw
        assert p.review is not None
        assert (p.review.kind, p.review.reason, p.review.edited) == ("REJECTED", "too late", None)
        (open_order,) = j.open_orders()
        assert open_order.id == "v1o" and str(open_order.request.qty) == "0.250"
        assert open_order.request.limit_price == D("59999.99")
        assert j.recent_fills() == [fill("v1fill", "v1f", Side.BUY, "0.1", "60000.5", "0.006", ms=3600)]
        assert j.risk_events()[0].code == "max_qty"
        # and the v2 and v3 parts work on it
        j.record_balance(5000, D("1.5"), D("2.5"), {}, day_start_ms=0, day_start_equity=D("3"), marks={})
        j.record_review("v1p", "EXPIRED", 6000, edited={"qty": "1"})
        assert (j.balances()[0].cash, j.balances()[0].day_start_equity) == (D("1.5"), D("3"))
        assert j.proposals()[0].review.edited == {"qty": "1"}  # type: ignore[union-attr]


def test_a_failed_migration_leaves_the_v1_database_as_it_was(db: Path) -> None:
    build_v1(db, extra="CREATE TABLE balances (x);")  # v2's table already there: the migration must fail whole
    with pytest.raises(JournalError, match="migrating"):
        Journal(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "edited" not in columns(conn, "reviews")
    conn.close()


def test_a_newer_database_is_refused_and_left_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(f"CREATE TABLE future (x); PRAGMA user_version = {SCHEMA_VERSION + 1};")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(JournalVersionError, match=rf"newer version.*v{SCHEMA_VERSION + 1}.*up to v{SCHEMA_VERSION}"):
        Journal(db)
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists()


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.executescript("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
    conn.close()
    with pytest.raises(JournalVersionError, match="no journal schema version"):
        Journal(other)
    conn = sqlite3.connect(other)
    conn.executescript("PRAGMA application_id = 42;")
    conn.close()
    with pytest.raises(JournalVersionError, match="another application"):
        Journal(other)


# ----- export -------------------------------------------------------------------------------------------------------


def test_export_csv_one_file_per_table_with_headers(db: Path, tmp_path: Path) -> None:
    with Journal(db) as j:
        j.record_proposal("p1", make_decision(), make_state(), T0, T0 + 30_000)
        j.record_proposal("p2", make_decision(Action.SELL), None, T0 + 1, T0 + 30_001)
        j.record_review("p1", "MODIFIED", T0 + 10, original={"qty": "1"}, edited={"qty": "0.5"})
        o = order("o1", Side.BUY, "0.5")
        j.record_order(o)
        o.status = OrderStatus.FILLED
        j.record_order(o)
        j.record_fill(fill("f1", "o1", Side.BUY, "0.5", "60000.50", "3.000025"))
        j.record_balance(T0, D("1"), D("2"), {"BTCUSDT": (D("0.5"), D("60000.50"))})
        j.record_risk_event(T0, "STATE", "reducing", "daily loss reached 80 %")
        j.record_reconciliation(T0, "binance", "AbC1…x9Yz", "start", {"errors": ["timeout"]})
        j.stamp_account(journal_mod.AccountStamp("PAPER", None, None, None))
        paths = j.export_csv(tmp_path / "export" / "today")
    assert [p.name for p in paths] == [f"{t}.csv" for t in TABLES]
    tables = {}
    for p in paths:
        with p.open(newline="", encoding="utf-8") as fh:
            tables[p.stem] = list(csv.reader(fh))
    assert {t: len(rows) - 1 for t, rows in tables.items()} == {
        "proposals": 2, "reviews": 1, "orders": 1, "fills": 1, "balances": 1, "risk_events": 1,
        "reconciliations": 1, "account_stamp": 1}
    assert tables["fills"][0] == ["seq", "id", "order_id", "symbol", "side", "qty", "price", "fee", "liquidity",
                                  "exchange_ms", "exchange_utc", "fee_asset"]
    assert tables["fills"][1][5:8] == ["0.5", "60000.50", "3.000025"]
    assert tables["reviews"][0] == ["id", "proposal_id", "at_ms", "at_utc", "kind", "original", "reason",
                                    "decision_time_ms", "edited"]
    assert tables["orders"][1][tables["orders"][0].index("status")] == "FILLED"
    assert tables["proposals"][0][:5] == ["id", "created_ms", "created_utc", "expires_ms", "expires_utc"]
    assert "cost" in tables["proposals"][0] and "features" in tables["proposals"][0]
    assert tables["balances"][0][:6] == ["id", "at_ms", "at_utc", "cash", "equity", "positions"]


# ----- counterfactual -----------------------------------------------------------------------------------------------

T1 = T0 + 3_600_000
MIN = 60_000
PATHS = {
    "BTCUSDT": [
        # the rejected BUY at T0 (60000, SL 59400, TP 61200): dips, not to the stop, then through the take-profit
        (T0 - MIN, 10.0), (T0, 60_000.0), (T0 + MIN, 60_300.0), (T0 + 2 * MIN, 59_700.0), (T0 + 3 * MIN, 61_250.0),
        (T0 + 4 * MIN, 50_000.0),
        # the approved BUY at T1: neither level within 15 minutes, out at 60900; the 62000 comes after the horizon
        (T1 + MIN, 60_500.0), (T1 + 5 * MIN, 60_800.0), (T1 + 10 * MIN, 60_900.0), (T1 + 20 * MIN, 62_000.0),
    ],
    # the expired SELL at T0 (2000, SL 2030, TP 1940): stopped out before it would have paid
    "ETHUSDT": [(T0 + MIN, 2_010.0), (T0 + 2 * MIN, 2_031.0), (T0 + 3 * MIN, 1_900.0)],
}


def price_path(symbol: str, start_ms: int, end_ms: int) -> list[tuple[int, float]]:
    return [(ms, p) for ms, p in PATHS.get(symbol, []) if start_ms <= ms <= end_ms]


def counterfactual_journal(db: Path) -> Journal:
    j = Journal(db)
    j.record_proposal("R1", make_decision(ms=T0), make_state(ms=T0), T0 + 1, T0 + 30_001)
    j.record_review("R1", "REJECTED", T0 + 5_000, reason="don't like it")
    j.record_proposal("E1", make_decision(Action.SELL, symbol="ETHUSDT", size_pct=5.0, sl=1.5, tp=3.0),
                      make_state("ETHUSDT", 2_000.0), T0 + 2, T0 + 30_002)
    j.record_review("E1", "EXPIRED", T0 + 30_002)
    j.record_proposal("N1", make_decision(), None, T0 + 3, T0 + 30_003)  # no state stored: no entry price
    j.record_review("N1", "REJECTED", T0 + 4_000)
    j.record_proposal("H1", make_decision(Action.HOLD, sl=None, tp=None, size_pct=0.0), make_state(), T0 + 4, T0)
    j.record_review("H1", "REJECTED", T0 + 4_000)  # HOLD: nothing to count
    j.record_proposal("W1", make_decision(), make_state(), T0 + 5, T0 + 30_005)  # pending: not reviewed
    j.record_proposal("A1", make_decision(ms=T1), make_state(ms=T1), T1 + 1, T1 + 30_001)
    j.record_review("A1", "APPROVED", T1 + 2_000, decision_time_ms=2_000.0)
    entry = order("O1", Side.BUY, "0.01", origin=OrderOrigin.MODEL, proposal_id="A1", created_ms=T1 + 2_001,
                  stop_loss_pct=D("1.00"), take_profit_pct=D("2.00"))
    j.record_order(entry)
    j.record_fill(fill("F1", "O1", Side.BUY, "0.01", "60010", "0.6", ms=T1 + 2_050))
    tp_leg = order("O2", Side.SELL, "0.01", type_=OrderType.LIMIT, limit="61210", origin=OrderOrigin.BRACKET,
                   parent_id="O1", reduce_only=True, created_ms=T1 + 2_060)
    sl_leg = order("O3", Side.SELL, "0.01", type_=OrderType.STOP_MARKET, origin=OrderOrigin.BRACKET,
                   parent_id="O1", stop_price=D("59409.90"), reduce_only=True, created_ms=T1 + 2_061)
    j.record_order(tp_leg)
    j.record_order(sl_leg)
    j.record_fill(fill("F2", "O2", Side.SELL, "0.01", "61210", "0.61", ms=T1 + 25 * MIN))
    j.record_order(order("X1", Side.BUY, "3", proposal_id=None, created_ms=T1 + 3_000))  # manual: not counted
    j.record_fill(fill("FX", "X1", Side.BUY, "3", "60000", "18", ms=T1 + 3_000))
    j.record_balance(T1, D("5000"), D("10000"), {})
    return j


def test_counterfactual_report_on_a_hand_made_price_path(db: Path) -> None:
    with counterfactual_journal(db) as j:
        rep = j.counterfactual_report(price_path, equity=D("10000"), horizon_ms=15 * MIN)
        same = j.counterfactual_report(price_path)  # equity defaults to the last recorded one
        fees = j.counterfactual_report(price_path, equity=D("10000"), fee_rate=D("0.001"))
    rows = {r.proposal_id: r for r in rep.rows}
    assert [r.proposal_id for r in rep.rows] == ["R1", "E1", "N1", "A1"]

    r1 = rows["R1"]  # 10 % of 10000 = 1000 notional; +2 % at the take-profit
    assert (r1.kind, r1.taken, r1.action, r1.entry_price, r1.notional) == ("REJECTED", False, "BUY", D(60000), D(1000))
    assert (r1.exit, r1.exit_ms, r1.exit_price) == (Exit.TAKE_PROFIT, T0 + 3 * MIN, D("61200"))
    assert (r1.sim_pnl_pct, r1.sim_pnl, r1.actual_pnl) == (D(2), D(20), None)

    e1 = rows["E1"]  # 5 % = 500 notional short; stopped out 1.5 % against
    assert (e1.exit, e1.exit_ms, e1.exit_price) == (Exit.STOP_LOSS, T0 + 2 * MIN, D("2030"))
    assert (e1.sim_pnl_pct, e1.sim_pnl) == (D("-1.5"), D("-7.5"))

    n1 = rows["N1"]
    assert (n1.exit, n1.sim_pnl, n1.entry_price) == (Exit.NO_DATA, None, None)

    a1 = rows["A1"]
    assert (a1.kind, a1.taken) == ("APPROVED", True)
    assert (a1.exit, a1.exit_ms, a1.exit_price) == (Exit.HORIZON, T1 + 10 * MIN, D("60900"))
    assert (a1.sim_pnl_pct, a1.sim_pnl) == (D("1.5"), D(15))
    # the fills: buy 0.01 @ 60010 (fee 0.6), take-profit leg sells 0.01 @ 61210 (fee 0.61): 12 - 1.21
    assert (a1.actual_pnl, a1.actual_fees, a1.open_qty) == (D("10.79"), D("1.21"), D(0))
    assert a1.actual_pnl_pct == D("10.79") / D("600.1") * 100

    assert (rep.rejected_pnl, rep.expired_pnl, rep.missed_pnl) == (D(20), D("-7.5"), D("12.5"))
    assert (rep.taken_pnl, rep.taken_sim_pnl, rep.model_pnl) == (D("10.79"), D(15), D("27.5"))
    assert rep.override_value == D("10.79") - D("27.5") == D("-16.71")
    assert rep.no_data == 1
    assert same == rep

    # with a 0.1 % fee on both legs: 2 % - 0.1 % * (1 + 61200 / 60000) = 1.798 %
    assert fees.rows[0].sim_pnl_pct == D("1.798") and fees.rows[0].sim_pnl == D("17.98")


def test_counterfactual_marks_an_open_remainder(db: Path) -> None:
    with Journal(db) as j:
        j.record_proposal("A", make_decision(ms=T1, sl=None, tp=None), make_state(ms=T1), T1, T1 + 30_000)
        j.record_review("A", "AUTO_APPROVED", T1 + 10)
        j.record_order(order("O", Side.BUY, "0.02", proposal_id="A", origin=OrderOrigin.MODEL))
        j.record_fill(fill("F", "O", Side.BUY, "0.02", "60000", "1.2"))
        rep = j.counterfactual_report(price_path, equity=D("10000"))
    (row,) = rep.rows
    assert row.exit is Exit.HORIZON and row.sim_pnl == D(15)  # no levels: out at 60900 at the horizon
    assert row.open_qty == D("0.02")
    assert row.actual_pnl == D("0.02") * (D("60900") - D("60000")) - D("1.2")  # marked at the horizon price



def test_the_reports_arithmetic_is_the_portfolios_to_the_last_digit(db: Path) -> None:
    """One rule applies a fill: a taken proposal's actual PnL in the report is what the portfolio realised, even
    when the average price does not divide evenly (1 @ 100 + 2 @ 100.01 averages 100.00666...)."""
    fills = [fill("F1", "O1", Side.BUY, "1", "100", "0.01"), fill("F2", "O1", Side.BUY, "2", "100.01", "0.02"),
             fill("F3", "O2", Side.SELL, "3", "101", "0.03")]
    with Journal(db) as j:
        j.record_proposal("A", make_decision(ms=T1, sl=None, tp=None), make_state(ms=T1), T1, T1 + 30_000)
        j.record_review("A", "APPROVED", T1 + 10)
        j.record_order(order("O1", Side.BUY, "3", proposal_id="A", origin=OrderOrigin.MODEL))
        j.record_order(order("O2", Side.SELL, "3", parent_id="O1", origin=OrderOrigin.BRACKET))
        for f in fills:
            j.record_fill(f)
        (row,) = j.counterfactual_report(price_path, equity=D("10000")).rows
    portfolio = Portfolio()
    for f in fills:
        portfolio.apply_fill(f)
    assert row.actual_pnl == portfolio.realized_pnl("BTCUSDT") == D("2.91999999")

# ----- crash safety -------------------------------------------------------------------------------------------------

ORDER_STEPS = ["NEW", "PARTIALLY_FILLED", "FILLED"]


def check_acknowledged(db: Path, acks: list[list[str]]) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        proposals = dict(conn.execute("SELECT id, status FROM proposals"))
        reviews = set(conn.execute("SELECT proposal_id, kind FROM reviews"))
        orders = dict(conn.execute("SELECT id, status FROM orders"))
        fills = {r[0] for r in conn.execute("SELECT id FROM fills")}
        balances = {r[0] for r in conn.execute("SELECT at_ms FROM balances")}
        risks = {r[0] for r in conn.execute("SELECT code FROM risk_events")}
    finally:
        conn.close()
    for ack in acks:
        table, key = ack[1], ack[2]
        if table == "proposal":
            assert key in proposals, ack
        elif table == "review":
            assert (key, ack[3]) in reviews, ack
        elif table == "order":  # this update, or a later one committed before the kill
            assert ORDER_STEPS.index(orders[key]) >= ORDER_STEPS.index(ack[3]), ack
        elif table == "fill":
            assert key in fills, ack
        elif table == "balance":
            assert int(key) in balances, ack
        elif table == "risk":
            assert key in risks, ack
        else:
            raise AssertionError(f"unknown ack {ack}")
    for pid, kind in reviews:  # a review and its proposal's status are one transaction
        assert proposals[pid] == kind


def test_acknowledged_events_survive_sigkill(db: Path) -> None:
    acks: list[list[str]] = []
    for round_ in range(3):  # each round reopens the file the previous one was killed in the middle of writing
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.trading.journal_writer", str(db), "--start", str(round_ * 1_000_000)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        seen = 0
        try:
            while seen < 200:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"writer ended early: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
                assert line.startswith("ACK "), line
                acks.append(line.split())
                seen += 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            rest, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        # acknowledgements already in the pipe were printed before the kill: they count too (whole lines only)
        acks += [line.split() for line in rest.split("\n")[:-1] if line.startswith("ACK ")]
        check_acknowledged(db, acks)
    assert len(acks) >= 600
    with Journal(db) as j:  # and the journal opens, restores (the terminal's own path) and writes on after 3 kills
        state = restore(j, starting_cash=D("100000"), symbols=["BTCUSDT"], daily_loss_limit=D("500"), now_ms=T0)
        assert state.portfolio.position("BTCUSDT").qty == D("0.001") * state.fills_replayed
        j.record_risk_event(1, "RESUME", "after-crash", "still writable")


def test_record_cost_is_measured(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the per-call cost on this machine (no timed assertion: speed is not a test's business)."""
    n = 2_000
    state = make_state()
    decision = make_decision()
    costs: dict[str, list[int]] = {k: [] for k in ("proposal", "review", "order", "fill", "balance", "risk_event")}

    def timed(kind: str, fn: object, *args: object, **kw: object) -> None:
        t = time.perf_counter_ns()
        fn(*args, **kw)  # type: ignore[operator]
        costs[kind].append(time.perf_counter_ns() - t)

    with Journal(db) as j:
        for i in range(n):
            timed("proposal", j.record_proposal, f"p{i}", decision, state, T0 + i, T0 + i + 30_000)
            timed("review", j.record_review, f"p{i}", "APPROVED", T0 + i, decision_time_ms=1.0)
            o = order(f"o{i}", Side.BUY, "0.001", origin=OrderOrigin.MODEL, proposal_id=f"p{i}", created_ms=T0 + i)
            timed("order", j.record_order, o)
            timed("fill", j.record_fill, fill(f"f{i}", f"o{i}", Side.BUY, "0.001", "60000.1", "0.006", ms=T0 + i))
            o.status, o.filled_qty = OrderStatus.FILLED, D("0.001")
            timed("order", j.record_order, o)
            timed("balance", j.record_balance, T0 + i, D("1000.5"), D("2000.25"), {"BTCUSDT": (D("1"), D("2"))})
            timed("risk_event", j.record_risk_event, T0 + i, "VETO", "code", "message", {"qty": "1"})
    with capsys.disabled():
        print(f"\njournal record cost over {n} calls each (µs): "
              + ", ".join(f"{k} mean {sum(v) / len(v) / 1e3:.1f} max {max(v) / 1e3:.0f}" for k, v in costs.items()))
