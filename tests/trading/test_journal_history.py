"""The journal's read side for the blotter after a restart (orders and fills since N days, bounded, with the
positions held when the window opens) and CSV exports a person can read (ISO-8601 UTC beside epoch milliseconds)."""

from __future__ import annotations

import csv
from decimal import Decimal as D
from pathlib import Path

from app.models import Fill, Liquidity, Order, OrderRequest, OrderStatus, OrderType, Side
from app.trading.journal import Journal, iso_utc

DAY = 86_400_000
NOW = 1_723_075_200_000 + 10 * 3_600_000  # 2024-08-08 10:00 UTC


def order(oid: str, created_ms: int, status: OrderStatus = OrderStatus.FILLED) -> Order:
    req = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.01"), limit_price=D("60000"))
    return Order(oid, req, status, created_ms=created_ms, updated_ms=created_ms)


def fill(fid: str, oid: str, side: Side, ms: int, qty: str = "0.01", price: str = "60000") -> Fill:
    return Fill(fid, oid, "BTCUSDT", side, D(qty), D(price), D("0.01"), Liquidity.TAKER, ms)


def test_history_starts_from_the_positions_of_the_last_balance_before_the_window(tmp_path: Path) -> None:
    since = NOW - 30 * DAY
    with Journal(tmp_path / "j.sqlite3") as j:
        j.record_order(order("OLD", since - 5 * DAY))
        j.record_fill(fill("F1", "OLD", Side.BUY, since - 5 * DAY, qty="0.02"))
        j.record_balance(since - 2 * DAY, D("1"), D("2"), {"BTCUSDT": (D("0.02"), D("60000"))})
        j.record_order(order("MID", since - DAY))
        j.record_fill(fill("F2", "MID", Side.SELL, since - DAY))  # after the balance: replayed from it
        j.record_order(order("NEW", NOW - 1000))
        j.record_fill(fill("F3", "NEW", Side.SELL, NOW - 1000))
        j.record_order(order("WORK", since - 10 * DAY, OrderStatus.NEW))  # old but still working: listed
        h = j.history(since)
        assert h.start_positions == {"BTCUSDT": (D("0.02"), D("60000"))}
        assert [f.id for f in h.fills] == ["F2", "F3"]
        assert [o.id for o in h.orders] == ["NEW", "WORK"]  # newest first; OLD and MID are before the window
        assert not h.fills_truncated and not h.orders_truncated
        assert [f.id for f in j.fills_since(since)] == ["F3"]
        assert [o.id for o in j.orders_since(since)] == ["NEW", "WORK"]


def test_history_is_bounded_and_says_so(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        j.record_balance(NOW - 10 * DAY, D("1"), D("2"), {"BTCUSDT": (D("1"), D("1"))})
        for i in range(5):
            j.record_order(order(f"O{i}", NOW - 5000 + i))
            j.record_fill(fill(f"F{i}", f"O{i}", Side.BUY, NOW - 5000 + i))
        h = j.history(NOW - DAY, fill_limit=3, order_limit=2)
    assert [f.id for f in h.fills] == ["F2", "F3", "F4"] and h.fills_truncated  # the newest, oldest first
    assert [o.id for o in h.orders] == ["O4", "O3"] and h.orders_truncated
    assert h.start_positions == {}  # the balance's positions do not lead to the first fill read: not used


def test_csv_export_has_utc_times_beside_epoch_milliseconds(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        j.record_order(order("O1", NOW + 123))
        j.record_fill(fill("F1", "O1", Side.BUY, NOW + 456))
        j.record_balance(NOW, D("1"), D("2"), {}, day_start_ms=NOW - 10 * 3_600_000)
        j.export_csv(tmp_path / "csv")
    rows = {}
    for name in ("orders", "fills", "balances"):
        with (tmp_path / "csv" / f"{name}.csv").open(newline="", encoding="utf-8") as fh:
            rows[name] = list(csv.DictReader(fh))
    o, f, b = rows["orders"][0], rows["fills"][0], rows["balances"][0]
    assert (o["created_ms"], o["created_utc"]) == (str(NOW + 123), "2024-08-08T10:00:00.123Z")
    assert o["updated_utc"] == "2024-08-08T10:00:00.123Z"
    assert (f["exchange_ms"], f["exchange_utc"]) == (str(NOW + 456), "2024-08-08T10:00:00.456Z")
    assert (b["at_utc"], b["day_start_utc"]) == ("2024-08-08T10:00:00.000Z", "2024-08-08T00:00:00.000Z")
    assert iso_utc(None) == "" and iso_utc(0) == ""  # never 1970 for a time the journal did not know
