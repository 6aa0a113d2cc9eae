"""Settings come from LOYALTY_ variables, with clear errors for bad values."""

from __future__ import annotations

import pytest

from loyalty.settings import Settings, SettingsError


def test_defaults(tmp_path):
    settings = Settings.from_env({"LOYALTY_DATA_DIR": str(tmp_path)})
    assert settings.port == 8000 and settings.currency == "CNY"
    assert settings.timezone == "Asia/Shanghai" and settings.mode == "demo"
    assert settings.embedded_database and settings.embedded_redis


def test_demo_secret_is_generated_once_and_kept(tmp_path):
    first = Settings.from_env({"LOYALTY_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"LOYALTY_DATA_DIR": str(tmp_path)})
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_needs_a_secret_key(tmp_path):
    with pytest.raises(SettingsError, match="LOYALTY_SECRET_KEY is required"):
        Settings.from_env({"LOYALTY_MODE": "production", "LOYALTY_DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "LOYALTY_PORT must be a whole number"),
        ("PORT", "0", "LOYALTY_PORT must be at least 1"),
        ("TIMEZONE", "Mars/Olympus", "LOYALTY_TIMEZONE"),
        ("CURRENCY", "yuan", "LOYALTY_CURRENCY"),
        ("MODE", "staging", "LOYALTY_MODE"),
        ("LOG_LEVEL", "chatty", "LOYALTY_LOG_LEVEL"),
        ("SECRET_KEY", "short", "at least 32 characters"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, name, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({f"LOYALTY_{name}": value, "LOYALTY_DATA_DIR": str(tmp_path)})
