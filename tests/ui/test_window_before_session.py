"""The window's frame is on screen before the session exists (app.__main__ makes the session after the first
paint): it says "starting…" rather than anything it does not know yet, offers nothing that needs the session, and
becomes the usual window once the session is attached."""

from __future__ import annotations

import pytest
from PySide6 import QtWidgets

from app.config import Settings
from app.session import Session
from app.ui.log_dock import BufferingHandler
from app.ui.main_window import MainWindow, apply_theme


def _action(window: MainWindow, text: str):
    for menu_action in window.menuBar().actions():
        for action in menu_action.menu().actions():
            if action.text() == text:
                return action
    raise AssertionError(f"no menu item {text!r}")


@pytest.mark.asyncio
async def test_the_frame_says_starting_until_the_session_is_attached(qtbot, tmp_path):
    apply_theme(QtWidgets.QApplication.instance())
    settings = Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0, symbol="ETHUSDT")
    window = MainWindow(None, BufferingHandler(), settings=settings, build_panels=False,
                        config_path=tmp_path / "settings.toml")
    qtbot.addWidget(window)
    window.show()
    assert window.windowTitle() == "AI Trading Terminal — ETHUSDT — starting…"
    assert window.mode_label.text() == "STARTING…" and window.mode_label.property("mode") is None  # not PAPER yet
    assert window.feed_label.text() == "● STARTING…"
    assert window.symbol == "ETHUSDT" and window.chart.timeframe == settings.timeframe
    needs_session = ["&Settings…", "Auto-approve within its strict limits", "Counterfactual report…",
                     "Export journal to CSV", "&About AI Trading Terminal"]
    assert not any(_action(window, t).isEnabled() for t in needs_session)
    assert _action(window, "&Quit").isEnabled() and _action(window, "&Keyboard shortcuts").isEnabled()
    window.set_symbol("SOLUSDT")  # the chart's own symbol list works before the session
    assert window.symbol == "SOLUSDT"
    with pytest.raises(RuntimeError, match="attach_session"):
        window.build_panels()

    session = Session(settings)
    window.attach_session(session)
    assert window.windowTitle() == f"AI Trading Terminal — SOLUSDT — {session.source_label} — PAPER"
    assert window.mode_label.text() == "PAPER" and window.mode_label.property("mode") == "PAPER"
    assert window.feed_label.text() == "● CONNECTING"
    assert window.source_label.text() == session.source_label and window.model_status.text() == "OFFLINE RULES"
    assert all(_action(window, t).isEnabled() for t in needs_session)
    assert not _action(window, "Auto-approve within its strict limits").isChecked()
    window.build_panels()
    assert window.trading_panel.symbol == "SOLUSDT"
    window.refresh_slow(0.0)
    with pytest.raises(RuntimeError):
        window.attach_session(session)  # one session per window
    window.close()
    session.journal.close()


def test_a_window_needs_a_session_or_its_settings(qtbot):
    with pytest.raises(TypeError):
        MainWindow(None, BufferingHandler())
