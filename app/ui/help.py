"""Help > Keyboard shortcuts: every key the terminal answers to, made from the same table the window binds its
keys from (``Settings.hotkeys`` over ``app.config.HOTKEY_ACTIONS``), so the list cannot drift from the bindings."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from app.config import HOTKEY_ACTIONS


def help_rows(keys: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(group, key as the platform shows it, what it does, action name) for every action, in the table's order;
    an action without a key says "(none)"."""
    rows = []
    for name, group, label, default in HOTKEY_ACTIONS:
        key = keys.get(name, default)
        shown = QtGui.QKeySequence(key).toString(QtGui.QKeySequence.SequenceFormat.NativeText) if key else "(none)"
        rows.append((group, shown, label, name))
    return rows


class KeyboardHelp(QtWidgets.QDialog):
    def __init__(self, keys: dict[str, str], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("keyboardHelp")
        self.rows = help_rows(keys)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        self.table = QtWidgets.QTableWidget(len(self.rows), 3)
        self.table.setHorizontalHeaderLabels(["Key", "Does", "Menu"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setShowGrid(False)
        for i, (group, key, label, name) in enumerate(self.rows):
            for j, text in enumerate((key, label, group)):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(f"hotkeys.{name} in the settings file")
                self.table.setItem(i, j, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        outer.addWidget(self.table, 1)
        note = QtWidgets.QLabel(
            "Single-letter and digit keys act when no text field has the focus (a field keeps its letters). "
            "Trading keys act on the symbol on screen with the ticket's quantity. Change a key in File > Settings > "
            "Keys; it applies at the next start.")
        note.setObjectName("cardMuted")
        note.setWordWrap(True)
        outer.addWidget(note)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.accept)
        row = QtWidgets.QHBoxLayout()
        row.addStretch(1)
        row.addWidget(close)
        outer.addLayout(row)
        self.resize(560, 520)

    def text(self) -> str:
        """The list as plain text (one "key  what it does" line per action)."""
        return "\n".join(f"{key}\t{label}" for _, key, label, _ in self.rows)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == QtCore.Qt.Key.Key_F1:  # F1 again closes it, as it opened it
            self.accept()
            return
        super().keyPressEvent(event)
