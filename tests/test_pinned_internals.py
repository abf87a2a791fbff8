"""Every private attribute of a dependency that we use still exists in the installed version.

Modules that reach into Celery, kombu, redis-py or aiocache list what they use in their
docstring, under a ``Private internals used:`` heading, one ``- ``dotted.name```` per
line. This test reads those lists and resolves every name against the installed
packages, so an upgrade that drops one fails here, by name, instead of at run time.
A class attribute is looked up on the class; an instance attribute (set in
``__init__`` or a method) is accepted when the class's own source assigns or reads it
as ``self.<name>``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType
from typing import Any

import pytest

PACKAGES = ("zephyr_core", "zephyr_celery", "zephyr_cache", "zephyr_db", "zephyr_resilience")
HEADING = "Private internals used:"
ITEM = re.compile(r"^\s*-\s+``([A-Za-z_][\w.]*)``")


def _modules() -> list[ModuleType]:
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if not info.name.endswith(".__main__"):  # runs the CLI when imported
                found.append(importlib.import_module(info.name))
    return found


def _listed(module: ModuleType) -> list[str]:
    doc = module.__doc__ or ""
    if HEADING not in doc:
        return []
    names = []
    for line in doc.split(HEADING, 1)[1].splitlines()[1:]:
        if not line.strip():
            if names:
                break
            continue
        match = ITEM.match(line)
        if match is None:
            break
        names.append(match.group(1))
    return names


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for index, attribute in enumerate(parts[split:], start=split):
            if hasattr(target, attribute):
                target = getattr(target, attribute)
            elif inspect.isclass(target) and index == len(parts) - 1:
                return _instance_attribute(target, attribute)
            else:
                raise AttributeError(f"{'.'.join(parts[:index])} has no {attribute!r}")
        return target
    raise ImportError(f"no module in {dotted!r} imports")


def _instance_attribute(cls: type, attribute: str) -> str:
    # Set on instances only: by the class itself (self.<name>) or, for objects the
    # library wires together, by its module on another reference (cycle.<name>).
    for klass in cls.__mro__:
        try:
            source = inspect.getsource(klass)
            module_source = inspect.getsource(inspect.getmodule(klass))  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
        if re.search(rf"\bself\.{re.escape(attribute)}\b", source):
            return f"{klass.__qualname__}: self.{attribute}"
        if re.search(rf"\.{re.escape(attribute)}\s*=", module_source):
            return f"{klass.__module__}: .{attribute} ="
    raise AttributeError(f"{cls.__module__}.{cls.__qualname__} never uses self.{attribute}")


LISTED = [(module.__name__, name) for module in _modules() for name in _listed(module)]


def test_the_modules_that_reach_into_dependencies_say_so() -> None:
    listing = {module for module, _ in LISTED}
    assert {
        "zephyr_celery._redis.wire",
        "zephyr_celery.testing",
        "zephyr_resilience._breaker",
    } <= listing


@pytest.mark.parametrize(("module", "name"), LISTED, ids=[f"{m}:{n}" for m, n in LISTED])
def test_a_listed_private_internal_exists(module: str, name: str) -> None:
    _resolve(name)


def test_a_missing_internal_is_reported() -> None:
    with pytest.raises(AttributeError, match="_no_such_thing"):
        _resolve("kombu.transport.redis.Channel._no_such_thing")
