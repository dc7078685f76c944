"""The counterfactual report: what rejected and expired proposals would have earned, beside what the approved ones
did, so the trader learns whether their overrides add value. Plain text in a non-modal dialog."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.market.state import MarketData
from app.trading.journal import CounterfactualReport, Journal


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


def format_report(r: CounterfactualReport) -> str:
    lines = [
        f"Counterfactual over a {r.horizon_ms // 60_000} min horizon, notional = size % of {r.equity:,.2f}",
        "",
        f"{'proposal':<22}{'action':<7}{'review':<14}{'entry':>12}{'exit':>12}{'how':>10}{'would earn':>12}"
        f"{'did earn':>12}",
    ]
    for row in r.rows:
        lines.append(
            f"{row.proposal_id:<22}{row.action:<7}{row.kind:<14}"
            f"{_m(row.entry_price):>12}{_m(row.exit_price):>12}{row.exit.value:>10}"
            f"{_m(row.sim_pnl):>12}{_m(row.actual_pnl) if row.taken else '':>12}"
        )
    lines += [
        "",
        f"rejected would have earned {r.rejected_pnl:+,.2f}; expired {r.expired_pnl:+,.2f}",
        f"approved earned {r.taken_pnl:+,.2f} (as proposed they would have earned {r.taken_sim_pnl:+,.2f})",
        f"taking every proposal as made: {r.model_pnl:+,.2f}",
        f"value of your overrides: {r.override_value:+,.2f}",
    ]
    if r.no_data:
        lines.append(f"{r.no_data} proposals without price data for their horizon are left out")
    return "\n".join(lines)


def _m(v) -> str:
    return "" if v is None else f"{v:,.2f}"


def show_report(parent: QtWidgets.QWidget, journal: Journal, market: MarketData, equity) -> QtWidgets.QDialog:
    report = journal.counterfactual_report(price_path_from(market), equity=equity)
    dialog = QtWidgets.QDialog(parent)
    dialog.setWindowTitle("Counterfactual report")
    layout = QtWidgets.QVBoxLayout(dialog)
    text = QtWidgets.QPlainTextEdit(format_report(report))
    text.setReadOnly(True)
    text.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))
    text.setMinimumSize(820, 360)
    text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
    layout.addWidget(text)
    close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
    close.rejected.connect(dialog.close)
    layout.addWidget(close)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
