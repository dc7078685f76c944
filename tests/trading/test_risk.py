"""Every risk veto with the message a trader reads, the daily loss limit (REDUCING, latched), the kill switch and
resume, and reduce-only detection including working orders and OCO bracket legs."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.market.instruments import Instrument, Instruments
from app.models import Order, OrderOrigin, OrderRequest, OrderStatus, OrderType, Position, Side
from app.trading.risk import RiskLimits, RiskManager, RiskState, VetoCode, is_reducing

S = "BTCUSDT"
LAST = D("61400")
# Binance's filters for the two symbols (exchangeInfo): a BTC-shaped grid and an XRP-shaped one.
BTC = Instrument.from_steps(S, D("0.01"), D("0.00001"), min_notional=D("5"))
XRP = Instrument.from_steps("XRPUSDT", D("0.0001"), D("0.1"), min_qty=D("0.1"), min_notional=D("5"))


def manager(**limits) -> RiskManager:
    return RiskManager(RiskLimits(**limits), instruments=Instruments.of(BTC, XRP))


def req(side=Side.BUY, qty="0.01", type=OrderType.MARKET, limit=None, stop=None, **kw) -> OrderRequest:
    return OrderRequest(
        S,
        side,
        type,
        D(qty),
        limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop),
        **kw,
    )


def order(r: OrderRequest, oid: str = "O1", status=OrderStatus.NEW) -> Order:
    return Order(oid, r, status, 0)


def check(rm: RiskManager, r: OrderRequest, pos: str = "0", open_orders=(), day_pnl="0", last=LAST):
    return rm.check(r, last_price=last, position=Position(S, D(pos)), open_orders=list(open_orders), day_pnl=D(day_pnl))


@pytest.mark.parametrize(
    ("r", "code", "message"),
    [
        (req(qty="0"), VetoCode.QTY_NOT_POSITIVE, "quantity 0 must be greater than zero"),
        (req(qty="-0.1"), VetoCode.QTY_NOT_POSITIVE, "quantity -0.1 must be greater than zero"),
        (req(qty="0.000001"), VetoCode.LOT_SIZE, "quantity 0.000001 BTC is below the minimum 0.00001 for BTCUSDT"),
        (req(qty="0.000015"), VetoCode.LOT_SIZE,
         "quantity 0.000015 BTC is not a multiple of the lot size 0.00001 of BTCUSDT"),
        (req(type=OrderType.LIMIT), VetoCode.PRICE_MISSING, "a limit order needs a limit price"),
        (req(type=OrderType.STOP_MARKET), VetoCode.PRICE_MISSING, "a stop_market order needs a stop price"),
        (
            req(type=OrderType.LIMIT, limit="61400.005"),
            VetoCode.TICK_SIZE,
            "limit price 61400.005 is not on the tick size 0.01 of BTCUSDT",
        ),
        (
            req(type=OrderType.LIMIT, limit="70000.00"),
            VetoCode.PRICE_BAND,
            "limit 70,000.00 is 14.0% from the last price 61,400.00; the band is ±5%",
        ),
        (
            req(side=Side.SELL, type=OrderType.LIMIT, limit="58000"),
            VetoCode.PRICE_BAND,
            "limit 58,000.00 is 5.5% from the last price 61,400.00; the band is ±5%",
        ),
        (
            req(qty="0.1"),
            VetoCode.NOTIONAL_TOO_LARGE,
            "order value 6,140.00 USDT (buy 0.1 BTC) at the last price 61,400.00 is above the maximum 5,000.00 USDT "
            "per order on BTCUSDT",
        ),
        (
            req(qty="0.09", type=OrderType.LIMIT, limit="61000"),
            VetoCode.NOTIONAL_TOO_LARGE,
            "order value 5,490.00 USDT (buy 0.09 BTC) is above the maximum 5,000.00 USDT per order on BTCUSDT",
        ),
        (
            req(qty="0.00005"),
            VetoCode.NOTIONAL_TOO_SMALL,
            "order value 3.07 USDT (buy 0.00005 BTC) at the last price 61,400.00 is below the minimum 5.00 USDT "
            "for BTCUSDT",
        ),
        (
            req(side=Side.SELL, reduce_only=True),
            VetoCode.REDUCE_ONLY,
            "reduce-only sell of 0.01 would not reduce the position 0 BTCUSDT",
        ),
    ],
)
def test_each_veto_says_why(r, code, message):
    rm = manager()
    veto = check(rm, r)
    assert veto is not None and veto.code is code
    assert veto.message == message
    assert rm.vetoes[code] == 1 and rm.checked == 1 and rm.passed == 0 and rm.last_veto == veto


def test_no_last_price_vetoes_a_market_order():
    rm = manager()
    veto = check(rm, req(), last=None)
    assert veto is not None and veto.code is VetoCode.NO_LAST_PRICE
    assert veto.message == (
        "no last price for BTCUSDT yet, so a market order cannot be checked; wait for the first trade"
    )


def test_a_sound_order_passes_whatever_its_origin():
    rm = manager()
    for origin in (OrderOrigin.MODEL, OrderOrigin.MANUAL):
        assert check(rm, req(qty="0.05", origin=origin)) is None
        assert check(rm, req(qty="0.05", type=OrderType.LIMIT, limit="61000.00", origin=origin)) is None
        assert check(rm, req(side=Side.SELL, qty="0.05", type=OrderType.STOP_MARKET, stop="50000.00")) is None
    assert rm.passed == rm.checked == 6 and not rm.vetoes
    assert check(rm, req(qty="0.1", origin=OrderOrigin.MODEL)).code is VetoCode.NOTIONAL_TOO_LARGE  # model too


def test_position_limit_counts_the_position_and_working_orders_on_the_same_side():
    rm = manager(max_position_value=D("6140"))  # 0.1 BTC at 61,400
    veto = check(rm, req(qty="0.03"), pos="0.08")
    assert veto is not None and veto.code is VetoCode.POSITION_LIMIT
    assert veto.message == ("buy 0.03 BTC would take the position from 0.08 to 0.11 BTCUSDT, worth 6,754.00 USDT; "
                            "the limit is 6,140.00 USDT per symbol")
    working = [order(req(qty="0.05", type=OrderType.LIMIT, limit="61000"))]
    veto = check(rm, req(qty="0.06"), open_orders=working)
    assert veto.message == (
        "buy 0.06 BTC would take the position from 0 to 0.11 BTCUSDT with 0.05 already working on that side, "
        "worth 6,754.00 USDT; the limit is 6,140.00 USDT per symbol"
    )
    assert check(rm, req(side=Side.SELL, qty="0.06"), pos="-0.05").code is VetoCode.POSITION_LIMIT  # shorts too
    assert check(rm, req(qty="0.02"), pos="0.08") is None
    assert check(rm, req(side=Side.SELL, qty="0.08"), pos="0.08") is None  # reducing


def test_too_many_open_orders():
    rm = manager(max_open_orders=2)
    working = [order(req(type=OrderType.LIMIT, limit="61000"), f"O{i}") for i in range(2)]
    other_symbol = order(OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, D("1"), limit_price=D("2500")), "E")
    closed = order(req(), "C", status=OrderStatus.FILLED)
    veto = check(rm, req(), open_orders=[*working, other_symbol, closed])
    assert veto is not None and veto.code is VetoCode.TOO_MANY_OPEN_ORDERS
    assert veto.message == "2 orders are already open on BTCUSDT; the limit is 2"
    assert check(rm, req(), open_orders=[working[0], other_symbol, closed]) is None


def test_reduce_only_detection():
    long = Position(S, D("0.1"))
    sell = lambda q: req(side=Side.SELL, qty=q)  # noqa: E731
    assert is_reducing(sell("0.1"), long, [])
    assert not is_reducing(sell("0.11"), long, [])  # would flip
    assert not is_reducing(req(qty="0.01"), long, [])  # same side
    assert not is_reducing(sell("0.01"), Position(S), [])  # nothing to reduce
    assert is_reducing(req(qty="0.1"), Position(S, D("-0.1")), [])
    working = [order(req(side=Side.SELL, qty="0.05", type=OrderType.LIMIT, limit="62000"))]
    assert is_reducing(sell("0.05"), long, working)
    assert not is_reducing(sell("0.06"), long, working)  # 0.05 already working to close
    leg = {"side": Side.SELL, "qty": "0.1", "origin": OrderOrigin.BRACKET, "parent_id": "E1", "reduce_only": True}
    legs = [  # an OCO bracket pair for the whole position counts once
        order(req(type=OrderType.STOP_MARKET, stop="59000", **leg), "SL"),
        order(req(type=OrderType.LIMIT, limit="62000", **leg), "TP"),
    ]
    assert not is_reducing(sell("0.01"), long, legs)
    half = Position(S, D("0.2"))
    assert is_reducing(sell("0.1"), half, legs)
    assert not is_reducing(sell("0.11"), half, legs)


def test_reduce_only_flag_with_working_orders_tells_the_trader_to_cancel_them():
    rm = manager()
    working = [order(req(side=Side.SELL, qty="0.05", type=OrderType.LIMIT, limit="62000"))]
    veto = check(rm, req(side=Side.SELL, qty="0.06", reduce_only=True), pos="0.1", open_orders=working)
    assert veto.code is VetoCode.REDUCE_ONLY
    assert veto.message == (
        "reduce-only sell of 0.06 would not reduce the position 0.1 BTCUSDT "
        "(0.05 is already working to close it; cancel those orders first)"
    )


def test_daily_loss_limit_switches_to_reducing_and_stays_until_resumed():
    rm = manager()
    changes = []
    rm.add_listener(lambda state, why: changes.append(state))
    assert check(rm, req(), pos="0.05", day_pnl="-499.99") is None and rm.state is RiskState.ACTIVE
    veto = check(rm, req(), pos="0.05", day_pnl="-500")
    assert rm.state is RiskState.REDUCING and changes == [RiskState.REDUCING]
    assert veto.code is VetoCode.REDUCING
    assert veto.message == (
        "the daily loss limit 500.00 USDT is reached; only orders that reduce a position pass: "
        "buy 0.01 does not reduce the position 0.05 BTCUSDT"
    )
    assert check(rm, req(side=Side.SELL, qty="0.05"), pos="0.05", day_pnl="-520") is None  # closing passes
    assert check(rm, req(side=Side.SELL, qty="0.06"), pos="0.05", day_pnl="-520").code is VetoCode.REDUCING
    flat = check(rm, req(side=Side.SELL), day_pnl="-520")
    assert flat.message.endswith("and there is no BTCUSDT position to reduce")
    # a bounce does not lift the limit by itself
    assert check(rm, req(), day_pnl="-100").code is VetoCode.REDUCING and rm.state is RiskState.REDUCING
    assert rm.resume(D("-600")) is RiskState.REDUCING
    assert rm.resume(D("0")) is RiskState.ACTIVE  # e.g. a new UTC day
    assert check(rm, req(), day_pnl="0") is None
    assert rm.vetoes[VetoCode.REDUCING] == 4


def test_observe_day_pnl_changes_state_without_an_order():
    rm = manager(daily_loss_limit=D("100"))
    assert rm.observe_day_pnl(D("-100.01")) is RiskState.REDUCING
    assert rm.transitions[-1][0] is RiskState.REDUCING and "100.01" in rm.transitions[-1][1]


def test_kill_switch_halts_everything_but_flattening_and_resume_restores():
    rm = manager()
    rm.kill()
    assert rm.state is RiskState.HALTED
    halted = "trading is halted (kill switch); only flattening orders that reduce a position pass"
    for r, pos in [
        (req(), "0"),
        (req(side=Side.SELL, qty="0.05"), "0.05"),  # reducing, but manual
        (req(side=Side.SELL, qty="0.05", origin=OrderOrigin.MODEL), "0.05"),
        (req(qty="0.05", origin=OrderOrigin.FLATTEN), "0.05"),  # flatten that would increase
        (req(side=Side.SELL, qty="0.06", origin=OrderOrigin.FLATTEN), "0.05"),  # flatten that would flip
    ]:
        veto = check(rm, r, pos=pos)
        assert veto.code is VetoCode.HALTED and veto.message == halted
    # flattening the whole position passes even above the per-order maximum (closing is never refused for size)
    flatten = req(side=Side.SELL, qty="0.5", origin=OrderOrigin.FLATTEN, reduce_only=True)
    assert check(rm, flatten, pos="0.5") is None
    assert rm.resume(D("0")) is RiskState.ACTIVE
    assert check(rm, req()) is None
    rm.kill()
    assert rm.resume(D("-700")) is RiskState.REDUCING
    assert [s for s, _ in rm.transitions] == [RiskState.HALTED, RiskState.ACTIVE, RiskState.HALTED, RiskState.REDUCING]


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_position_value"):
        RiskLimits(max_position_value=D("0"))
    with pytest.raises(ValueError, match="XRPUSDT"):
        RiskLimits(position_value_by_symbol={"XRPUSDT": D("-1")})
    with pytest.raises(ValueError, match="max_open_orders"):
        RiskLimits(max_open_orders=0)


def xrp(side=Side.BUY, qty="100", type=OrderType.MARKET, **kw) -> OrderRequest:
    return OrderRequest("XRPUSDT", side, type, D(qty), **kw)


def check_xrp(rm: RiskManager, r: OrderRequest, pos: str = "0", last: str = "0.6012"):
    return rm.check(r, last_price=D(last), position=Position("XRPUSDT", D(pos)), open_orders=[], day_pnl=D(0))


def test_limits_are_money_so_an_ordinary_xrp_order_passes():
    """100 XRP is about 60 USDT: a position limit in base units (0.5) refused it; one in money does not."""
    rm = manager()
    assert check_xrp(rm, xrp(qty="100")) is None
    assert check_xrp(rm, xrp(qty="100", type=OrderType.LIMIT, limit_price=D("0.6011"))) is None  # XRP's tick
    veto = check_xrp(rm, xrp(qty="100.05"))
    assert veto.code is VetoCode.LOT_SIZE
    assert veto.message == "quantity 100.05 XRP is not a multiple of the lot size 0.1 of XRPUSDT"
    veto = check_xrp(rm, xrp(qty="5"))  # 3 USDT
    assert veto.code is VetoCode.NOTIONAL_TOO_SMALL
    assert veto.message == ("order value 3.01 USDT (buy 5 XRP) at the last price 0.6012 is below the minimum "
                            "5.00 USDT for XRPUSDT")


def test_per_symbol_overrides_bind_only_their_symbol():
    rm = manager(position_value_by_symbol={"XRPUSDT": D("100")}, order_value_by_symbol={"XRPUSDT": D("50")})
    veto = check_xrp(rm, xrp(qty="100"))  # 60.12 USDT
    assert veto.code is VetoCode.NOTIONAL_TOO_LARGE
    assert veto.message == ("order value 60.12 USDT (buy 100 XRP) at the last price 0.6012 is above the maximum "
                            "50.00 USDT per order on XRPUSDT")
    assert check_xrp(rm, xrp(qty="80")) is None
    veto = check_xrp(rm, xrp(qty="80"), pos="100")
    assert veto.code is VetoCode.POSITION_LIMIT
    assert veto.message == ("buy 80 XRP would take the position from 100 to 180 XRPUSDT, worth 108.22 USDT; "
                            "the limit is 100.00 USDT per symbol")
    assert check(rm, req(qty="0.05")) is None  # BTC keeps the general limits
