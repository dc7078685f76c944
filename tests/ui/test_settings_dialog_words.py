"""The settings dialog speaks words: a human label on every field (no raw key like ``sim_process``), the hotkeys by
what they do; and when this run's command-line flags override the file, it says which."""

from __future__ import annotations

import re

from app.config import HOTKEY_LABELS, Settings
from app.settings_store import SECTIONS
from app.ui.settings_dialog import SettingsDialog


def _dialog(qtbot, tmp_path, **kw) -> SettingsDialog:
    dialog = SettingsDialog(Settings(), tmp_path / "settings.toml", None, **kw)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_every_field_has_a_human_label(qtbot, tmp_path):
    dialog = _dialog(qtbot, tmp_path)
    names = {n for _, ns in SECTIONS for n in ns}
    raw = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")
    for key, label in dialog.name_labels.items():
        text = label.text().strip()
        assert not raw.match(text), f"{key} is shown as its raw key {text!r}"
        assert text not in names, key
    assert dialog.name_labels["sim_process"].text() == "Built-in exchange in its own process"
    # Hotkeys: one line per action, named by what the key does, showing the key in use.
    assert dialog.name_labels["hotkeys.buy_at_ask"].text().strip() == HOTKEY_LABELS["buy_at_ask"]
    assert dialog.editors["hotkeys.buy_at_ask"].text() == "Ctrl+Shift+B"


def test_flags_that_override_the_file_are_named(qtbot, tmp_path):
    plain = _dialog(qtbot, tmp_path)
    assert plain.flags_note.isHidden()
    dialog = _dialog(qtbot, tmp_path, overridden={"llm_model": "--model gpt-4o", "exchange": "--exchange binance"})
    note = dialog.flags_note
    assert note.isVisible()
    assert "Model (--model gpt-4o)" in note.text() and "Exchange (--exchange binance)" in note.text()
    assert "file's values" in note.text()
    assert dialog.name_labels["llm_model"].text().endswith("⚑")
    assert "--model gpt-4o" in dialog.name_labels["llm_model"].toolTip()
    assert not dialog.name_labels["symbol"].text().endswith("⚑")


def test_a_duplicate_key_in_the_dialog_is_refused_beside_the_table(qtbot, tmp_path):
    dialog = _dialog(qtbot, tmp_path)
    editor = dialog.editors["hotkeys.buy_at_ask"]
    editor.setText("A")
    assert not dialog.save_button.isEnabled()
    assert "bound to both buy_at_ask and approve" in dialog.error_labels["hotkeys"].text()
    editor.setText("F9")
    assert dialog.save_button.isEnabled() and dialog.candidate.hotkeys["buy_at_ask"] == "F9"
