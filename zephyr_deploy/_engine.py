"""The Docker engine through the ``docker`` SDK: build, run, push, errors translated once.

Every SDK call goes through here, and every failure the SDK raises becomes one
:class:`DeployError` line: no engine (what was tried, how to point elsewhere), a build
step that failed (the build's own message), an image that is not healthy, a push the
registry refused.

Beyond the SDK's documented client API this uses ``docker.utils.build.tar`` (the SDK's
own context packer, so its .dockerignore matching is Docker's) and the ``APIClient.timeout``
attribute; ``docker`` is pinned to the major version tested (7).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zephyr_deploy._exceptions import DeployError, EngineUnavailable

#: The socket the SDK tries when DOCKER_HOST is unset.
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
#: Seconds to wait for an engine to answer at all (and its version).
CONNECT_TIMEOUT = 10
#: Seconds a build or push may stay silent before we give up on the engine.
OPERATION_TIMEOUT = 1800
#: Always left out of a build context, whatever .dockerignore says.
NEVER_IN_CONTEXT = (".env", ".env.*", "**/.env", "**/.env.*", ".git", ".venv", ".zephyr")


def engine_address() -> str:
    """Where the SDK looks for an engine, for messages."""
    host = os.environ.get("DOCKER_HOST")
    return f"{host} (DOCKER_HOST)" if host else f"{DEFAULT_SOCKET} (the default socket)"


def _no_engine(exc: BaseException) -> EngineUnavailable:
    return EngineUnavailable(
        f"no Docker engine answered at {engine_address()}: start one, or set DOCKER_HOST "
        "to one that runs (e.g. unix:///path/docker.sock, tcp://host:2376, ssh://user@host)"
    )


def _connection_failed(exc: BaseException) -> bool:
    import requests.exceptions

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.ConnectionError, ConnectionError)):
            return True
        if isinstance(current, (FileNotFoundError, TimeoutError)):
            return True
        if isinstance(current, requests.exceptions.Timeout):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn the SDK's and the transport's exceptions into one :class:`DeployError` line."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        raise _no_engine(exc) from None
    except docker.errors.APIError as exc:
        reason = exc.explanation or str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise DeployError(f"{action}: the engine answered {exc.status_code}: {reason}") from None
    except docker.errors.DockerException as exc:
        # The SDK wraps the transport's error (fetching the API version at connect
        # time): look down the chain for a refused or missing connection.
        if _connection_failed(exc):
            raise _no_engine(exc) from None
        raise DeployError(f"{action}: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise DeployError(f"{action}: {exc}") from None


def client() -> Any:
    """A ``docker.DockerClient`` from the environment, checked to answer a ping."""
    import docker

    with translated("connecting to the Docker engine"):
        engine = docker.from_env(timeout=CONNECT_TIMEOUT)
        engine.ping()
    # Connected: a build step or a layer upload may be silent for minutes.
    engine.api.timeout = OPERATION_TIMEOUT
    return engine


def context_excludes(root: Path) -> list[str]:
    """The .dockerignore's patterns, plus the files that never enter a build context."""
    patterns: list[str] = []
    ignore = root / ".dockerignore"
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    # Appended last: a '!' line above cannot bring a secret back.
    return [*patterns, *NEVER_IN_CONTEXT]


def build_context(root: Path, dockerfile: str = "Dockerfile") -> Any:
    """The build context of ``root`` as an uncompressed tar file object (SDK's ``tar``)."""
    from docker.utils.build import tar

    excludes = [p for p in context_excludes(root) if p.lstrip("!") != dockerfile]
    return tar(str(root), exclude=excludes, dockerfile=(dockerfile, None), gzip=False)


def build(engine: Any, root: Path, tag: str, on_line: Callable[[str], None]) -> str:
    """Build ``root``'s Dockerfile as ``tag``, passing each output line to ``on_line``.

    Returns the image id. Raises :class:`DeployError` with the build's own message
    when a step fails.
    """
    context = build_context(root)
    image_id = ""
    with translated(f"building {tag}"), context:
        chunks = engine.api.build(
            fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True
        )
        for chunk in chunks:
            if "error" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = str(detail.get("message") or chunk["error"]).strip()
                raise DeployError(f"building {tag} failed: {message}")
            if "stream" in chunk:
                for line in str(chunk["stream"]).splitlines():
                    if line.strip():
                        on_line(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    return image_id


def run_detached(
    engine: Any, tag: str, *, port: int, host_port: int, environment: dict[str, str]
) -> Any:
    """Start ``tag`` with the compose file's safe defaults; return the container."""
    with translated(f"starting {tag}"):
        return engine.containers.run(
            tag,
            detach=True,
            ports={f"{port}/tcp": ("127.0.0.1", host_port)},
            environment=environment,
            read_only=True,
            tmpfs={"/tmp": ""},
            user="10001:10001",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
        )


def wait_healthy(
    container: Any,
    *,
    timeout: float,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the container's health is ``healthy``; raise when it cannot become so."""
    deadline = clock() + timeout
    with translated("waiting for the container"):
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                return
            if state.get("Status") in ("exited", "dead"):
                logs = container.logs(tail=5).decode(errors="replace").strip()
                last = logs.splitlines()[-1] if logs else "no output"
                raise DeployError(
                    f"container {container.short_id} exited with {state.get('ExitCode')}: {last}"
                )
            if health == "unhealthy":
                log = (state.get("Health") or {}).get("Log") or [{}]
                output = str(log[-1].get("Output", "")).strip() or "no output"
                raise DeployError(f"container {container.short_id} is unhealthy: {output}")
            if health is None:
                raise DeployError(
                    f"container {container.short_id} has no health check: was the image "
                    "built from a Dockerfile without HEALTHCHECK?"
                )
            if clock() >= deadline:
                raise DeployError(
                    f"container {container.short_id} not healthy after {timeout:g} s "
                    f"(health: {health}); see `docker logs {container.short_id}`"
                )
            sleep(interval)


def push(engine: Any, tag: str, on_progress: Callable[[dict[str, Any]], None]) -> None:
    """Push ``tag``; each progress message goes to ``on_progress``.

    Credentials are the SDK's: what ``docker login`` stored in the Docker config
    (``$DOCKER_CONFIG/config.json``), sent as the X-Registry-Auth header.
    """
    repository, _, image_tag = tag.rpartition(":")
    with translated(f"pushing {tag}"):
        for chunk in engine.images.push(repository, image_tag, stream=True, decode=True):
            if "error" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = str(detail.get("message") or chunk["error"]).strip()
                hint = ""
                if any(word in message.lower() for word in ("auth", "denied", "unauthorized")):
                    registry = repository.split("/")[0] if "/" in repository else "docker.io"
                    hint = f"; log in first: docker login {registry}"
                raise DeployError(f"pushing {tag} failed: {message}{hint}")
            on_progress(chunk)


def decode_auth_header(value: str) -> dict[str, Any]:
    """The X-Registry-Auth header's JSON (base64url), for tests and diagnostics."""
    padded = value + "=" * (-len(value) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded
