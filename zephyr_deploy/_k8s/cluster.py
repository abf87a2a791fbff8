"""The one place the ``kubernetes`` client is built and its errors are translated.

We use the client for what it does well (kubeconfig and in-cluster credentials,
contexts, TLS, tokens, exec plugins) and send the few requests we need through its
``ApiClient`` by path: server-side apply takes Helm's YAML as it is, and one generic
request covers every kind the chart renders, CRDs included, with no discovery calls.

Errors: no kubeconfig (and not in a cluster) and an unreachable server become
:class:`~zephyr_deploy.ClusterUnavailable` naming the context and server tried; an
API error becomes :class:`~zephyr_deploy.DeployError` with the API server's message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from zephyr_deploy._exceptions import ClusterUnavailable, DeployError

#: Seconds for one request (a log stream with --follow has no read timeout).
REQUEST_TIMEOUT = 30.0

#: kind -> (API path prefix, plural): every kind the chart renders.
RESOURCES: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
}


class ApiError(DeployError):
    """The API server refused a request; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resource_path(kind: str, namespace: str, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/prod/deployments[/name]`` for ``kind``."""
    try:
        prefix, plural = RESOURCES[kind]
    except KeyError:
        raise DeployError(f"zephyr k8s does not know the kind {kind!r}") from None
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


@dataclass
class Cluster:
    """A connection to one API server, from a kubeconfig context or in-cluster config."""

    api: Any
    context: str
    server: str

    @classmethod
    def connect(cls, context: str | None = None) -> Cluster:
        """Credentials from KUBECONFIG/~/.kube/config (``context`` or the current one).

        Raises:
            ClusterUnavailable: no kubeconfig (and not running in a cluster), or the
                context does not exist.
        """
        from kubernetes import client, config

        configuration = client.Configuration()
        # The client reads KUBECONFIG once, when it is first imported: name the file
        # (or ':'-separated files) as the environment says now.
        kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            _, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig
            )
            name = context or str(active["name"])
        except (config.ConfigException, FileNotFoundError) as exc:
            try:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                name = "in-cluster"
            except config.ConfigException:
                wanted = f"context {context!r}" if context else "a current context"
                raise ClusterUnavailable(
                    f"no Kubernetes cluster configured: found no kubeconfig with {wanted} "
                    f"(KUBECONFIG or ~/.kube/config) and not running in a pod ({exc})"
                ) from None
        # One attempt: an unreachable server should say so now, not after retries.
        configuration.retries = 0
        return cls(client.ApiClient(configuration), name, str(configuration.host))

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        stream: bool = False,
        timeout: float | None = REQUEST_TIMEOUT,
    ) -> Any:
        """One request; the parsed JSON answer (or the open response when ``stream``).

        Raises:
            ClusterUnavailable: the server cannot be reached.
            ApiError: the server answered with an error status.
        """
        import urllib3

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )  # fmt: skip
        try:
            response = self.api.call_api(method, url, headers, body, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self.unreachable(exc) from None
        if response.status >= 400:
            raise api_error(response.status, response.read())
        if stream:
            return response.response
        data = response.read()
        return json.loads(data) if data else None

    def unreachable(self, exc: BaseException) -> ClusterUnavailable:
        """The one-line error for a server that does not answer."""
        reason = getattr(exc, "reason", None) or exc
        return ClusterUnavailable(
            f"cannot reach the Kubernetes API server {self.server} (context {self.context!r}): "
            f"{type(reason).__name__}: {reason}".replace("\n", " ")
        )


def api_error(status: int, data: bytes) -> ApiError:
    """The API server's ``Status`` message (or its raw answer) as one line."""
    try:
        message = json.loads(data).get("message") or data.decode(errors="replace")
    except (ValueError, AttributeError):
        message = data.decode(errors="replace")
    return ApiError(f"the API server answered {status}: {' '.join(str(message).split())}", status)
