"""Help > About: the real version, the folders the trader's files are in, the icon, and the copy button."""

from __future__ import annotations

from importlib.metadata import version

import PySide6
import pytest
from PySide6 import QtCore, QtGui

from app import logs
from app.ui.about import AboutDialog, show_about
from app.ui.icon import app_icon


@pytest.fixture
def homes(monkeypatch, tmp_path):
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    (tmp_path / "xdg_data_home" / "ai-trading-terminal").mkdir(parents=True)  # the data folder exists, the rest not
    return tmp_path


def test_about_shows_the_metadata_version_and_the_three_folders(qtbot, homes):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    expected = version("ai-trading-terminal")
    assert f"AI Trading Terminal {expected} (source)" in dialog.versions.text()
    assert f"PySide6 {PySide6.__version__}" in dialog.versions.text()

    places = {what: label.text() for what, label in dialog.place_labels.items()}
    assert set(places) == {"Settings", "Data (journal)", "Logs"}
    assert str(homes / "xdg_config_home" / "ai-trading-terminal") in places["Settings"]
    assert "not created yet" in places["Settings"]
    data = homes / "xdg_data_home" / "ai-trading-terminal"
    assert str(data) in places["Data (journal)"]
    assert QtCore.QUrl.fromLocalFile(str(data)).toString() in places["Data (journal)"]  # a link that opens it
    assert str(logs.log_dir()) in places["Logs"]


def test_about_follows_a_journal_given_on_the_command_line(qtbot, homes, tmp_path):
    dialog = AboutDialog(journal_path=tmp_path / "elsewhere" / "my.sqlite3")
    qtbot.addWidget(dialog)
    assert str(tmp_path / "elsewhere") in dialog.place_labels["Data (journal)"].text()


def test_copy_puts_versions_and_folders_on_the_clipboard(qtbot, homes):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    QtGui.QGuiApplication.clipboard().clear()
    qtbot.mouseClick(dialog.copy_button, QtCore.Qt.MouseButton.LeftButton)
    copied = QtGui.QGuiApplication.clipboard().text()
    assert copied == dialog.details()
    assert version("ai-trading-terminal") in copied
    assert f"Settings: {homes / 'xdg_config_home' / 'ai-trading-terminal'}" in copied
    assert f"Logs: {logs.log_dir()}" in copied
    assert dialog.copy_button.text() == "Copied"


def test_show_about_does_not_block_and_closes(qtbot, homes):
    dialog = show_about()
    qtbot.waitExposed(dialog)
    assert dialog.isVisible()
    assert dialog.icon_label.pixmap() is not None and not dialog.icon_label.pixmap().isNull()
    with qtbot.waitSignal(dialog.finished):
        dialog.reject()
    assert not dialog.isVisible()


def test_app_icon_loads_and_renders(qapp):
    icon = app_icon()
    assert not icon.isNull()
    image = icon.pixmap(64, 64).toImage()
    assert image.width() == 64
    top, left = image.pixelColor(32, 1), image.pixelColor(1, 32)
    assert top.alpha() > 200 and left.alpha() > 200  # the dark square is opaque, edge to edge
    colours = {image.pixelColor(x, y).name() for x in range(0, 64, 2) for y in range(0, 64, 2)}
    assert len(colours) > 4  # candles drawn, not an empty square
