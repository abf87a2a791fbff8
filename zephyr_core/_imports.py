"""Importing the user's module named on a command line (``--app``, ``-A``)."""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType

from zephyr_core._exceptions import ConfigError, ZephyrError


class ModuleMissing(ConfigError):
    """The named module (or a package on its path) does not exist: a usage error."""


class ModuleImportFailed(ZephyrError):
    """The module exists but raised while being imported."""


class BadImportPath(ModuleMissing):
    """``module`` or ``module:attribute`` is malformed (``':app'``, ``'mod:'``): a usage error."""


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def split_import_path(spec: str, *, option: str, attribute: bool | None) -> tuple[str, str]:
    """Split ``module:attribute`` as typed on a command line, refusing malformed ones.

    Args:
        spec: What the user typed, like ``myapp.main:app`` or ``myapp.jobs``.
        option: The option, for messages (``"--app"``, ``"-A/--app"``).
        attribute: True when ``:attribute`` is required, False when it is refused,
            None when it is optional (but not empty after a colon).

    Returns:
        ``(module, attribute)``; the attribute is ``""`` when absent.

    Raises:
        BadImportPath: an empty or non-identifier module or attribute, or an
            attribute where none (or none where one) is expected.
    """
    module, colon, attr = spec.partition(":")
    if attribute is True:
        expected, fits = "'module:attribute', like 'myapp.main:app'", bool(colon)
    elif attribute is False:
        expected, fits = "a module, like 'myapp.jobs'", not colon
    else:
        expected, fits = "a module like 'myapp.jobs', or 'myapp.jobs:app'", True
    if not (fits and _DOTTED.match(module) and (not colon or _DOTTED.match(attr))):
        raise BadImportPath(f"{option} {spec!r}: expected {expected}")
    return module, attr


def import_user_module(name: str, *, option: str) -> ModuleType:
    """Import ``name`` the way ``celery -A`` and uvicorn do: the working directory first.

    Args:
        name: A dotted module path, like ``myapp.jobs``.
        option: How the user named it, for messages (``"--app 'myapp.jobs'"``).

    Raises:
        ModuleMissing: ``name`` or one of its parent packages does not exist, or it
            is not a dotted module name (:class:`BadImportPath`).
        ModuleImportFailed: importing it raised (a ZephyrError, such as a bad ``@job``
            option, propagates unchanged: it already says what is wrong).
    """
    if not _DOTTED.match(name):  # importlib's own error would be a ValueError
        raise BadImportPath(f"{option}: expected a module name like 'myapp.jobs'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only when the missing module is the one named: a missing dependency of the
        # user's module is a failure of that module, not a typo on the command line.
        if exc.name and name.startswith(exc.name):
            raise ModuleMissing(f"{option}: no module named {exc.name!r}") from None
        raise ModuleImportFailed(f"{option}: importing it failed: {exc}") from exc
    except ZephyrError:
        raise
    except Exception as exc:
        raise ModuleImportFailed(
            f"{option}: importing it failed: {type(exc).__name__}: {exc}"
        ) from exc
