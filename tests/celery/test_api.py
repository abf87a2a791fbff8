"""The public surface of zephyr_celery: what ``__all__`` promises is what exists."""

from __future__ import annotations

import zephyr_celery
from zephyr_core import ZephyrError

CONTRACT = {
    "job",
    "JobHandle",
    "JobError",
    "JobFailed",
    "JobTimeout",
    "EnqueueError",
    "ResultBackendError",
    "get_app",
    "create_app",
}


def test_all_is_sorted_and_complete() -> None:
    assert zephyr_celery.__all__ == sorted(zephyr_celery.__all__)
    for name in zephyr_celery.__all__:
        assert hasattr(zephyr_celery, name), name
    public = {
        name
        for name, value in vars(zephyr_celery).items()
        if not name.startswith("_") and not getattr(value, "__name__", "").startswith("zephyr_")
    }
    assert public <= set(zephyr_celery.__all__) | {"annotations"}
    assert set(zephyr_celery.__all__) >= CONTRACT


def test_exceptions_share_the_zephyr_tree() -> None:
    for name in ("JobFailed", "JobTimeout", "EnqueueError", "ResultBackendError"):
        assert issubclass(getattr(zephyr_celery, name), zephyr_celery.JobError), name
    assert issubclass(zephyr_celery.JobError, ZephyrError)
    assert issubclass(zephyr_celery.JobTimeout, TimeoutError)
    # Code that caught the libraries' connection errors keeps catching ours.
    assert issubclass(zephyr_celery.EnqueueError, ConnectionError)
    assert issubclass(zephyr_celery.ResultBackendError, ConnectionError)


def test_testing_module_all() -> None:
    from zephyr_celery import testing

    assert testing.__all__ == sorted(testing.__all__)
    for name in testing.__all__:
        assert hasattr(testing, name), name


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("zephyr_celery").joinpath("py.typed").is_file()
