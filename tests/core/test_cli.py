"""The `zephyr` root command, `zephyr config show|check` and missing-extra advice."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

from zephyr_core import __version__
from zephyr_core.cli import MissingExtra, load_command, zephyr

ZEPHYR = [sys.executable, "-m", "zephyr_core"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*ZEPHYR, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_subcommands_come_from_entry_points() -> None:
    result = CliRunner().invoke(zephyr, ["--help"])
    assert result.exit_code == 0
    for name in ("config", "serve", "up", "jobs", "cache"):
        assert name in result.output


def test_config_show_masks_every_password() -> None:
    env = {
        "JOB_QUEUE_URL": "redis://:queue-pw@redis:6379/0",
        "DATABASE_URL": "postgresql://app:db-pw@db/app",
        "FLOWER_BASIC_AUTH": "admin:flower-pw",
    }
    result = run("config", "show", "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["JOB_QUEUE_URL"] == "redis://:***@redis:6379/0"
    assert shown["JOB_RESULT_URL"] == "redis://:***@redis:6379/0"
    assert shown["FLOWER_BASIC_AUTH"] == "***"
    assert "pw@" not in result.stdout and "flower-pw" not in result.stdout
    plain = run("config", "show", env=env)
    assert "queue-pw" not in plain.stdout and "K8S_REPLICAS" in plain.stdout


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("K8S_REPLICAS", "-1"),
        ("LOAD_BALANCER_STRATEGY", "random"),
        ("JOB_QUEUE_BACKEND", "kafka"),
        ("AUTOSCALING_MIN_REPLICAS", "50"),
        ("CACHE_URL", "redis//nohost"),
        ("K8S_CPU_REQUEST", "250x"),
        ("K8S_MEMORY_LIMIT", "1Gb"),
    ],
)
def test_config_check_rejects_bad_values_in_one_line(field: str, value: str) -> None:
    result = run("config", "check", env={field: value})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"invalid: {field}=")
    assert value in lines[0]


def test_config_check_accepts_valid_settings() -> None:
    result = run("config", "check")
    assert result.returncode == 0
    assert "valid" in result.stdout


def test_any_command_with_bad_settings_is_one_line_exit_2() -> None:
    result = run("config", "show", env={"K8S_REPLICAS": "-3"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "K8S_REPLICAS='-3'" in result.stderr


def test_missing_extra_names_the_pip_install() -> None:
    entry = EntryPoint(name="k8s", value="zephyr_not_installed.cli:k8s", group="zephyr.commands")
    command = load_command(entry)
    assert isinstance(command, MissingExtra)
    result = CliRunner().invoke(command, ["status"])
    assert result.exit_code == 2
    # zephyr-infra is not on PyPI yet: `pip install 'zephyr-infra[k8s]'` would fail.
    assert "pip install -e '.[k8s]' in a checkout of zephyr-infra" in result.output


def test_unknown_command_is_usage_error() -> None:
    result = run("nosuchcommand")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# '#', '/' and '?' end a URL's authority early for a parser, so such a URL is refused
# (percent-encode them); '@' and '%' parse. Either way the password never shows.
PASSWORD_CHARS = ["#", "/", "?", "@", "%"]


@pytest.mark.parametrize("char", PASSWORD_CHARS)
def test_config_show_masks_a_password_with_url_delimiters(char: str) -> None:
    url = f"postgresql://app:p{char}ssw0rd@db:5432/app"
    result = run("config", "show", "--json", env={"DATABASE_URL": url})
    output = result.stdout + result.stderr
    assert "ssw0rd" not in output, output
    assert "Traceback" not in output
    if char in "@%":
        assert result.returncode == 0, output
        assert json.loads(result.stdout)["DATABASE_URL"] == "postgresql://app:***@db:5432/app"
    else:
        assert result.returncode == 2
        assert "DATABASE_URL='postgresql://app:***@db:5432/app'" in result.stderr
        assert "percent-encoded" in result.stderr


@pytest.mark.parametrize("char", PASSWORD_CHARS)
def test_config_check_masks_a_password_with_url_delimiters(char: str) -> None:
    # The database "x" is invalid whatever the password, so the URL is always quoted.
    url = f"redis://app:p{char}ssw0rd@cache:6379/x"
    result = run("config", "check", env={"JOB_QUEUE_URL": url})
    assert result.returncode == 1
    assert "ssw0rd" not in result.stdout + result.stderr
    assert "invalid: JOB_QUEUE_URL='redis://app:***@cache:6379/x'" in result.stderr
