"""Journal v4 for live trading: the exchange's order id and the reconciliations table, and the migration of a v3
file (what the terminal wrote before live trading) that must keep every row."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from app.models import Fill, Liquidity, Order, OrderRequest, OrderStatus, OrderType, Side
from app.trading.journal import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Journal

D = Decimal
T0 = 1_700_000_000_000


def build_v3(path: Path) -> None:
    """A journal exactly as the v3 program left it: its own migrations (frozen: append-only), then rows."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for step in MIGRATIONS[:3]:
        step(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("COMMIT")
    conn.executescript("""
        INSERT INTO orders VALUES ('P1', NULL, 'MANUAL', 'BTCUSDT', 'BUY', 'LIMIT', '0.250', '59999.99', NULL, NULL,
            0, NULL, NULL, 'NEW', '0', NULL, '0', NULL, 3000, 3000);
        INSERT INTO orders VALUES ('P2', NULL, 'MANUAL', 'BTCUSDT', 'BUY', 'MARKET', '0.1', NULL, NULL, NULL, 0,
            NULL, NULL, 'FILLED', '0.1', '60000.5', '0.006', NULL, 3500, 3600);
        INSERT INTO fills (id, order_id, symbol, side, qty, price, fee, liquidity, exchange_ms)
            VALUES ('PF1', 'P2', 'BTCUSDT', 'BUY', '0.1', '60000.5', '0.006', 'TAKER', 3600);
        INSERT INTO balances (at_ms, cash, equity, positions, fill_seq, day_start_ms, day_start_equity, marks)
            VALUES (3700, '9000', '10000', '{"BTCUSDT":["0.1","60000.5"]}', 1, 0, '10000', '{"BTCUSDT":"60001"}');
    """)
    conn.close()


def test_a_v3_journal_opens_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite3"
    build_v3(db)
    assert sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    with Journal(db) as j:
        assert j.schema_version == SCHEMA_VERSION == 6
        (open_order,) = j.open_orders()
        assert (open_order.id, str(open_order.request.qty), open_order.exchange_id) == ("P1", "0.250", None)
        assert [o.id for o in j.recent_orders()] == ["P2", "P1"]
        assert [f.id for f in j.all_fills()] == ["PF1"]
        assert j.balances()[0].marks == {"BTCUSDT": D("60001")}
        assert j.reconciliations() == []
        # the v4 parts work on it: an old order gains its exchange id, a reconciliation is recorded
        open_order.exchange_id = "8886774"
        j.record_order(open_order)
        assert j.open_orders()[0].exchange_id == "8886774"
        j.record_reconciliation(4000, "binance", "AbC1…x9Yz", "start", {"orders_updated": ["P1"]})
        assert j.reconciliations()[0].count("orders_updated") == 1


def test_exchange_id_round_trips_and_is_never_erased_by_a_later_update(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        o = Order("L1", OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.5"), limit_price=D("100")),
                  OrderStatus.NEW, created_ms=T0, updated_ms=T0)
        j.record_order(o)  # registered before the exchange answered: no exchange id yet
        assert j.open_orders()[0].exchange_id is None
        o.exchange_id = "42"
        j.record_order(o)
        o2 = Order(o.id, o.request, OrderStatus.PARTIALLY_FILLED, created_ms=T0, filled_qty=D("0.1"),
                   avg_price=D("100"), updated_ms=T0 + 1)  # an update that does not carry the id again
        j.record_order(o2)
        j.record_fill(Fill("binance:7", "L1", "BTCUSDT", Side.BUY, D("0.1"), D("100"), D("0.01"), Liquidity.MAKER,
                           T0 + 1))
        (back,) = j.open_orders()
        assert (back.exchange_id, back.status, back.filled_qty) == ("42", OrderStatus.PARTIALLY_FILLED, D("0.1"))


def test_reconciliations_round_trip_newest_first_with_counts_and_decimals(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        j.record_reconciliation(T0, "binance", "AbC1…x9Yz", "start", {
            "orders_updated": [{"id": "L1", "status": "FILLED"}],
            "fills_recovered": [{"id": "binance:7", "qty": D("0.10")}],
            "unknown_orders": [],
            "balance_differences": [{"asset": "USDT", "journal": D("100.5"), "exchange": D("99")}],
            "errors": [],
        })
        j.record_reconciliation(T0 + 5, "binance", "AbC1…x9Yz", "reconnect", {"errors": ["the exchange timed out"]})
        newest, first = j.reconciliations()
        assert (newest.trigger, newest.count("errors"), newest.count("orders_updated")) == ("reconnect", 1, 0)
        assert first.report["fills_recovered"][0]["qty"] == "0.10"  # Decimal text, exact
        assert first.report["balance_differences"][0]["journal"] == "100.5"
        row = j._conn.execute("SELECT orders_updated, fills_recovered, unknown_orders, balance_differences, errors "
                              "FROM reconciliations ORDER BY id").fetchone()
        assert tuple(row) == (1, 1, 0, 1, 0)


def test_a_reconciliation_part_that_is_not_a_list_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j, pytest.raises(TypeError, match="errors"):
        j.record_reconciliation(T0, "binance", "a", "start", {"errors": "oops"})


# ----- v5: the commission's asset and the account stamp ---------------------------------------------------------------


def build_v4(path: Path) -> None:
    """A journal as the v4 program left it (its frozen migrations), with a quote-fee fill."""
    build_v3(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    MIGRATIONS[3](conn)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("COMMIT")
    conn.close()


def test_a_v4_journal_migrates_to_v5_its_fills_paid_in_the_quote_and_unstamped(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite3"
    build_v4(db)
    with Journal(db) as j:
        assert j.schema_version == SCHEMA_VERSION == 6
        (old,) = j.all_fills()
        assert (old.id, old.fee, old.fee_asset) == ("PF1", D("0.006"), None)  # None = the quote currency
        assert j.account_stamp() is None  # made before v5: never stamped


def test_a_fills_commission_asset_round_trips_and_a_different_one_is_another_fill(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        o = Order("B1", OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, D("1")), OrderStatus.FILLED,
                  created_ms=T0, filled_qty=D("1"), avg_price=D("100"), updated_ms=T0)
        j.record_order(o)
        base_fee = Fill("binance:1", "B1", "BTCUSDT", Side.BUY, D("0.6"), D("100"), D("0.0006"), Liquidity.TAKER,
                        T0, fee_asset="BTC")
        bnb_fee = Fill("binance:2", "B1", "BTCUSDT", Side.BUY, D("0.4"), D("100"), D("0.00002"), Liquidity.TAKER,
                       T0, fee_asset="BNB")
        j.record_fill(base_fee)
        j.record_fill(bnb_fee)
        j.record_fill(base_fee)  # the same fill again (a replay): recorded once
        assert j.all_fills() == [base_fee, bnb_fee]
        from app.trading.journal import JournalError
        with pytest.raises(JournalError, match="binance:1"):  # same id, the fee in another asset: another fill
            j.record_fill(Fill("binance:1", "B1", "BTCUSDT", Side.BUY, D("0.6"), D("100"), D("0.0006"),
                               Liquidity.TAKER, T0, fee_asset="USDT"))


def test_the_account_stamp_is_written_read_back_and_replaced(tmp_path: Path) -> None:
    from app.trading.journal import AccountStamp
    db = tmp_path / "j.sqlite3"
    live = AccountStamp("LIVE", "binance", True, "AbC1…x9Yz")
    with Journal(db) as j:
        assert j.account_stamp() is None
        j.stamp_account(live)
        assert j.account_stamp() == live
    with Journal(db) as j:  # it survives a reopen, exactly
        assert j.account_stamp() == live
        paper = AccountStamp("PAPER", None, None, None)
        j.stamp_account(paper)
        assert j.account_stamp() == paper
        assert j._conn.execute("SELECT count(*) FROM account_stamp").fetchone()[0] == 1
    with pytest.raises(ValueError, match="mode"):
        AccountStamp("live", "binance", True, "x")
    with pytest.raises(TypeError, match="testnet"):
        AccountStamp("LIVE", "binance", 1, "x")  # type: ignore[arg-type]
