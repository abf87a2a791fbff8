"""Importing the user's module named on a command line (``--app``, ``-A``)."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from zephyr_core._exceptions import ConfigError, ZephyrError


class ModuleMissing(ConfigError):
    """The named module (or a package on its path) does not exist: a usage error."""


class ModuleImportFailed(ZephyrError):
    """The module exists but raised while being imported."""


def import_user_module(name: str, *, option: str) -> ModuleType:
    """Import ``name`` the way ``celery -A`` and uvicorn do: the working directory first.

    Args:
        name: A dotted module path, like ``myapp.jobs``.
        option: How the user named it, for messages (``"--app 'myapp.jobs'"``).

    Raises:
        ModuleMissing: ``name`` or one of its parent packages does not exist.
        ModuleImportFailed: importing it raised (a ZephyrError, such as a bad ``@job``
            option, propagates unchanged: it already says what is wrong).
    """
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
