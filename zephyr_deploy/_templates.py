"""The Jinja2 environment for the files we generate: plain text, strict, shipped as data.

``autoescape=False`` (Dockerfiles and YAML are not HTML), ``StrictUndefined`` (a
missing value is an error, never an empty string in a Dockerfile) and
``keep_trailing_newline=True``. Values that land inside YAML or a Dockerfile's exec
form go through the ``json`` filter: a JSON string is a valid YAML scalar and a valid
exec-form item, whatever characters it holds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The shared environment; templates load from ``zephyr_deploy/templates``."""
    env = Environment(
        loader=PackageLoader("zephyr_deploy", "templates"),
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = _json
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return environment().get_template(template).render(**context)
