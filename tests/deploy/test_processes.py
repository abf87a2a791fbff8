"""The one process list: the Dockerfile's CMD and the compose commands are the processes
``zephyr up`` runs, as containers run them (plain functions, no server)."""

from __future__ import annotations

import sys

import pytest

from zephyr_celery._up import job_processes
from zephyr_core._supervisor import ProcessSpec
from zephyr_core._up_cli import web_process
from zephyr_deploy._processes import (
    FLOWER_PORT,
    WEB_PORT,
    WORKER_STOP_GRACE,
    _container_argv,
    container_processes,
    web,
)


def test_web_alone_without_a_jobs_module() -> None:
    (only,) = container_processes("shop.app:app", None)
    assert only.name == "web" and only.port == WEB_PORT
    assert only.command == ("zephyr", "serve", "--app", "shop.app:app", "--host", "0.0.0.0",
                            "--port", "8000")  # fmt: skip
    assert web("shop.app:app") == only


def test_the_stack_is_zephyr_ups_processes() -> None:
    processes = container_processes("shop.app:app", "shop.jobs")
    assert [p.name for p in processes] == ["web", "worker", "beat", "flower"]
    up = [web_process("shop.app:app", "0.0.0.0", WEB_PORT)]
    up += job_processes("shop.jobs", flower_address="0.0.0.0", flower_port=FLOWER_PORT)
    for process, spec in zip(processes, up, strict=True):
        assert process.command == ("zephyr", *spec.argv[3:])
        assert process.port == spec.port
    by_name = {p.name: p for p in processes}
    assert by_name["flower"].port == FLOWER_PORT
    assert "/healthcheck" in by_name["flower"].health[-1]
    assert by_name["worker"].health[1:5] == ("zephyr", "docker", "probe", "worker")
    assert by_name["beat"].health[1:5] == ("zephyr", "docker", "probe", "beat")
    assert by_name["worker"].stop_grace == WORKER_STOP_GRACE
    assert all(p.stop_grace < WORKER_STOP_GRACE for p in processes if p.name != "worker")


def test_a_process_that_is_not_a_zephyr_command_is_refused() -> None:
    with pytest.raises(ValueError, match="not a zephyr command"):
        _container_argv(ProcessSpec("odd", [sys.executable, "-c", "pass"]))
