"""File > Settings edits the settings file (not this run's flags), Help > About shows the version, and a bad
settings file is listed in a non-blocking box once the window is up."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from app.config import Settings
from app.session import Session
from app.settings_store import save_settings
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow
from app.version import get_version


def _menu_action(window: MainWindow, menu_title: str, text: str):
    for menu_action in window.menuBar().actions():
        if menu_action.text().replace("&", "") == menu_title:
            for action in menu_action.menu().actions():
                if action.text().replace("&", "").startswith(text):
                    return action
    raise AssertionError(f"no {menu_title} > {text} menu item")


@pytest.fixture
def make_window(qtbot, tmp_path):
    """A window on a session of its own (no network); qtbot closes it, and its journal is closed after the test."""
    made: list[tuple[MainWindow, Session]] = []

    def make(settings: Settings | None = None, **window_kw) -> MainWindow:
        base = (settings or Settings()).model_copy(update={"journal_path": tmp_path / "j.sqlite3", "history_bars": 0})
        session = Session(base)
        window = MainWindow(session, BufferingHandler(), **window_kw)
        qtbot.addWidget(window)
        made.append((window, session))
        return window

    yield make
    for _window, session in made:  # qtbot closes the windows
        session.journal.close()


@pytest.mark.asyncio
async def test_settings_menu_opens_the_file_settings_not_this_runs_flags(make_window, tmp_path):
    config = tmp_path / "settings.toml"
    save_settings(Settings(max_open_orders=7), config)
    # This run's settings differ from the file (as a command-line flag would make them).
    window = make_window(Settings(max_open_orders=3), config_path=config)
    _menu_action(window, "File", "Settings").trigger()
    dialog = window._dialogs["settings"]
    assert dialog.isVisible()
    assert dialog.original.max_open_orders == 7  # the file's value, not the run's 3
    _menu_action(window, "File", "Settings").trigger()  # a second time raises the same dialog
    assert list(window._dialogs) == ["settings"]
    dialog.reject()


@pytest.mark.asyncio
async def test_without_a_settings_file_the_menu_item_is_disabled(make_window):
    assert not _menu_action(make_window(), "File", "Settings").isEnabled()


@pytest.mark.asyncio
async def test_about_shows_the_version_and_settings_problems_are_listed(make_window):
    window = make_window()
    window.show()
    _menu_action(window, "Help", "About").trigger()
    about = window._dialogs["about"]
    texts = " ".join(w.text() for w in about.findChildren(QtWidgets.QLabel))
    assert get_version() in texts
    about.reject()

    assert window.show_settings_problems([]) is None
    box = window.show_settings_problems(["settings.toml: max_order_notional: must be greater than 0; using 5000"])
    assert box.isVisible() and not box.isModal()
    assert "max_order_notional" in box.informativeText()


@pytest.mark.asyncio
async def test_end_key_in_the_window_brings_the_chart_back_to_the_live_edge(make_window, qtbot):
    window = make_window()
    window.show()
    with qtbot.waitActive(window):
        window.activateWindow()
    window.chart.set_follow(False)
    qtbot.keyClick(window.chart, QtCore.Qt.Key.Key_End)
    assert window.chart.follow  # one binding only: an ambiguous End would fire nothing
