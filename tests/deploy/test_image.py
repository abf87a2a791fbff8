"""Image references from CONTAINER_REGISTRY and CONTAINER_TAG: refused before any engine call."""

from __future__ import annotations

import pytest

from zephyr_core import ConfigError, Settings
from zephyr_deploy._image import image_name, image_reference


@pytest.mark.parametrize(
    ("registry", "tag", "expected"),
    [
        (None, "latest", "shop:latest"),
        ("ghcr.io/acme", "1.2.3", "ghcr.io/acme/shop:1.2.3"),
        ("registry.local:5000", "v1_rc-2", "registry.local:5000/shop:v1_rc-2"),
        ("localhost:5000/team/sub", "x", "localhost:5000/team/sub/shop:x"),
        ("docker.io/some-user", "2026.12", "docker.io/some-user/shop:2026.12"),
        ("acme", "sha-abc", "acme/shop:sha-abc"),
    ],
)
def test_valid_references(registry: str | None, tag: str, expected: str) -> None:
    settings = Settings(CONTAINER_REGISTRY=registry, CONTAINER_TAG=tag)
    assert image_reference(settings, "shop") == expected


@pytest.mark.parametrize(
    ("registry", "tag", "field"),
    [
        ("UPPER/case", "1", "CONTAINER_REGISTRY"),
        ("ghcr.io/Acme", "1", "CONTAINER_REGISTRY"),
        ("ghcr.io/acme/", "1", None),  # a trailing slash is tolerated
        ("bad host.io/x", "1", "CONTAINER_REGISTRY"),
        ("ghcr.io/ac--me_", "1", "CONTAINER_REGISTRY"),
        (None, "a tag", "CONTAINER_TAG"),
        (None, "-dash", "CONTAINER_TAG"),
        (None, ".dot", "CONTAINER_TAG"),
        (None, "x" * 129, "CONTAINER_TAG"),
        (None, "", "CONTAINER_TAG"),
    ],
)
def test_bad_settings_name_the_setting(registry: str | None, tag: str, field: str | None) -> None:
    settings = Settings(CONTAINER_REGISTRY=registry, CONTAINER_TAG=tag)
    if field is None:
        image_reference(settings, "shop")
        return
    with pytest.raises(ConfigError) as caught:
        image_reference(settings, "shop")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}=")


@pytest.mark.parametrize(
    ("project", "name"),
    [("zephyr-infra", "zephyr-infra"), ("My_App", "my_app"), ("a..b", "a-b"), ("!!!", "app")],
)
def test_project_names_become_repository_names(project: str, name: str) -> None:
    assert image_name(project) == name
