"""Errors of ``zephyr_deploy``: one :class:`DeployError` root, under ``ZephyrError``."""

from __future__ import annotations

from zephyr_core import ZephyrError


class DeployError(ZephyrError):
    """Generating, building, running or pushing a deployment failed.

    The message is one line meant for the user: it names the file, setting or
    engine involved and what to do about it.
    """


class EngineUnavailable(DeployError):
    """No Docker engine answered where we looked (DOCKER_HOST or the default socket)."""


class FileExists(DeployError):
    """A file we would write is already there and ``--force`` was not given."""


class ClusterUnavailable(DeployError):
    """No Kubernetes API server answered: no kubeconfig, or the server is unreachable."""
