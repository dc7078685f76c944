"""Positions, cash, realised and unrealised PnL, equity and its curve: all in exact Decimal (DESIGN rule 5).

Accounting (average cost, one currency):

- a fill that opens or adds to a position moves the average price to the quantity-weighted mean of the old
  average and the fill price; a fill that reduces it realises ``closed_qty * (price - avg)`` (sign-adjusted for
  shorts) and leaves the average unchanged; a fill that flips it realises the closed part and opens the rest at
  the fill price;
- fees are deducted from the position's ``realized_pnl`` (which is "after fees", as ``Position`` documents), and
  totalled in ``Position.fees`` and ``Portfolio.fees``, in the quote currency. Where the commission was paid
  (``Fill.fee_asset``, as the exchange says it) decides what it takes:
  - the quote currency (``None``: every paper fill): it comes out of cash;
  - the base asset (Binance charges a buy in the coin received): it comes out of the position, exactly as the
    account holds it (a buy of 1 with a 0.001 base fee holds 0.999; a sell gives up ``qty + fee``); its value at
    the fill price is the fee counted in PnL;
  - any other asset (BNB): it is recorded in ``Portfolio.other_fees`` by asset and logged once per asset, but not
    counted in PnL or equity (the portfolio holds one currency and has no price for it);
- cash: a buy pays ``qty * price`` (+ a quote fee), a sell receives ``qty * price`` (- a quote fee);
- equity = cash + Σ qty × mark, where the mark is the last price given to ``mark()`` (the average price until one
  is known). Computed from cash, equity is exact; unrealised PnL uses the average price, which is kept to 1e-8,
  so ``starting_cash + realised + unrealised`` can differ from equity by less than ``qty × 1e-8``.

Quantization: prices and average prices to 1e-8, cash, PnL and fees to 1e-8, half-even.

Day PnL: at the first event of each UTC day (a fill, ``sample`` or ``day_pnl`` call carrying a time) the equity
*before* that event becomes the day's starting equity. The session should call ``sample(now_ms)`` on a timer so
the snapshot is taken close to midnight. The journal records the day start with every balance, and a restart
within the same UTC day carries on from it (``resume_day``): the daily loss limit depends on it.

Restart: ``app.trading.restore`` replays every journaled fill through ``apply_fill``, the very call used live.
"""

from __future__ import annotations

import logging
from collections import deque
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from app.models import Fill, Position, Side

log = logging.getLogger(__name__)

PRICE_Q = Decimal("1e-8")
MONEY_Q = Decimal("1e-8")
DAY_MS = 86_400_000
ZERO = Decimal(0)


def q_price(x: Decimal) -> Decimal:
    return x.quantize(PRICE_Q, rounding=ROUND_HALF_EVEN)


def q_money(x: Decimal) -> Decimal:
    return x.quantize(MONEY_Q, rounding=ROUND_HALF_EVEN)


def utc_day_start(ms: int) -> int:
    return ms - ms % DAY_MS


class FeeIn(StrEnum):
    QUOTE = "quote"
    BASE = "base"
    OTHER = "other"


def fee_in(fill: Fill, quote: str | None = None) -> FeeIn:
    """Which asset of the fill's symbol its commission was paid in. ``quote``: the portfolio's currency; without it
    the symbol's spelling decides (``BTCUSDT``: BTC is the base, USDT the quote)."""
    asset = fill.fee_asset
    if asset is None or asset == quote or (quote is None and fill.symbol.endswith(asset)):
        return FeeIn.QUOTE
    if fill.symbol.startswith(asset) and (quote is None or fill.symbol == asset + quote):
        return FeeIn.BASE
    return FeeIn.OTHER


def apply_to_position(pos: Position, fill: Fill, quote: str | None = None) -> None:
    """The one rule that applies a fill to a position (see the module docstring); ``Portfolio.apply_fill`` and the
    journal's reports both use it, so a position is the same number wherever it is computed."""
    qty, price, fee = fill.qty, fill.price, fill.fee
    if qty <= 0:
        raise ValueError(f"fill {fill.id} has a non-positive quantity {qty}")
    kind = fee_in(fill, quote)
    if kind is FeeIn.BASE:  # the coins paid leave the position; their value at the fill price is the fee
        qty = qty - fee if fill.side is Side.BUY else qty + fee
        fee = q_money(fee * price)
    elif kind is FeeIn.OTHER:  # no price for it here: recorded by the portfolio, not in PnL
        fee = ZERO
    if qty <= 0:
        raise ValueError(f"fill {fill.id}: its commission {fill.fee} {fill.fee_asset} is not less than its quantity")
    signed = qty if fill.side is Side.BUY else -qty
    old = pos.qty
    if old == 0 or (old > 0) == (signed > 0):  # open or add
        new_qty = old + signed
        pos.avg_price = q_price((abs(old) * pos.avg_price + qty * price) / abs(new_qty))
        pos.qty = new_qty
    else:  # reduce, close or flip
        closed = min(qty, abs(old))
        direction = 1 if old > 0 else -1
        pos.realized_pnl = q_money(pos.realized_pnl + closed * (price - pos.avg_price) * direction)
        pos.qty = old + signed
        if pos.qty == 0:
            pos.avg_price = ZERO
        elif (pos.qty > 0) != (old > 0):  # flipped: the rest opens at the fill price
            pos.avg_price = q_price(price)
    pos.fees = q_money(pos.fees + fee)
    pos.realized_pnl = q_money(pos.realized_pnl - fee)


class Portfolio:
    def __init__(
        self,
        quote_currency: str = "USDT",
        starting_cash: Decimal = Decimal("10000"),
        curve_max: int = 10_000,
    ) -> None:
        self.quote_currency = quote_currency
        self.starting_cash = q_money(Decimal(starting_cash))
        self.cash = self.starting_cash
        self.fees = ZERO
        self.other_fees: dict[str, Decimal] = {}  # commissions paid in a third asset (BNB): not in PnL or equity
        self.fills_applied = 0
        self._positions: dict[str, Position] = {}
        self._marks: dict[str, Decimal] = {}
        self.equity_curve: deque[tuple[int, Decimal]] = deque(maxlen=curve_max)
        self.day_start_ms: int | None = None
        self.day_start_equity: Decimal = self.starting_cash
        self.version = 0

    # ------------------------------------------------------------------------------------------------ fills

    def apply_fill(self, fill: Fill) -> None:
        """Apply a fill, live or replayed from the journal on restart: the same call, the same arithmetic."""
        self._roll_day(fill.exchange_ms)
        pos = self.position(fill.symbol)
        fees_before = pos.fees
        apply_to_position(pos, fill, self.quote_currency)
        kind = fee_in(fill, self.quote_currency)
        notional = fill.qty * fill.price
        cash_fee = fill.fee if kind is FeeIn.QUOTE else ZERO
        self.cash = q_money(self.cash - notional - cash_fee if fill.side is Side.BUY
                            else self.cash + notional - cash_fee)
        self.fees = q_money(self.fees + pos.fees - fees_before)
        if kind is FeeIn.OTHER and fill.fee:
            asset = fill.fee_asset or ""
            if asset not in self.other_fees:
                log.warning("commission paid in %s (fill %s): recorded, but not counted in PnL or equity, which are "
                            "in %s", asset, fill.id, self.quote_currency)
            self.other_fees[asset] = self.other_fees.get(asset, ZERO) + fill.fee
        self._marks.setdefault(fill.symbol, q_price(fill.price))
        self.fills_applied += 1
        self.version += 1
        self._append_curve(fill.exchange_ms)

    # ------------------------------------------------------------------------------------------------ marks

    def mark(self, symbol: str, price: Decimal) -> None:
        self._marks[symbol] = q_price(Decimal(price))
        self.version += 1

    def mark_price(self, symbol: str) -> Decimal | None:
        return self._marks.get(symbol)

    # ------------------------------------------------------------------------------------------------ reads

    def position(self, symbol: str) -> Position:
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = Position(symbol)
        return pos

    @property
    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def unrealized_pnl(self, symbol: str) -> Decimal:
        pos = self._positions.get(symbol)
        if pos is None or pos.qty == 0:
            return ZERO
        mark = self._marks.get(symbol, pos.avg_price)
        return q_money(pos.qty * (mark - pos.avg_price))

    def realized_pnl(self, symbol: str | None = None) -> Decimal:
        """After fees; of one symbol or of all."""
        if symbol is not None:
            pos = self._positions.get(symbol)
            return pos.realized_pnl if pos is not None else ZERO
        return sum((p.realized_pnl for p in self._positions.values()), ZERO)

    def equity(self) -> Decimal:
        value = self.cash
        for sym, pos in self._positions.items():
            if pos.qty:
                value += pos.qty * self._marks.get(sym, pos.avg_price)
        return q_money(value)

    def sample(self, now_ms: int) -> Decimal:
        """Record (now_ms, equity) on the curve (call it on a timer); returns the equity."""
        self._roll_day(now_ms)
        return self._append_curve(now_ms)

    def day_pnl(self, now_ms: int) -> Decimal:
        self._roll_day(now_ms)
        return q_money(self.equity() - self.day_start_equity)

    def _append_curve(self, ms: int) -> Decimal:
        eq = self.equity()
        if self.equity_curve and self.equity_curve[-1][0] == ms:
            self.equity_curve[-1] = (ms, eq)
        else:
            self.equity_curve.append((ms, eq))
        return eq

    def _roll_day(self, now_ms: int) -> None:
        day = utc_day_start(now_ms)
        if self.day_start_ms is None or day > self.day_start_ms:
            self.day_start_ms = day
            self.day_start_equity = self.equity()

    # ------------------------------------------------------------------------------------------------ restart

    def resume_day(self, day_start_ms: int | None, day_start_equity: Decimal) -> None:
        """Carry on the UTC day the journal recorded (``app.trading.restore``): day PnL, and with it the daily loss
        limit, continue across a restart. ``None`` lets the day start afresh at the next event."""
        self.day_start_ms = day_start_ms
        self.day_start_equity = day_start_equity
        self.version += 1

    def reset_curve(self) -> None:
        """Forget the curve (a replay of old fills has no marks to draw a true one)."""
        self.equity_curve.clear()
        self.version += 1
