"""zephyr-infra's deployment: Dockerfile, .dockerignore and compose from one process list.

``zephyr docker init`` and ``zephyr docker compose`` write the files; ``zephyr docker
build|run|push`` drive a Docker engine through the ``docker`` SDK. Kubernetes and
rollouts come later.
"""

from zephyr_deploy._exceptions import DeployError, EngineUnavailable

__all__ = ["DeployError", "EngineUnavailable"]
