"""JSON from users, bounded: nesting depth, size and strict numbers.

Manifests, ORA sidecars, the XMP packet in our PSDs, batch lines and layout files are all JSON
that a stranger may have written. Python's parser recurses once per nesting level, so a line of
2,000 ``[`` ends in ``RecursionError`` and ``1e400`` silently becomes infinity (then an
``OverflowError`` far away). These helpers refuse both up front with a message, and the writer
side never emits what the reader refuses (no bare ``NaN``, no depth over the limit).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "check_value", "dumps", "loads"]

MAX_JSON_DEPTH = 64
"""Deepest nesting of lists/objects accepted; our own files use 4."""

MAX_JSON_BYTES = 16 * 1024 * 1024
"""Largest JSON document read or written (a manifest with 1,000 layers is about 0.5 MB)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _nesting_depth(data: bytes) -> int:
    """Deepest bracket nesting outside string literals, without recursion (vectorised)."""
    code = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    steps = (np.isin(code, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(code, (ord("]"), ord("}"))).astype(np.int32))
    return int(np.cumsum(steps).max(initial=0))


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON from an untrusted source, or raise :class:`InvalidInputError` saying why."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise InvalidInputError(f"{what} is larger than {max_bytes:,} bytes")
    if _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidInputError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno})"
                                ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None


def check_value(value: Any, what: str, max_bytes: int = MAX_JSON_BYTES) -> None:
    """Refuse a value that :func:`dumps` could not write or :func:`loads` would not read back:
    not JSON-able, nested too deeply, too large, non-finite numbers or unencodable text."""
    stack = [(value, 1)]
    while stack:  # iterative, so depth itself cannot overflow the interpreter's stack
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_JSON_DEPTH:
                raise InvalidInputError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    raise InvalidInputError(f"{what} has a key that is not text")
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInputError(f"{what} holds a non-finite number ({item})")
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInputError(f"{what} holds text that is not valid Unicode "
                                        "(a lone surrogate)") from None
        elif not (item is None or isinstance(item, (bool, int, float))):
            raise InvalidInputError(f"{what} must be JSON-serialisable; it holds a "
                                    f"{type(item).__name__}")
    size = len(dumps(value, what))
    if size > max_bytes:
        raise InvalidInputError(f"{what} is {size:,} bytes of JSON, above the limit of "
                                f"{max_bytes:,}")


def dumps(value: Any, what: str, indent: int | None = None) -> bytes:
    """Strict JSON (UTF-8): refuses what :func:`loads` refuses instead of writing it."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent, allow_nan=False
                          ).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"{what} cannot be written as JSON: {exc}") from None
