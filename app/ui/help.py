"""Help > Keyboard shortcuts: every key the terminal answers to, made from the same table the window binds its
keys from (``Settings.hotkeys`` over ``app.config.HOTKEY_ACTIONS``), so the list cannot drift from the bindings;
then "Mouse and panel keys", what the panels answer to themselves (Delete in Orders, a double-click, a drag on the
chart), from ``app.ui.panel_keys.PANEL_KEYS``, each row of which a test drives on its panel."""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from app.config import HOTKEY_ACTIONS
from app.ui.panel_keys import PANEL_KEYS

PANEL_SECTION = "Mouse and panel keys"


def help_rows(keys: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(group, key as the platform shows it, what it does, action name) for every action, in the table's order;
    an action without a key says "(none)"."""
    rows = []
    for name, group, label, default in HOTKEY_ACTIONS:
        key = keys.get(name, default)
        shown = QtGui.QKeySequence(key).toString(QtGui.QKeySequence.SequenceFormat.NativeText) if key else "(none)"
        rows.append((group, shown, label, name))
    return rows


def panel_key_rows() -> list[tuple[str, str, str, str]]:
    """(panel, key or gesture, what it does, name) for every row of ``PANEL_KEYS``, in its order."""
    return [(pk.where, pk.key, pk.does, pk.name) for pk in PANEL_KEYS]


def _table(rows: list[tuple[str, str, str, str]], third: str, tip: Callable[[str], str]) -> QtWidgets.QTableWidget:
    table = QtWidgets.QTableWidget(len(rows), 3)
    table.setHorizontalHeaderLabels(["Key", "Does", third])
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setShowGrid(False)
    table.setWordWrap(False)
    for i, (group, key, label, name) in enumerate(rows):
        for j, text in enumerate((key, label, group)):
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(tip(name) or label)
            table.setItem(i, j, item)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
    header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    return table


class KeyboardHelp(QtWidgets.QDialog):
    def __init__(self, keys: dict[str, str], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("keyboardHelp")
        self.rows = help_rows(keys)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        self.panel_rows = panel_key_rows()
        self.table = _table(self.rows, "Menu", lambda name: f"hotkeys.{name} in the settings file")
        outer.addWidget(self.table, 3)
        heading = QtWidgets.QLabel(PANEL_SECTION)
        heading.setObjectName("helpSection")
        font = heading.font()
        font.setBold(True)
        heading.setFont(font)
        outer.addWidget(heading)
        self.panel_table = _table(self.panel_rows, "Panel", lambda name: "")
        outer.addWidget(self.panel_table, 2)
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
        self.resize(600, 640)

    def text(self) -> str:
        """The list as plain text (one "key  what it does" line per action; then the panels' keys)."""
        return "\n".join([*(f"{key}\t{label}" for _, key, label, _ in self.rows), "", PANEL_SECTION,
                          *(f"{key}\t{label}\t({where})" for where, key, label, _ in self.panel_rows)])

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == QtCore.Qt.Key.Key_F1:  # F1 again closes it, as it opened it
            self.accept()
            return
        super().keyPressEvent(event)
