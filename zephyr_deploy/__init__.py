"""zephyr-infra's deployment: containers, the Kubernetes chart, autoscaling.

``zephyr docker init|compose|build|run|push`` write and drive the container files;
``zephyr k8s generate|apply|status|logs|scale`` render the shipped Helm chart
(``helm/zephyr-app``) from Settings and drive a cluster; :class:`AutoScaler` and
:class:`MetricCollector` feed the chart's autoscaling and ``/metrics``.
"""

from zephyr_deploy._exceptions import ClusterUnavailable, DeployError, EngineUnavailable
from zephyr_deploy._metrics import MetricCollector
from zephyr_deploy._scaling import AutoScaler, ScalingAnalysis

__all__ = [
    "AutoScaler",
    "ClusterUnavailable",
    "DeployError",
    "EngineUnavailable",
    "MetricCollector",
    "ScalingAnalysis",
]
