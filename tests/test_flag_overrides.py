"""The command line says which settings its flags override, for the settings dialog to name them."""

from __future__ import annotations

from app.__main__ import _settings_from, build_parser


def test_flags_given_are_named_as_given(tmp_path):
    args = build_parser().parse_args(["--config", str(tmp_path / "settings.toml"), "--model", "rules",
                                      "--symbol", "ethusdt", "--auto-approve", "--speed", "5"])
    settings, _ = _settings_from(args)
    assert settings.decision_source == "rules"
    assert args.flag_overrides == {"decision_source": "--model rules", "symbol": "--symbol ethusdt",
                                   "auto_approve": "--auto-approve"}  # --speed is per run: not in the file


def test_no_flags_no_overrides(tmp_path):
    args = build_parser().parse_args(["--config", str(tmp_path / "settings.toml")])
    _settings_from(args)
    assert args.flag_overrides == {}
