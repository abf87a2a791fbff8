"""Secrets as files: the chart mounts existingSecret; Settings reads ZEPHYR_SECRETS_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.cli import zephyr
from zephyr_core import ConfigError, Settings


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out as Kubernetes mounts a Secret: one file per key, no newline added."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "JOB_QUEUE_URL").write_text("redis://:s3cret@redis.prod:6379/0")
    (folder / "FLOWER_BASIC_AUTH").write_text("admin:pa55")
    monkeypatch.setenv("ZEPHYR_SECRETS_DIR", str(folder))
    return folder


def test_settings_read_each_setting_from_its_file(secrets: Path) -> None:
    settings = Settings()
    assert settings.JOB_QUEUE_URL == "redis://:s3cret@redis.prod:6379/0"
    assert settings.FLOWER_BASIC_AUTH is not None
    assert settings.FLOWER_BASIC_AUTH.get_secret_value() == "admin:pa55"
    assert "s3cret" not in repr(settings) and "pa55" not in repr(settings)


def test_the_environment_wins_over_a_file(secrets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_QUEUE_URL", "redis://other:6379/0")
    assert Settings().JOB_QUEUE_URL == "redis://other:6379/0"


def test_a_bad_value_in_a_file_names_the_setting_and_hides_the_password(secrets: Path) -> None:
    (secrets / "JOB_QUEUE_URL").write_text("http://:s3cret@redis.prod/0")
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert "JOB_QUEUE_URL" in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_missing_folder_is_a_config_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZEPHYR_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="ZEPHYR_SECRETS_DIR") as caught:
        Settings()
    assert caught.value.field == "ZEPHYR_SECRETS_DIR"


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    env = {"ZEPHYR_SECRETS_DIR": str(tmp_path / "x")}
    result = zephyr("config", "check", cwd=tmp_path, env=env)
    assert result.code == 1  # config check: "invalid"
    (line,) = result.err.splitlines()
    assert "ZEPHYR_SECRETS_DIR" in line
