"""The image reference ``CONTAINER_REGISTRY/name:CONTAINER_TAG``, checked before any engine call.

The grammar is the Docker distribution reference's (``distribution/reference``):
a registry host is the first component when it has a dot or a port or is
``localhost``; every path component is lowercase; a tag is at most 128 word
characters, dots and dashes, not starting with either.
"""

from __future__ import annotations

import re

from zephyr_core import ConfigError, Settings

_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"^{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def registry_problem(registry: str) -> str | None:
    """Why ``registry`` cannot prefix an image name, or None."""
    if not registry or registry != registry.strip():
        return "expected a registry like 'ghcr.io/acme' or 'registry.local:5000'"
    parts = registry.rstrip("/").split("/")
    if _is_host(parts[0]):
        if not _HOST.match(parts[0]):
            return f"{parts[0]!r} is not a registry host name"
        parts = parts[1:]
    for part in parts:
        if not _PATH_COMPONENT.match(part):
            return (
                f"{part!r} is not a valid repository path component "
                "(lowercase letters, digits, and '.', '_' or '-' between them)"
            )
    return None


def image_name(project_name: str) -> str:
    """``project_name`` made into a valid repository name (``My_App`` -> ``my_app``)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", project_name.lower())
    name = re.sub(r"[._-]{2,}", "-", name).strip("._-")
    return name or "app"


def image_reference(settings: Settings, project_name: str, *, tag: str | None = None) -> str:
    """``CONTAINER_REGISTRY/name:CONTAINER_TAG`` for this project.

    Raises:
        ConfigError: CONTAINER_REGISTRY or CONTAINER_TAG (or ``tag``) is not valid in
            an image reference; the message names the setting and the value.
    """
    registry = settings.CONTAINER_REGISTRY
    if registry is not None and (problem := registry_problem(registry)):
        raise ConfigError(f"CONTAINER_REGISTRY={registry!r}: {problem}", field="CONTAINER_REGISTRY")
    tag = settings.CONTAINER_TAG if tag is None else tag
    if not _TAG.match(tag):
        raise ConfigError(
            f"CONTAINER_TAG={tag!r}: expected up to 128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'",
            field="CONTAINER_TAG",
        )
    repository = image_name(project_name)
    if registry:
        repository = f"{registry.rstrip('/')}/{repository}"
    return f"{repository}:{tag}"
