"""The application icon, drawn once as resources/icon.svg (candlesticks on the dark theme's background)."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtGui

from app.ui.theme import resources_dir

ICON_FILE = "icon.svg"


def icon_path() -> Path:
    return resources_dir() / ICON_FILE


def app_icon() -> QtGui.QIcon:
    """The terminal's icon, scalable (Qt's SVG icon engine renders it at each size asked for). A null QIcon if the
    file is missing, which Qt treats as "no icon"."""
    path = icon_path()
    return QtGui.QIcon(str(path)) if path.is_file() else QtGui.QIcon()
