"""The account summary and the order ticket's read-back, without Qt: each account figure says what it covers (the
defect: "Unrealised" covered only the symbol on screen while Equity and Day PnL covered the account, unlabelled), and
the ticket reads back the symbol, bid / ask, order value and % of equity, SL / TP as price and percent."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.market.instruments import Instrument, Instruments
from app.models import Fill, Liquidity, OrderType, Side
from app.trading.portfolio import Portfolio
from app.view.ticket import account_view, parse_bracket, ticket_view

NOW = 1_723_161_255_000
BTC = Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"), min_notional=D("5"))
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("1"), min_notional=D("5"))
INSTRUMENTS = Instruments.of(BTC, XRP)


def fill(symbol: str, side: Side, qty: str, price: str, n: int) -> Fill:
    return Fill(f"F{n}", f"O{n}", symbol, side, D(qty), D(price), D(0), Liquidity.TAKER, NOW)


@pytest.fixture
def portfolio() -> Portfolio:
    pf = Portfolio(starting_cash=D("10000"))
    pf.day_pnl(NOW)  # the day starts at 10,000
    pf.apply_fill(fill("BTCUSDT", Side.BUY, "0.1", "60000", 1))
    pf.apply_fill(fill("XRPUSDT", Side.BUY, "1000", "0.6000", 2))
    pf.mark("BTCUSDT", D("60500"))  # +50
    pf.mark("XRPUSDT", D("0.5800"))  # -20
    return pf


def test_every_account_figure_says_whether_it_covers_the_account_or_the_symbol_on_screen(portfolio):
    view = account_view(portfolio, symbol="XRPUSDT", instruments=INSTRUMENTS, now_ms=NOW, risk_state="ACTIVE")
    got = {r.key: (r.label, r.value, r.tone) for r in view.rows}
    assert got["equity"] == ("Equity · account", "10,030.00 USDT", "")
    assert got["cash"] == ("Cash · account", "3,400.00 USDT", "")
    assert got["day_pnl"] == ("Day PnL · account", "+30.00 USDT", "up")
    assert got["unrealised_account"] == ("Unrealised · account", "+30.00 USDT", "up")  # +50 BTC, -20 XRP
    assert got["unrealised_symbol"] == ("Unrealised · XRPUSDT", "-20.00 USDT", "down")
    assert got["position"] == ("Position · XRPUSDT", "LONG 1,000.0 XRP @ 0.6000", "")
    assert got["risk"] == ("Risk", "ACTIVE", "ok")
    assert view.keys == ("equity", "cash", "day_pnl", "unrealised_account", "unrealised_symbol", "position", "risk")
    flat = account_view(Portfolio(starting_cash=D("1000")), symbol="BTCUSDT", instruments=INSTRUMENTS, now_ms=NOW,
                        risk_state="HALTED", risk_reason="kill switch")
    assert flat.row("position").value == "flat" and flat.row("risk").tone == "bad"
    assert flat.row("unrealised_account").value == "+0.00 USDT"


def test_the_ticket_reads_back_symbol_touch_value_and_share_of_equity_in_the_instruments_precision():
    view = ticket_view("BTCUSDT", instrument=BTC, mode="PAPER", side=Side.BUY, order_type=OrderType.MARKET,
                       qty_text="0.01", bid=D("59999.99"), ask=D("60000.01"), equity=D("10000"))
    assert (view.title, view.bid, view.ask, view.spread) == ("BTCUSDT · PAPER", "59,999.99", "60,000.01", "0.02")
    assert view.order_value == "600.00 USDT" and view.pct_equity == "6.0 % of equity"  # a buy takes the ask
    assert view.order_text == "BUY 0.01000 BTCUSDT market" and view.problem == ""
    sell = ticket_view("BTCUSDT", instrument=BTC, mode="PAPER", side=Side.SELL, order_type=OrderType.LIMIT,
                       qty_text="0.5", price_text="61000", bid=D("59999.99"), ask=D("60000.01"), equity=D("10000"))
    assert sell.order_value == "30,500.00 USDT" and sell.pct_equity == "305.0 % of equity"
    assert sell.order_text == "SELL 0.50000 BTCUSDT limit @ 61,000.00"
    assert sell.price_hint == "limit price, tick 0.01"


def test_stop_loss_and_take_profit_are_typed_as_price_or_percent_and_shown_as_both():
    view = ticket_view("BTCUSDT", instrument=BTC, mode="LIVE", side=Side.BUY, order_type=OrderType.LIMIT,
                       qty_text="0.01", price_text="60000", stop_loss_text="58800", take_profit_text="3%")
    assert view.stop_loss == "58,800.00 (−2.00 %)"
    # the order carries each as typed: the stop-loss as its price (lands there whatever the fill), the target as a %
    assert (view.stop_loss_price, view.stop_loss_pct) == (D("58800.00"), None)
    assert view.take_profit_price is None
    assert view.take_profit == "61,800.00 (+3.00 %)" and view.take_profit_pct == D("3")
    assert view.order_text == "BUY 0.01000 BTCUSDT limit @ 60,000.00 · SL 58,800.00 · TP 61,800.00"
    assert view.summary == "600.00 USDT · SL −2.00 % · TP 61,800.00"  # what the trader did not type
    wrong = ticket_view("BTCUSDT", instrument=BTC, mode="PAPER", side=Side.BUY, order_type=OrderType.LIMIT,
                        qty_text="0.01", price_text="60000", stop_loss_text="61000")
    assert wrong.problem == "stop-loss 61,000.00 must be below the entry 60,000.00 for a buy"
    short = parse_bracket("59000", "take-profit", side=Side.SELL, ref=D("60000"), inst=BTC)
    assert short is not None and short.text == "59,000.00 (−1.67 %)"


def test_the_ticket_says_what_is_missing_or_wrong_in_words():
    def problem(**kw) -> str:
        args = dict(instrument=XRP, mode="PAPER", side=Side.BUY, order_type=OrderType.LIMIT, qty_text="10",
                    price_text="0.6")
        args.update(kw)
        return ticket_view("XRPUSDT", **args).problem  # type: ignore[arg-type]

    assert problem(qty_text="") == "type a quantity"
    assert problem(qty_text="abc") == "quantity 'abc' is not a number"
    assert problem(price_text="") == "type a limit price"
    assert problem(order_type=OrderType.STOP_MARKET, price_text="") == "type a stop price"
    assert problem() == ""
    view = ticket_view("XRPUSDT", instrument=XRP, mode="PAPER", side=Side.SELL, order_type=OrderType.STOP_MARKET,
                       qty_text="10", price_text="0.55", replacing="P7")
    assert view.order_text == "SELL 10.0 XRPUSDT stop @ 0.5500 (replaces P7)" and view.order_value == "5.50 USDT"


def test_a_marketable_limit_is_measured_from_the_touch_it_takes_not_its_limit():
    view = ticket_view("XRPUSDT", instrument=XRP, mode="PAPER", side=Side.BUY, order_type=OrderType.LIMIT,
                       qty_text="100", price_text="0.6010", stop_loss_text="0.5890", bid=D("0.5999"), ask=D("0.6001"))
    assert view.stop_loss == "0.5890 (−1.85 %)" and view.order_value == "60.01 USDT"
    resting = ticket_view("XRPUSDT", instrument=XRP, mode="PAPER", side=Side.BUY, order_type=OrderType.LIMIT,
                          qty_text="100", price_text="0.5900", stop_loss_text="0.5782", bid=D("0.5999"),
                          ask=D("0.6001"))
    assert resting.stop_loss == "0.5782 (−2.00 %)" and resting.order_value == "59.00 USDT"


def test_account_money_is_in_the_account_currencys_precision_not_always_cents():
    """A BTC account: equity 0.51234567 BTC must not read "0.51" (a cent of BTC hides hundreds of dollars)."""
    eth = Instrument.from_steps("ETHBTC", D("0.000001"), D("0.0001"))
    pf = Portfolio(starting_cash=D("0.51234567"))
    pf.day_pnl(NOW)
    view = account_view(pf, symbol="ETHBTC", instruments=Instruments.of(eth), now_ms=NOW, risk_state="ACTIVE",
                        currency="BTC")
    assert view.row("equity").value == "0.512346 BTC"  # the BTC quote's precision (the ETHBTC tick)
    assert view.row("cash").value == "0.512346 BTC"
    assert view.row("day_pnl").value == "+0.000000 BTC"
    other = account_view(pf, symbol="BTCUSDT", instruments=INSTRUMENTS, now_ms=NOW, risk_state="ACTIVE",
                         currency="BTC")
    assert other.row("equity").value == "0.51234567 BTC"  # no instrument quoted in BTC: a coin's 8 places
    usdt = account_view(pf, symbol="BTCUSDT", instruments=INSTRUMENTS, now_ms=NOW, risk_state="ACTIVE")
    assert usdt.row("equity").value == "0.51 USDT"
