"""The dialog that tells the trader a crash report was written, and where. Non-modal (``open()``), so it never
blocks the qasync loop: the terminal keeps running behind it when it can."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

_open_boxes: list[QtWidgets.QMessageBox] = []  # keep a reference until closed (no parent: Python would free it)


def crash_message(path: Path) -> str:
    return f"The terminal hit an unexpected error. A report (without secrets) was written to\n\n{path}"


def show_crash_dialog(path: Path, parent: QtWidgets.QWidget | None = None) -> QtWidgets.QMessageBox:
    """Show the report's path (selectable, with a button to open its folder) and return the box."""
    box = QtWidgets.QMessageBox(
        QtWidgets.QMessageBox.Icon.Critical, "Unexpected error", crash_message(path),
        QtWidgets.QMessageBox.StandardButton.Close, parent,
    )
    box.setObjectName("crashDialog")
    box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
                                | QtCore.Qt.TextInteractionFlag.TextSelectableByKeyboard)
    folder = box.addButton("Open folder", QtWidgets.QMessageBox.ButtonRole.ActionRole)
    folder.clicked.disconnect()  # an action button would close the box; opening the folder should not
    folder.clicked.connect(
        lambda: QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(Path(path).parent)))
    )
    box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    _open_boxes.append(box)
    box.finished.connect(lambda _=0: box in _open_boxes and _open_boxes.remove(box))
    box.open()
    return box
