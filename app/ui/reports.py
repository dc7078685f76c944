"""The counterfactual report: what rejected and expired proposals would have earned (a CLOSE: saved), beside what the
approved ones did, so the trader learns whether their overrides add value. Plain text in a non-modal dialog; each line
names the proposal's time and symbol, and the text says which prices it scored against."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime
from decimal import Decimal

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.market.instruments import Instrument, Instruments, defaults_for
from app.market.state import MarketData
from app.trading.counterfactual import counterfactual_report
from app.trading.journal import CounterfactualReport, Exit, Journal


def price_path_from(market: MarketData, timeframe: str = "1m"):
    """Prices between two times from the candles held in memory: each bar's high and low as separate points, so a
    stop or target touched inside a bar counts."""

    def path(symbol: str, start_ms: int, end_ms: int):
        if symbol not in market.by_symbol:
            return []
        a = market[symbol].candles.series(timeframe).arrays()
        i0 = int(np.searchsorted(a.open_ms, start_ms, side="left"))
        i1 = int(np.searchsorted(a.open_ms, end_ms, side="right"))
        out = []
        for i in range(i0, i1):
            t = int(a.open_ms[i])
            out.extend(((t, float(a.open[i])), (t + 1, float(a.high[i])), (t + 2, float(a.low[i])),
                        (t + 3, float(a.close[i]))))
        return out

    return path


PRICES = ("the 1 m candles this terminal holds for each symbol (the exchange's history loaded at start, then live "
          "bars); each bar's high and low count, so a stop or target touched inside a bar is taken. With the built-in "
          "exchange these are its own market's prices, which continue across restarts: a proposal from an earlier run "
          "is scored on the prices it was made from")


def local_time(ms: int) -> str:
    """A proposal's time as the trader reads it: local date and time to the second."""
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def format_report(r: CounterfactualReport, *, instruments: Instruments | None = None, prices: str = PRICES) -> str:
    """The report as text: one line per reviewed proposal (time, symbol, action, review, entry and exit in the
    symbol's precision, how it ended, what it would have earned and what it did), then the totals; it says which
    prices it scored against and how a CLOSE is scored."""
    lines = [
        f"Counterfactual over a {r.horizon_ms // 60_000} min horizon, notional = size % of {r.equity:,.2f}",
        *textwrap.wrap(f"Prices: {prices}.", 116),
        "A CLOSE is scored as what closing then would have saved (+) or cost (-) against holding the position to the "
        "horizon.",
        "",
        f"{'time':<20}{'symbol':<11}{'action':<7}{'review':<14}{'entry':>14}{'exit':>14}{'how':>11}"
        f"{'would earn':>12}{'did earn':>12}  proposal",
    ]
    for row in r.rows:
        inst = _instrument(instruments, row.symbol, row.entry_price)
        head = (f"{local_time(row.entry_ms):<20}{row.symbol:<11}{row.action:<7}{row.kind:<14}"
                f"{_p(inst, row.entry_price):>14}")
        if row.exit == Exit.PENDING:  # not scored at the price of the moment
            lines.append(f"{head}{'':>14}{_pending(row.entry_ms + r.horizon_ms, r.now_ms):>35}  {row.proposal_id}")
            continue
        how = row.exit.value if row.exit != Exit.NO_DATA or row.action != "CLOSE" or row.open_qty else "NO_POS"
        lines.append(
            f"{head}{_p(inst, row.exit_price):>14}{how:>11}"
            f"{_m(inst, row.sim_pnl):>12}{_m(inst, row.actual_pnl) if row.taken else '':>12}  {row.proposal_id}"
        )
    closes = [row for row in r.rows if row.action == "CLOSE"]
    lines += [
        "",
        f"rejected would have earned {r.rejected_pnl:+,.2f}; expired {r.expired_pnl:+,.2f}",
        f"approved earned {r.taken_pnl:+,.2f} (as proposed they would have earned {r.taken_sim_pnl:+,.2f})",
        f"taking every proposal as made: {r.model_pnl:+,.2f}",
        f"value of your overrides: {r.override_value:+,.2f}",
    ]
    if closes:
        saved = sum((row.sim_pnl for row in closes if row.sim_pnl is not None and not row.taken), Decimal(0))
        lines.append(f"of which CLOSE proposals not taken would have saved {saved:+,.2f}")
    if r.pending:
        lines.append(f"{r.pending} proposal{' whose horizon has' if r.pending == 1 else 's whose horizons have'} "
                     "not passed yet: pending, left out of the totals until scored")
    if r.no_data:
        lines.append(f"{r.no_data} proposals without price data for their horizon (or a CLOSE with nothing to close, "
                     "NO_POS) are left out")
    return "\n".join(lines)


def _pending(end_ms: int, now_ms: int | None) -> str:
    """'pending (horizon in 7 min)': when it will be scored, in whole minutes rounded up."""
    if now_ms is None:
        return "pending"
    return f"pending (horizon in {max(1, -(-(end_ms - now_ms) // 60_000))} min)"


def _instrument(instruments: Instruments | None, symbol: str, price: Decimal | None) -> Instrument:
    if instruments is not None and symbol.upper() in instruments.loaded:
        return instruments.get(symbol)
    return defaults_for(symbol, price)


def _p(inst: Instrument, v: Decimal | None) -> str:
    return "" if v is None else inst.fmt_price(v)


def _m(inst: Instrument, v: Decimal | None) -> str:
    return "" if v is None else inst.fmt_money(v, sign=True)


def show_report(parent: QtWidgets.QWidget, journal: Journal, market: MarketData, equity,
                instruments: Instruments | None = None, prices: str = PRICES,
                now_ms: int | None = None) -> QtWidgets.QDialog:
    """Trading > Counterfactual report…: every reviewed proposal (BUY, SELL and CLOSE) scored on the candles held
    (``prices`` says which, e.g. the built-in exchange's path, the same across restarts)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms  # a horizon not passed yet: pending
    report = counterfactual_report(journal, price_path_from(market), equity=equity, now_ms=now_ms)
    dialog = QtWidgets.QDialog(parent)
    dialog.setWindowTitle("Counterfactual report")
    layout = QtWidgets.QVBoxLayout(dialog)
    text = QtWidgets.QPlainTextEdit(format_report(report, instruments=instruments, prices=prices))
    text.setReadOnly(True)
    text.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
    text.setMinimumSize(min(1100, parent.screen().availableGeometry().width() - 80) if parent.screen() else 1100,
                        360)
    text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
    layout.addWidget(text)
    close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
    close.rejected.connect(dialog.close)
    layout.addWidget(close)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
