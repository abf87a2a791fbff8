"""``zephyr docker build|run|push`` through the docker SDK, against a STAND-IN engine
(tests/deploy/engine_standin.py: an HTTP server, not Docker), and the no-engine path
for real (DOCKER_HOST at a port where nothing listens)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import Result, make_project, zephyr
from tests.deploy.engine_standin import EngineStandIn
from tests.servers import free_port
from zephyr_deploy._engine import decode_auth_header

REGISTRY = {"CONTAINER_REGISTRY": "registry.local:5000", "CONTAINER_TAG": "1.0"}
IMAGE = "registry.local:5000/project:1.0"


@pytest.fixture
def engine() -> Iterator[EngineStandIn]:
    standin = EngineStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with its Dockerfile, secrets in .env files and a .git folder."""
    project = make_project("requirements.txt", tmp_path / "project")
    result = zephyr("docker", "init", "--app", project.app, cwd=project.root)
    assert result.code == 0, result.err
    root = project.root
    (root / ".env").write_text("SHOP_SECRET=hunter2\nCACHE_DEFAULT_TIMEOUT=60\n")
    (root / ".env.production").write_text("SHOP_SECRET=prod\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "sub").mkdir()
    (root / "sub" / ".env").write_text("NESTED=1\n")
    (root / "sub" / "data.txt").write_text("kept\n")
    # A user's '!' line cannot bring a secret back into the context.
    with (root / ".dockerignore").open("a") as ignore:
        ignore.write("!.env\n")
    return root


def docker(
    engine: EngineStandIn, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> Result:
    return zephyr("docker", *args, cwd=cwd, env={"DOCKER_HOST": engine.url, **(env or {})})


def assert_one_line_error(result: Result, code: int) -> str:
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    return lines[0]


# ---- build ----


def test_build_sends_a_clean_context_and_the_tag(engine: EngineStandIn, project: Path) -> None:
    result = docker(engine, "build", cwd=project, env=REGISTRY)
    assert result.code == 0, result.err
    assert f"built {IMAGE}" in result.out
    assert "Step 1/12" in result.out  # the build's output is streamed
    (build,) = engine.calls("POST", "/build")
    assert build.query["t"] == [IMAGE]
    names = build.context_names()
    assert "Dockerfile" in names and "requirements.txt" in names
    assert "requirements_txt_shop.py" in names and "sub/data.txt" in names
    leaked = [n for n in names if n.split("/")[-1].startswith(".env") or n.startswith(".git")]
    assert leaked == []


def test_a_failed_step_shows_the_builds_own_error(engine: EngineStandIn, project: Path) -> None:
    message = "The command '/bin/sh -c pip install -r requirements.txt' returned a non-zero code: 1"
    engine.script.build_error = message
    line = assert_one_line_error(docker(engine, "build", cwd=project, env=REGISTRY), 1)
    assert message in line and IMAGE in line


def test_build_without_a_dockerfile(engine: EngineStandIn, tmp_path: Path) -> None:
    line = assert_one_line_error(docker(engine, "build", cwd=tmp_path), 1)
    assert "zephyr docker init" in line
    assert engine.requests == []


@pytest.mark.parametrize("command", ["build", "run", "push"])
@pytest.mark.parametrize(
    ("setting", "value"),
    [("CONTAINER_REGISTRY", "UPPER/case"), ("CONTAINER_TAG", "a tag"), ("CONTAINER_TAG", "-x")],
)
def test_bad_registry_or_tag_is_refused_before_any_engine_call(
    engine: EngineStandIn, project: Path, command: str, setting: str, value: str
) -> None:
    env = {**REGISTRY, setting: value}
    line = assert_one_line_error(docker(engine, command, cwd=project, env=env), 2)
    assert setting in line and repr(value) in line
    assert engine.requests == []


# ---- run ----


def test_run_maps_the_port_passes_the_env_file_and_waits_for_healthy(
    engine: EngineStandIn, project: Path
) -> None:
    engine.script.health = ["starting", "starting", "healthy"]
    result = docker(engine, "run", "--port", "8123", cwd=project, env=REGISTRY)
    assert result.code == 0, result.err
    assert "http://127.0.0.1:8123" in result.out
    (create,) = engine.calls("POST", "/containers/create")
    body = json.loads(create.body)
    assert body["Image"] == IMAGE
    assert "SHOP_SECRET=hunter2" in body["Env"] and "CACHE_DEFAULT_TIMEOUT=60" in body["Env"]
    host = body["HostConfig"]
    assert host["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8123"}]}
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["CapDrop"] == ["ALL"] and body["User"] == "10001:10001"
    assert len(engine.calls("POST", "/start")) == 1
    assert len(engine.calls("GET", "/json")) >= 3  # polled until healthy


def test_run_reports_an_unhealthy_container(engine: EngineStandIn, project: Path) -> None:
    engine.script.health = ["starting", "unhealthy"]
    line = assert_one_line_error(docker(engine, "run", cwd=project, env=REGISTRY), 1)
    assert "unhealthy" in line and "probe said no" in line


def test_run_reports_a_container_that_exited(engine: EngineStandIn, project: Path) -> None:
    engine.script.health = ["starting"]
    engine.script.container_status = "exited"
    line = assert_one_line_error(docker(engine, "run", cwd=project, env=REGISTRY), 1)
    assert "exited" in line


# ---- push ----


def docker_config(tmp_path: Path, user: str, password: str) -> dict[str, str]:
    folder = tmp_path / "docker-config"
    folder.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (folder / "config.json").write_text(
        json.dumps({"auths": {"registry.local:5000": {"auth": auth}}})
    )
    return {"DOCKER_CONFIG": str(folder)}


def test_push_sends_the_login_and_streams_progress(
    engine: EngineStandIn, project: Path, tmp_path: Path
) -> None:
    engine.script.registry_user = ("ci", "s3cret")
    env = {**REGISTRY, **docker_config(tmp_path, "ci", "s3cret")}
    result = docker(engine, "push", cwd=project, env=env)
    assert result.code == 0, result.err
    assert f"pushed {IMAGE}" in result.out
    assert "s3cret" not in result.out + result.err
    (push,) = engine.calls("POST", "/push")
    assert push.path.endswith("/images/registry.local:5000/project/push")
    assert push.query["tag"] == ["1.0"]
    auth = decode_auth_header(push.headers["x-registry-auth"])
    assert (auth["username"], auth["password"]) == ("ci", "s3cret")
    assert auth["serveraddress"] == "registry.local:5000"


def test_push_refused_by_the_registry_says_how_to_log_in(
    engine: EngineStandIn, project: Path, tmp_path: Path
) -> None:
    engine.script.registry_user = ("ci", "s3cret")
    env = {**REGISTRY, **docker_config(tmp_path, "ci", "wrong")}
    line = assert_one_line_error(docker(engine, "push", cwd=project, env=env), 1)
    assert "unauthorized" in line and "docker login registry.local:5000" in line
    assert "wrong" not in line


def test_push_needs_a_registry(engine: EngineStandIn, project: Path) -> None:
    line = assert_one_line_error(docker(engine, "push", cwd=project), 2)
    assert "CONTAINER_REGISTRY" in line
    assert engine.requests == []


# ---- no engine (for real: nothing listens there) ----


@pytest.mark.parametrize("command", ["build", "run", "push"])
def test_no_engine_is_one_line_naming_docker_host(project: Path, command: str) -> None:
    port = free_port()  # bound and released: nothing listens on it
    host = f"tcp://127.0.0.1:{port}"
    result = zephyr("docker", command, cwd=project, env={**REGISTRY, "DOCKER_HOST": host})
    line = assert_one_line_error(result, 1)
    assert f"no Docker engine answered at {host} (DOCKER_HOST)" in line
    assert "set DOCKER_HOST" in line


def test_no_engine_on_a_missing_socket(project: Path, tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/docker.sock"
    result = zephyr("docker", "build", cwd=project, env={**REGISTRY, "DOCKER_HOST": host})
    line = assert_one_line_error(result, 1)
    assert host in line
