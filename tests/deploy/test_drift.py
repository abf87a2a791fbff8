"""The repository's Dockerfile, .dockerignore and docker-compose.yml are what the commands
write for examples/shop today: this fails when the templates or the process list change
and the files were not regenerated (the command line is in each file's first lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import REPO
from zephyr_core import Settings
from zephyr_deploy._compose import ComposeOptions, render_compose
from zephyr_deploy._dockerfile import DockerfileOptions, render_dockerfile, render_dockerignore
from zephyr_deploy._image import image_reference
from zephyr_deploy._project import inspect_project, project_name

APP = "examples.shop.app:app"
JOBS = "examples.shop.jobs"
DOCKERFILE = DockerfileOptions(
    app=APP, python="3.11", extras=("jobs", "flower", "cache", "example")
)

REGENERATE = (
    "regenerate: zephyr docker init --app examples.shop.app:app --python 3.11 --extra jobs "
    "--extra flower --extra cache --extra example --force && "
    "zephyr docker compose --app examples.shop.app:app -A examples.shop.jobs --force"
)


def expected() -> dict[str, str]:
    project = inspect_project(REPO, APP)
    image = image_reference(Settings(_env_file=None), project_name(REPO))
    return {
        "Dockerfile": render_dockerfile(project, DOCKERFILE),
        ".dockerignore": render_dockerignore(DOCKERFILE),
        "docker-compose.yml": render_compose(
            ComposeOptions(app=APP, jobs_module=JOBS, image=image)
        ),
    }


@pytest.mark.parametrize("name", ["Dockerfile", ".dockerignore", "docker-compose.yml"])
def test_top_level_file_has_not_drifted(name: str) -> None:
    path = REPO / name
    assert path.is_file(), REGENERATE
    assert path.read_text() == expected()[name], REGENERATE


def test_header_names_the_command_that_writes_it() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert DOCKERFILE.command() in text
    assert "zephyr docker compose --app examples.shop.app:app -A examples.shop.jobs" in (
        Path(REPO / "docker-compose.yml").read_text()
    )
