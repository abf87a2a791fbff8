"""``zephyr k8s``: render the shipped chart from Settings, apply it, watch it, scale it.

| module | holds |
|---|---|
| ``cli.py`` | the click group: generate, apply, status, logs, scale |
| ``order.py`` | the order objects are applied in (dependencies first) |
| ``cluster.py`` | the one place the ``kubernetes`` client is built and its errors translated |
| ``apply.py`` | server-side apply (field manager ``zephyr``) and the rollout wait |
| ``status.py`` | each component's Deployment, autoscaler and warning events |
| ``logs.py`` | a component's pods and their log streams |
| ``scale.py`` | the scale subresource, refused while an autoscaler owns the target |
"""
