"""Records for the protocol's types: a small twin of ``dataclasses`` (``dataclass``, ``field``,
``replace``) without exec'd code and without importing ``dataclasses`` (and through it ``inspect``,
``ast``, ``dis``, ``tokenize``...). An app's start pays for what it imports: under TCG in a VM the
standard ``dataclasses`` + ``typing`` + ``logging`` cost about half a second of a Python app's first
status write. Type checkers see ``dataclasses`` itself (protocol.py imports it under TYPE_CHECKING)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class FrozenRecordError(AttributeError):
    """An attempt to change a field of a frozen record (like ``dataclasses.FrozenInstanceError``)."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Any) -> None:
        self.make = make


def field(*, default_factory: Any) -> Any:
    return _Factory(default_factory)


def _record(cls: Any = None, *, frozen: bool = False) -> Any:
    """A small ``dataclasses.dataclass`` for the protocol's types: ``__init__`` (positional or keyword,
    defaults, ``field(default_factory=...)``), ``__repr__``, ``__eq__``, ``__hash__`` (frozen), and
    frozen fields. Without exec'd code or the ``dataclasses`` / ``inspect`` imports (an app's start)."""

    def wrap(cls: Any) -> Any:
        names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 (no inspect: see above)
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        for n in defaults:
            if isinstance(defaults[n], _Factory):
                delattr(cls, n)
        qual = cls.__name__

        def __init__(self: Any, *args: Any, **kw: Any) -> None:
            if len(args) > len(names):
                raise TypeError(f"{qual}() takes {len(names)} positional arguments, {len(args)} given")
            vals = dict(zip(names, args))  # noqa: B905 (Python 3.8 runtime: no strict=)
            for k, v in kw.items():
                if k not in names:
                    raise TypeError(f"{qual}() got an unexpected keyword argument {k!r}")
                if k in vals:
                    raise TypeError(f"{qual}() got multiple values for argument {k!r}")
                vals[k] = v
            for n in names:
                if n not in vals:
                    if n not in defaults:
                        raise TypeError(f"{qual}() missing required argument: {n!r}")
                    d = defaults[n]
                    vals[n] = d.make() if isinstance(d, _Factory) else d
                object.__setattr__(self, n, vals[n])

        def __repr__(self: Any) -> str:
            return f"{qual}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"

        def __eq__(self: Any, other: Any) -> Any:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__init__ = __init__
        cls.__repr__ = __repr__
        cls.__eq__ = __eq__
        cls.__match_args__ = names
        cls._record_fields = names
        if frozen:

            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen {qual}")

            def __delattr__(self: Any, name: str) -> None:
                raise FrozenRecordError(f"cannot delete field {name!r} of a frozen {qual}")

            def __hash__(self: Any) -> int:
                return hash(tuple(getattr(self, n) for n in names))

            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
            cls.__hash__ = __hash__
        else:
            cls.__hash__ = None
        return cls

    return wrap if cls is None else wrap(cls)


def replace(obj: Any, **changes: Any) -> Any:
    """A copy of the record ``obj`` with ``changes`` (``dataclasses.replace`` for the protocol's types)."""
    return obj.__class__(**{**{n: getattr(obj, n) for n in obj._record_fields}, **changes})
