"""Method tables: one per task (generate, decompose), read by every front door.

A task has few entry points (``Studio.generate``, ``Studio.decompose``) and many methods. Each
method is one :class:`Method` in its task's :class:`MethodTable`: its name, a one-line summary,
the optional inputs it takes, its default model preset and how it runs. The CLI builds its
choices and help from the table, the UI its dropdowns, batch jobs and the API their checks, so
a new method is one entry here plus its own ``pipelines/<method>/`` package, never a branch in
four places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

__all__ = ["Method", "MethodTable"]


@dataclass(frozen=True)
class Method:
    """One way to do a task. ``takes``: the optional inputs it uses (any other given input is
    refused, naming the methods that do take it); ``preset``: its default model (None: it runs
    without one); ``run``: how the task calls it (its signature is the task's business)."""

    name: str
    summary: str
    run: Callable[..., Any]
    takes: tuple[str, ...] = ()
    preset: str | None = None


class MethodTable:
    """The methods of one task, in registration order (the first is the default)."""

    def __init__(self, task: str, noun: str = "method") -> None:
        self.task, self.noun = task, noun
        self._methods: dict[str, Method] = {}

    def add(self, method: Method) -> Method:
        if method.name in self._methods:
            raise ValueError(f"{self.task} method {method.name!r} is registered twice")
        self._methods[method.name] = method
        return method

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    @property
    def default(self) -> str:
        return next(iter(self._methods))

    def get(self, name: str | None) -> Method:
        """The method called ``name`` (the default for None), or a clear error listing the
        others."""
        name = self.default if name is None else name
        if name not in self._methods:
            raise InvalidInputError(f"unknown {self.task} {self.noun} {name!r}; available: "
                                    f"{', '.join(self._methods)}")
        return self._methods[name]

    def installed(self, name: str) -> bool:
        """Whether method ``name`` can run here: it needs no model, or its preset's weights
        are present."""
        from .presets import get_preset, is_available

        preset = self.get(name).preset
        return preset is None or is_available(get_preset(preset))

    def taking(self, what: str) -> list[str]:
        """The methods that take input ``what``."""
        return [name for name, method in self._methods.items() if what in method.takes]

    def check_inputs(self, method: Method, given: dict[str, Any],
                     labels: dict[str, str] | None = None) -> None:
        """Refuse inputs ``method`` does not take (those given as anything but None).
        ``labels`` name an input in the error with its verb ("boxes are"); the default is
        "<input> is"."""
        for what, value in given.items():
            if value is None or what in method.takes:
                continue
            takers = self.taking(what)
            label = (labels or {}).get(what, f"{what} is")
            where = (f"for {self.noun}{'s' if len(takers) > 1 else ''} "
                     f"{', '.join(repr(t) for t in takers)}") if takers else "not used"
            raise InvalidInputError(f"{label} {where}; {method.name!r} takes "
                                    f"{', '.join(method.takes) or 'no options'}")

    def help(self) -> str:
        """One line per method, for ``--help`` and the UI."""
        return "; ".join(f"{name}: {method.summary}" for name, method in self._methods.items())
