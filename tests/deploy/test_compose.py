"""``zephyr docker compose``: the Compose Specification schema (Draft 7), the stack's safe
defaults, the one process list, and a file edited by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import REPO, SCHEMA, zephyr
from zephyr_deploy._compose import ComposeOptions, render_compose

SHOP = ("--app", "examples.shop.app:app", "-A", "examples.shop.jobs")
APP_SERVICES = ("web", "worker", "beat", "flower")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A copy of the example app's project (setup.cfg and examples/)."""
    root = tmp_path / "shop"
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(REPO / "setup.cfg", root / "setup.cfg")
    return root


def validate(document: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    assert errors == []


def compose_file(root: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = zephyr("docker", "compose", *args, cwd=root, env=env)
    assert result.code == 0, result.err
    loaded: dict[str, Any] = yaml.safe_load((root / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize(
    ("jobs", "postgres"), [(True, False), (True, True), (False, False), (False, True)]
)
def test_every_variant_validates_against_the_compose_schema(jobs: bool, postgres: bool) -> None:
    options = ComposeOptions(
        app="examples.shop.app:app",
        jobs_module="examples.shop.jobs" if jobs else None,
        image="registry.local:5000/shop:1.0",
        postgres=postgres,
    )
    document = yaml.safe_load(render_compose(options))
    validate(document)
    expected = {"web", "redis"} | (set(APP_SERVICES) if jobs else set())
    assert set(document["services"]) == expected | ({"postgres"} if postgres else set())


def test_the_stack_and_its_safe_defaults(shop: Path) -> None:
    (shop / ".env").write_text("FLOWER_BASIC_AUTH=admin:s3cr3t-pw\nCACHE_DEFAULT_TIMEOUT=60\n")
    document = compose_file(shop, *SHOP)
    validate(document)
    services = document["services"]
    assert set(services) == {*APP_SERVICES, "redis"}
    text = (shop / "docker-compose.yml").read_text()
    assert "s3cr3t" not in text  # secrets stay in .env
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"zephyr-infra:latest"}
    commands = {name: services[name]["command"] for name in APP_SERVICES}
    assert len({tuple(c) for c in commands.values()}) == 4
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    for name in APP_SERVICES:
        service = services[name]
        assert service["env_file"] == [".env"]
        assert service["user"] == "10001:10001"
        assert service["cap_drop"] == ["ALL"]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        environment = service["environment"]
        assert environment["JOB_QUEUE_URL"] == "redis://redis:6379/0"
        assert not any("PASSWORD" in k or "AUTH" in k for k in environment)
    assert services["web"]["ports"] == ["8000:8000"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert "/healthcheck" in services["flower"]["healthcheck"]["test"][-1]
    assert "/health/live" in services["web"]["healthcheck"]["test"][-1]
    worker_grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert worker_grace >= 60
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["command"][redis["command"].index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["volumes"] == ["redis-data:/data"]
    assert "redis-data" in document["volumes"]


def test_database_url_adds_postgres(shop: Path) -> None:
    (shop / ".env").write_text(
        "DATABASE_URL=postgresql://app:pg-s3cret@postgres:5432/app\n"
        "POSTGRES_PASSWORD=pg-s3cret\nFLOWER_BASIC_AUTH=a:b\n"
    )
    document = compose_file(shop, *SHOP)
    validate(document)
    postgres = document["services"]["postgres"]
    assert postgres["env_file"] == [".env"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert document["services"]["web"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "pg-s3cret" not in (shop / "docker-compose.yml").read_text()


def test_commands_are_the_processes_zephyr_up_runs(shop: Path) -> None:
    """One process list: compose's commands are zephyr up's, minus the interpreter."""
    import sys

    from zephyr_celery._up import job_processes
    from zephyr_core._up_cli import web_process

    document = compose_file(shop, *SHOP, env={"FLOWER_BASIC_AUTH": "a:b"})
    up = [web_process("examples.shop.app:app", "0.0.0.0", 8000)]
    up += job_processes("examples.shop.jobs", flower_address="0.0.0.0", flower_port=5555)
    for spec in up:
        assert spec.argv[:3] == [sys.executable, "-m", "zephyr_core"]
        assert document["services"][spec.name]["command"] == ["zephyr", *spec.argv[3:]]


def test_an_unedited_file_is_regenerated_an_edited_one_is_kept(shop: Path) -> None:
    compose_file(shop, "--app", "examples.shop.app:app")
    path = shop / "docker-compose.yml"
    again = zephyr("docker", "compose", *SHOP, cwd=shop)  # unedited: ours to replace
    assert again.code == 0, again.err
    assert "worker" in yaml.safe_load(path.read_text())["services"]
    edited = path.read_text().replace('"8000:8000"', '"9000:8000"')
    path.write_text(edited)
    refused = zephyr("docker", "compose", "--app", "examples.shop.app:app", cwd=shop)
    assert refused.code == 1
    assert "edited by hand" in refused.err and "--force" in refused.err
    assert "Traceback" not in refused.err
    assert path.read_text() == edited
    forced = zephyr("docker", "compose", "--app", "examples.shop.app:app", "--force", cwd=shop)
    assert forced.code == 0, forced.err
    assert "worker" not in yaml.safe_load(path.read_text())["services"]


def test_a_file_we_did_not_write_is_kept(shop: Path) -> None:
    (shop / "docker-compose.yml").write_text("services: {}\n")
    refused = zephyr("docker", "compose", *SHOP, cwd=shop)
    assert refused.code == 1 and "--force" in refused.err
    assert (shop / "docker-compose.yml").read_text() == "services: {}\n"


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [
        ((), {}, 2, ["no app"]),
        (("--app", "examples.shop.nothere:app"), {}, 2, ["nothere"]),
        (("--app", "examples.shop.app:app", "-A", "examples.nojobs"), {}, 2, ["nojobs"]),
        (("--app", "examples.shop.app:app"), {"CONTAINER_REGISTRY": "UPPER/case"}, 2,
         ["CONTAINER_REGISTRY", "UPPER"]),
        (("--app", "examples.shop.app:app"), {"CONTAINER_TAG": "a tag"}, 2, ["CONTAINER_TAG"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    shop: Path, args: tuple[str, ...], env: dict[str, str], code: int, words: list[str]
) -> None:
    result = zephyr("docker", "compose", *args, cwd=shop, env=env)
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    for word in words:
        assert word in result.err
    assert not (shop / "docker-compose.yml").exists()


def test_registry_and_tag_name_the_image(shop: Path) -> None:
    env = {
        "CONTAINER_REGISTRY": "ghcr.io/acme",
        "CONTAINER_TAG": "1.4.2",
        "FLOWER_BASIC_AUTH": "a:b",
    }
    document = compose_file(shop, *SHOP, env=env)
    assert document["services"]["worker"]["image"] == "ghcr.io/acme/zephyr-infra:1.4.2"
