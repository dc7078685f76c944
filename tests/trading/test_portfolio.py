"""Portfolio arithmetic on hand-computed cases: average cost, realised PnL on reductions and flips, fees, cash,
unrealised PnL, equity, day PnL across a UTC midnight and across a restart, the bounded equity curve."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.models import Fill, Liquidity, Position, Side
from app.trading.portfolio import Portfolio, apply_to_position

S = "BTCUSDT"
DAY1 = 1_723_075_200_000  # 2024-08-08 00:00 UTC
DAY2 = DAY1 + 86_400_000
_n = 0


def fill(side: Side, qty: str, price: str, fee: str, ms: int = DAY1 + 36_000_000, symbol: str = S) -> Fill:
    global _n
    _n += 1
    return Fill(f"F{_n}", f"O{_n}", symbol, side, D(qty), D(price), D(fee), Liquidity.TAKER, ms)


def test_buy_add_reduce_flip_and_close_by_hand():
    pf = Portfolio(starting_cash=D("100000"))
    pf.apply_fill(fill(Side.BUY, "0.1", "60000", "6"))
    p = pf.position(S)
    assert (p.qty, p.avg_price, p.realized_pnl, p.fees) == (D("0.1"), D("60000"), D("-6"), D("6"))
    assert pf.cash == D("93994")  # 100000 - 6000 - 6

    pf.apply_fill(fill(Side.BUY, "0.1", "62000", "6.2"))  # add: average moves to 61000
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("0.2"), D("61000"), D("-12.2"))
    assert pf.cash == D("87787.8")

    pf.apply_fill(fill(Side.SELL, "0.05", "63000", "3.15"))  # reduce: +0.05 * 2000 realised, average kept
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("0.15"), D("61000"), D("84.65"))
    assert pf.cash == D("90934.65")

    pf.mark(S, D("64000"))
    assert pf.unrealized_pnl(S) == D("450")  # 0.15 * 3000
    assert pf.equity() == D("100534.65")  # 90934.65 + 0.15 * 64000
    assert pf.equity() == pf.starting_cash + pf.realized_pnl() + pf.unrealized_pnl(S)

    pf.apply_fill(fill(Side.SELL, "0.25", "60000", "15"))  # flip: close 0.15 at -1000 each, open 0.1 short at 60000
    assert (p.qty, p.avg_price, p.realized_pnl) == (D("-0.1"), D("60000"), D("-80.35"))
    assert pf.cash == D("105919.65")
    assert pf.unrealized_pnl(S) == D("-400")  # short 0.1 marked at 64000
    assert pf.equity() == D("99519.65")  # 105919.65 - 0.1 * 64000 = 100000 - 80.35 - 400

    pf.apply_fill(fill(Side.BUY, "0.1", "59000", "5.9"))  # cover the short: +0.1 * 1000
    assert (p.qty, p.avg_price, p.realized_pnl, p.fees) == (D("0"), D("0"), D("13.75"), D("36.25"))
    assert pf.cash == D("100013.75") == pf.equity()
    assert pf.unrealized_pnl(S) == 0
    assert pf.fees == D("36.25") and pf.fills_applied == 5
    values = [pf.cash, pf.equity(), pf.fees, p.qty, p.avg_price, p.realized_pnl, *(e for _, e in pf.equity_curve)]
    assert all(type(v) is D for v in values)


def test_short_from_flat_and_average_quantized_to_1e_8():
    pf = Portfolio(starting_cash=D("1000"))
    pf.apply_fill(fill(Side.SELL, "0.3", "100", "0.03"))
    pf.apply_fill(fill(Side.SELL, "0.4", "101", "0.0404"))
    p = pf.position(S)
    assert p.qty == D("-0.7")
    assert p.avg_price == D("100.57142857")  # 70.4 / 0.7 = 100.571428571...
    assert pf.cash == D("1070.3296")  # 1000 + 30 - 0.03 + 40.4 - 0.0404
    pf.mark(S, D("99"))
    assert pf.unrealized_pnl(S) == D("1.1")  # -0.7 * (99 - 100.57142857) = 1.099999999, to 1e-8 -> 1.10000000
    assert pf.equity() == D("1001.0296")  # exact from cash: 1070.3296 - 69.3


def test_position_marked_at_its_fill_price_until_a_mark_arrives():
    pf = Portfolio(starting_cash=D("10000"))
    pf.apply_fill(fill(Side.BUY, "1", "50", "0.05"))
    assert pf.mark_price(S) == D("50")
    assert pf.equity() == D("9999.95")


def test_day_pnl_from_the_utc_day_start_snapshot():
    pf = Portfolio(starting_cash=D("100000"))
    assert pf.day_pnl(DAY1 + 1000) == 0
    pf.apply_fill(fill(Side.BUY, "0.1", "60000", "6", ms=DAY1 + 3_600_000))
    pf.mark(S, D("61000"))
    assert pf.day_pnl(DAY1 + 7_200_000) == D("94")  # -6 fee + 0.1 * 1000
    assert pf.day_pnl(DAY2 + 5) == 0  # a new day starts from the equity carried over: 100094
    assert pf.day_start_ms == DAY2 and pf.day_start_equity == D("100094")
    pf.mark(S, D("59500"))
    assert pf.day_pnl(DAY2 + 60_000) == D("-150")
    pf.apply_fill(fill(Side.SELL, "0.1", "59500", "5.95", ms=DAY2 + 120_000))
    assert pf.day_pnl(DAY2 + 180_000) == D("-155.95")


def test_equity_curve_sampled_on_fills_and_timer_and_bounded():
    pf = Portfolio(starting_cash=D("1000"), curve_max=3)
    pf.apply_fill(fill(Side.BUY, "1", "100", "0.1", ms=DAY1 + 1))
    pf.mark(S, D("110"))
    assert pf.sample(DAY1 + 2) == D("1009.9")
    pf.sample(DAY1 + 2)  # the same millisecond replaces, it does not duplicate
    pf.mark(S, D("90"))
    pf.sample(DAY1 + 3)
    pf.sample(DAY1 + 4)
    assert list(pf.equity_curve) == [(DAY1 + 2, D("1009.9")), (DAY1 + 3, D("989.9")), (DAY1 + 4, D("989.9"))]


def test_apply_to_position_flips_and_closes():
    pos = Position(S)
    for f in (
        fill(Side.SELL, "1", "100", "0.1"),  # short 1 @ 100
        fill(Side.BUY, "3", "90", "0.2"),  # close 1 (+10), open long 2 @ 90
        fill(Side.SELL, "2", "95", "0"),  # close 2 (+10): flat
    ):
        apply_to_position(pos, f)
    assert (pos.qty, pos.avg_price, pos.realized_pnl, pos.fees) == (D(0), D(0), D("19.7"), D("0.3"))


def test_resume_day_carries_the_day_pnl_on():
    pf = Portfolio(starting_cash=D("1000"))
    pf.resume_day(DAY1, D("1100"))  # the day started at 1100: 100 already lost today
    assert pf.day_pnl(DAY1 + 3_600_000) == D("-100")
    assert pf.day_pnl(DAY2) == D("0")  # a new day starts afresh


def test_non_positive_fill_is_refused():
    with pytest.raises(ValueError, match="non-positive"):
        Portfolio().apply_fill(fill(Side.BUY, "0", "1", "0"))


# ----- the commission's asset (Binance: a buy pays in the base coin, a sell in the quote, or BNB) ---------------------


def asset_fill(side: Side, qty: str, price: str, fee: str, asset: str | None) -> Fill:
    global _n
    _n += 1
    return Fill(f"F{_n}", f"O{_n}", S, side, D(qty), D(price), D(fee), Liquidity.TAKER, DAY1 + 1000,
                fee_asset=asset)


def test_a_fee_in_the_base_asset_comes_out_of_the_position_as_the_account_holds_it():
    pf = Portfolio(starting_cash=D("1000"))
    pf.apply_fill(asset_fill(Side.BUY, "1", "100", "0.001", "BTC"))
    p = pf.position(S)
    assert (p.qty, p.avg_price) == (D("0.999"), D("100"))  # the coins the exchange credited
    assert pf.cash == D("900")  # the quote paid is qty × price: no quote fee
    assert (p.fees, pf.fees, p.realized_pnl) == (D("0.1"), D("0.1"), D("-0.1"))  # 0.001 BTC at 100
    assert pf.equity() == D("999.9") == pf.starting_cash + pf.realized_pnl() + pf.unrealized_pnl(S)
    pf.apply_fill(asset_fill(Side.SELL, "0.999", "110", "0.10989", "USDT"))  # a sell pays in the quote
    assert p.qty == 0 and pf.cash == D("900") + D("109.89") - D("0.10989")
    assert pf.equity() == pf.starting_cash + pf.realized_pnl()
    assert pf.other_fees == {}


def test_a_fee_in_a_third_asset_is_recorded_but_not_in_pnl(caplog: pytest.LogCaptureFixture):
    pf = Portfolio(starting_cash=D("1000"))
    pf.apply_fill(asset_fill(Side.BUY, "1", "100", "0.0002", "BNB"))
    pf.apply_fill(asset_fill(Side.BUY, "1", "100", "0.0003", "BNB"))
    p = pf.position(S)
    assert (p.qty, pf.cash, pf.fees, p.realized_pnl) == (D("2"), D("800"), D("0"), D("0"))
    assert pf.other_fees == {"BNB": D("0.0005")}
    warnings = [r.getMessage() for r in caplog.records if "BNB" in r.getMessage()]
    assert len(warnings) == 1 and "not counted in PnL" in warnings[0]  # said once, not per fill


def test_apply_to_position_without_a_currency_reads_the_symbol():
    pos = Position(S)
    apply_to_position(pos, asset_fill(Side.BUY, "1", "100", "0.001", "BTC"))
    apply_to_position(pos, asset_fill(Side.BUY, "1", "100", "0.1", "USDT"))
    assert (pos.qty, pos.fees) == (D("1.999"), D("0.2"))
