"""Cache keys that are the same in every process and after every restart.

A function's key is ``{key_prefix}:{arguments}``; the cache adds ``{prefix}:{version}:``.
Arguments are encoded canonically (``repr`` of plain values, sorted sets and dicts,
ISO dates, dataclass fields, ``__cache_key__()``); anything whose only identity is its
memory address raises ``TypeError`` naming the argument.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import uuid
from collections.abc import Callable
from typing import Any

# Redis keys may be 512 MB, but long keys waste memory and bandwidth: hash the tail.
MAX_KEY_LENGTH = 200

_PLAIN = (str, int, float, bool, type(None), bytes)


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def encode(value: Any, path: str) -> str:
    """A canonical, process-independent text for ``value``; ``path`` names it in errors."""
    kind = type(value)
    if kind in _PLAIN:
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{_name(kind)}.{value.name}"
    if kind is tuple or kind is list:
        inner = ",".join(encode(item, f"{path}[{i}]") for i, item in enumerate(value))
        return f"({inner})" if kind is tuple else f"[{inner}]"
    if kind is dict:
        items = sorted(
            f"{encode(k, f'{path} key')}:{encode(v, f'{path}[{k!r}]')}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if kind is set or kind is frozenset:
        return "{" + ",".join(sorted(encode(item, f"{path} item") for item in value)) + "}|"
    if isinstance(value, datetime.date | datetime.time):
        return f"{kind.__name__}({value.isoformat()})"
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return f"{kind.__name__}({value})"
    cache_key = getattr(value, "__cache_key__", None)
    if cache_key is not None and callable(cache_key):
        return f"{_name(kind)}({encode(cache_key(), f'{path}.__cache_key__()')})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f"{f.name}={encode(getattr(value, f.name), f'{path}.{f.name}')}"
            for f in dataclasses.fields(value)
        )
        return f"{_name(kind)}({fields})"
    model_dump = getattr(value, "model_dump", None)  # pydantic models
    if model_dump is not None and callable(model_dump):
        return f"{_name(kind)}({encode(model_dump(mode='json'), path)})"
    if isinstance(value, str | int | float | bytes):  # subclasses: their plain value
        base: Any = next(b for b in (bool, int, float, str, bytes) if isinstance(value, b))
        return repr(base(value))
    raise TypeError(
        f"{path} is a {_name(kind)}, which cannot form a stable cache key "
        "(its repr may hold a memory address): pass key=callable, or give the class "
        "a __cache_key__() method returning plain values"
    )


def shorten(key: str) -> str:
    """Keep keys bounded: a long tail is replaced by its SHA-256."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:64]}#{digest}"


class FunctionKey:
    """Builds the key of one decorated function's call from its arguments.

    ``f(1)`` and ``f(user_id=1)`` (and defaults left out) give the same key.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        key_prefix: str | None,
        key: Callable[..., Any] | None,
    ) -> None:
        self.qualname = f"{fn.__module__}.{fn.__qualname__}"
        self.prefix = key_prefix if key_prefix is not None else self.qualname
        self.key_fn = key
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.names = [p.name for p in params]
        simple = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        # When every parameter is a plain positional one, f(*args) with all of them
        # given needs no binding: the common case stays cheap.
        self.fast_arity = len(params) if all(p.kind in simple for p in params) else -1

    def values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Every parameter's value in declaration order (defaults applied)."""
        if not kwargs and len(args) == self.fast_arity:
            return args
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def argument(self, args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
        """The value the call passes for parameter ``name``."""
        return self.values(args, kwargs)[self.names.index(name)]

    def build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The function-level key (without the cache's prefix and version)."""
        if self.key_fn is not None:
            custom = self.key_fn(*args, **kwargs)
            part = custom if isinstance(custom, str) else encode(custom, "key() result")
            return shorten(f"{self.prefix}:{part}")
        values = self.values(args, kwargs)
        try:
            parts = [
                repr(v) if type(v) in _PLAIN else encode(v, f"argument {self.names[i]!r}")
                for i, v in enumerate(values)
            ]
        except TypeError as exc:
            raise TypeError(f"{self.qualname}: {exc}") from None
        return shorten(f"{self.prefix}:{','.join(parts)}")
