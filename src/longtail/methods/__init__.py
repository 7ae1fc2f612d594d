"""The methods: one LightningModule per method, each owning only its own steps (docs/architecture.md §2).

A method also declares what it brings beyond the shared evaluation, so that no central list names it: the
figures its results support (``plots``), the keys it adds to ``results.json`` (``results_keys``) and its rows in
``python -m longtail.bench`` (``bench_rows``). :func:`method_classes` is the registry the reporting and the bench
read them from.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

METHOD_MODULES = ("erm", "decouple", "ride", "drolt", "diffnet", "ipdpp")


@dataclass(frozen=True)
class MethodPlot:
    """A figure of a stage's results: ``draw`` (the dotted path of a function ``results -> Figure``) is written to
    ``<stage>/plots/<file>`` when every key of ``needs`` is in its ``results.json``."""

    file: str
    needs: tuple[str, ...]
    draw: str


@dataclass(frozen=True)
class BenchRow:
    """A row of ``python -m longtail.bench``: the overrides that turn its CE run into the method's training step;
    ``data``: the data overrides the method needs, under which its ERM reference row runs as well."""

    overrides: tuple[str, ...]
    data: tuple[str, ...] = ()


def method_classes() -> list[type]:
    """Every method class of the library (a ``LongTailModule``), module by module in :data:`METHOD_MODULES` order."""
    from longtail.methods.base import LongTailModule

    classes = []
    for name in METHOD_MODULES:
        module = importlib.import_module(f"longtail.methods.{name}")
        classes += [value for value in vars(module).values() if isinstance(value, type)
                    and issubclass(value, LongTailModule) and value.__module__ == module.__name__]
    return classes


def method_class(target: str | None) -> type | None:
    """The method class a ``_target_`` names, or ``None`` when it names none (a partial, a user's own class that is
    not a ``LongTailModule``, a path that does not import)."""
    from hydra.utils import get_class

    from longtail.methods.base import LongTailModule

    try:
        cls = get_class(str(target))
    except Exception:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, LongTailModule) else None


def declared(attribute: str) -> list:
    """What the method classes declare under ``attribute`` (``plots``, ``results_keys``: their items; ``bench_rows``:
    ``(name, row)`` pairs), each class's own declarations only (a subclass does not repeat its parent's)."""
    found = []
    for cls in method_classes():
        own = vars(cls).get(attribute, ())
        found += list(own.items()) if isinstance(own, dict) else list(own)
    return found
