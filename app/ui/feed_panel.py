"""Feed counters in the performance dock: what arrived, what was rejected, dropped or reconnected.

A first version of the performance panel; latency percentiles and memory join it later.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.session import Session

ROWS = (
    ("state", "Feed state"),
    ("rate", "Messages / s"),
    ("frames", "Frames received"),
    ("events", "Events parsed"),
    ("rejected", "Frames rejected"),
    ("reconnects", "Reconnects"),
    ("stale", "Stale periods"),
    ("dropped", "Bus drops"),
    ("trades", "Trades"),
    ("bars", "Bars (chart timeframe)"),
    ("uptime", "Uptime"),
)


class FeedPanel(QtWidgets.QTableWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(len(ROWS), 2, parent)
        self.setObjectName("feedPanel")
        self.setHorizontalHeaderLabels(["Metric", "Value"])
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(20)
        self.setShowGrid(False)
        self.setAlternatingRowColors(True)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.horizontalHeader().setStretchLastSection(True)
        self._rows = {}
        for i, (key, label) in enumerate(ROWS):
            self.setItem(i, 0, QtWidgets.QTableWidgetItem(label))
            value = QtWidgets.QTableWidgetItem("—")
            value.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
            self.setItem(i, 1, value)
            self._rows[key] = value
        self.resizeColumnToContents(0)

    def update_from(self, session: Session, symbol: str, rate: float, timeframe: str, uptime_s: float) -> None:
        f = session.feed
        m = session.market[symbol]
        rejected = ", ".join(f"{k} {v}" for k, v in f.rejected.most_common(3))
        values = {
            "state": f.state.value,
            "rate": f"{rate:,.0f}",
            "frames": f"{f.frames:,}",
            "events": f"{f.events:,}",
            "rejected": f"{f.rejected_total:,}" + (f" ({rejected})" if rejected else ""),
            "reconnects": f"{f.reconnects:,}",
            "stale": f"{f.stale_events:,}",
            "dropped": f"{sum(s.dropped for s in session.bus.subscriptions):,}",
            "trades": f"{m.trades:,}",
            "bars": f"{len(m.candles.series(timeframe)):,}",
            "uptime": f"{int(uptime_s // 3600):d}:{int(uptime_s % 3600 // 60):02d}:{int(uptime_s % 60):02d}",
        }
        for key, text in values.items():
            item = self._rows[key]
            if item.text() != text:
                item.setText(text)
