"""Help > About: what is running (versions of the terminal and of what it is built on) and where its files are.

The details block is what a bug report needs, so one button copies it. The dialog is window-modal but opened with
``open()``, never ``exec()``: a nested event loop inside the qasync loop would break the running tasks.
"""

from __future__ import annotations

import html
import platform
import sys
from pathlib import Path

import platformdirs
from PySide6 import QtCore, QtGui, QtWidgets

from app.trading import journal
from app.ui import theme
from app.ui.icon import app_icon
from app.version import __version__

APP_TITLE = "AI Trading Terminal"


def version_lines() -> list[str]:
    import numpy
    import pyqtgraph
    import PySide6

    build = "packaged (PyInstaller)" if getattr(sys, "frozen", False) else "source"
    return [
        f"{APP_TITLE} {__version__} ({build})",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"Qt {QtCore.qVersion()}, PySide6 {PySide6.__version__}",
        f"pyqtgraph {pyqtgraph.__version__}, numpy {numpy.__version__}",
        f"OS {platform.platform()}",
    ]


def file_locations(journal_path: Path | None = None) -> list[tuple[str, Path]]:
    """(what, directory) for the settings, the data (the journal lives there unless --journal says otherwise) and
    the logs (the directory logging actually uses, which falls back to the temp directory if need be)."""
    from app import logs

    return [
        ("Settings", platformdirs.user_config_path(journal.APP_NAME)),
        ("Data (journal)", (journal_path or journal.default_path()).parent),
        ("Logs", logs.log_dir()),
    ]


def details_text(journal_path: Path | None = None) -> str:
    places = [f"{what}: {path}" for what, path in file_locations(journal_path)]
    return "\n".join([*version_lines(), *places])


class AboutDialog(QtWidgets.QDialog):
    def __init__(self, parent: QtWidgets.QWidget | None = None, journal_path: Path | None = None, *,
                 decisions: str | None = None, decisions_note: str = "") -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(f"About {APP_TITLE}")
        self._journal_path = journal_path

        icon = QtWidgets.QLabel()
        icon.setPixmap(app_icon().pixmap(72, 72))
        icon.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)
        self.icon_label = icon
        title = QtWidgets.QLabel(f"<b style='font-size:16pt'>{APP_TITLE}</b><br>Version {__version__}")
        title.setTextFormat(QtCore.Qt.TextFormat.RichText)
        blurb = QtWidgets.QLabel(
            "Live market data and candlestick charts; a language model proposes trades, you decide. "
            "Paper trading until you connect a broker."
        )
        blurb.setWordWrap(True)
        head_text = QtWidgets.QVBoxLayout()
        head_text.addWidget(title)
        head_text.addWidget(blurb)
        # Which model proposes, said as plainly as in the status bar (the local model is a toy, and says so).
        self.decisions_label = QtWidgets.QLabel(f"Decisions: {decisions}. {decisions_note}" if decisions else "")
        self.decisions_label.setWordWrap(True)
        self.decisions_label.setVisible(bool(decisions))
        head_text.addWidget(self.decisions_label)
        head = QtWidgets.QHBoxLayout()
        head.addWidget(icon)
        head.addSpacing(12)
        head.addLayout(head_text, 1)

        self.versions = QtWidgets.QLabel("\n".join(version_lines()))
        self.versions.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.versions.setFont(QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont))

        places = QtWidgets.QFormLayout()
        self.place_labels: dict[str, QtWidgets.QLabel] = {}
        for what, path in file_locations(journal_path):
            label = QtWidgets.QLabel(_folder_link(path))
            label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            label.setOpenExternalLinks(True)
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextBrowserInteraction)
            label.setToolTip("Open the folder" if path.is_dir() else "Created when first needed")
            places.addRow(f"{what}:", label)
            self.place_labels[what] = label

        self.copy_button = QtWidgets.QPushButton("Copy details")
        self.copy_button.setToolTip("Copy the versions and folders above, for a bug report")
        self.copy_button.clicked.connect(self.copy_details)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QtWidgets.QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(head)
        layout.addSpacing(8)
        layout.addWidget(self.versions)
        layout.addSpacing(8)
        layout.addLayout(places)
        layout.addWidget(buttons)
        self.setMinimumWidth(560)

    def details(self) -> str:
        return details_text(self._journal_path)

    def copy_details(self) -> None:
        QtGui.QGuiApplication.clipboard().setText(self.details())
        self.copy_button.setText("Copied")


def _folder_link(path: Path) -> str:
    text = html.escape(str(path))
    if not path.is_dir():
        return f"{text} <i>(not created yet)</i>"
    url = QtCore.QUrl.fromLocalFile(str(path)).toString()
    colour = theme.current().accent  # Qt's default link blue is unreadable on the dark theme
    return f'<a href="{html.escape(url, quote=True)}" style="color: {colour}">{text}</a>'


def show_about(parent: QtWidgets.QWidget | None = None, journal_path: Path | None = None) -> AboutDialog:
    """Open the About dialog without blocking (``open()``); it deletes itself when closed."""
    dialog = AboutDialog(parent, journal_path)
    dialog.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
