"""Trading hotkeys in the settings file: defaults for every action, one bad entry falls back alone and is named,
one key for two actions is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import DEFAULT_HOTKEYS, HOTKEY_ACTIONS, Settings, parse_key
from app.settings_store import load_settings, render_settings, save_settings


def test_every_action_has_a_default_key_and_no_two_share_one():
    keys = Settings().hotkeys
    assert keys["buy_at_ask"] and keys["sell_at_bid"] and keys["cancel_all"] and keys["flatten_all"]
    assert keys["kill_switch"] == "Ctrl+Shift+K" and keys["keyboard_help"] == "F1"
    assert set(keys) == {a for a, *_ in HOTKEY_ACTIONS}
    bound = [k for k in keys.values() if k]
    assert len(bound) == len(set(bound))


@pytest.mark.parametrize(("text", "canon"), [("ctrl+shift+b", "Ctrl+Shift+B"), ("Shift+Ctrl+End", "Ctrl+Shift+End"),
                                             ("f9", "F9"), ("a", "A"), ("Ctrl+,", "Ctrl+,"), ("", "")])
def test_key_sequences_are_read_in_qts_portable_text(text, canon):
    assert parse_key(text) == canon


@pytest.mark.parametrize("text", ["Ctrl+Hyper+X", "Ctrl+", "F99", "Buy", "Ctrl+Ctrl+A"])
def test_a_key_that_does_not_parse_is_refused_in_words(text):
    with pytest.raises(ValueError, match=r"not a|twice"):
        parse_key(text)


def test_the_file_overrides_single_keys_and_bad_entries_fall_back_alone(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[hotkeys]\nbuy_at_ask = "F9"\nsell_at_bid = "Ctrl+Hyper+S"\nbuy_everything = "F2"\n'
                    'cancel_all = ""\n')
    loaded = load_settings(path, backup=False)
    keys = loaded.settings.hotkeys
    assert keys["buy_at_ask"] == "F9"  # the file's key
    assert keys["sell_at_bid"] == DEFAULT_HOTKEYS["sell_at_bid"]  # unparsable: the default
    assert keys["cancel_all"] == ""  # no key, on purpose
    assert keys["kill_switch"] == "Ctrl+Shift+K"  # left out: the default
    report = "\n".join(loaded.report())
    assert "hotkeys.sell_at_bid" in report and "'Hyper' is not a modifier" in report
    assert "hotkeys.buy_everything" in report and "is not a hotkey action" in report


def test_one_key_for_two_actions_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="A is bound to both buy_at_ask and approve"):
        Settings(hotkeys={"buy_at_ask": "A"})
    path = tmp_path / "settings.toml"
    path.write_text('[hotkeys]\nbuy_at_ask = "A"\n')
    loaded = load_settings(path, backup=False)
    assert loaded.settings.hotkeys == DEFAULT_HOTKEYS  # the table falls back; approve keeps A
    assert any("bound to both" in line for line in loaded.report())


def test_keys_survive_a_save_and_load(tmp_path):
    path = tmp_path / "settings.toml"
    settings = Settings(hotkeys={"buy_at_ask": "F9", "sell_at_bid": "F10"})
    save_settings(settings, path)
    assert "F9" in render_settings(settings)
    loaded = load_settings(path, backup=False)
    assert not loaded.problems and loaded.settings.hotkeys == settings.hotkeys
