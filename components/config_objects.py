"""One check the stack-config validators share: a declared item must be an object, and every
field it names must be one they know. Errors go to the caller's list (all reported at once)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def known_object(key: str, raw: Any, allowed: Iterable[str], errors: list[str], expected: str) -> bool:
    """False (with an error saying `expected`) unless `raw` is an object; an error for each field
    of it not in `allowed`."""
    if not isinstance(raw, Mapping):
        errors.append(f"{key} = {raw!r}: must be an object with {expected}")
        return False
    allowed = tuple(allowed)
    for unknown in sorted(set(raw) - set(allowed)):
        errors.append(f"{key}.{unknown}: unknown field; allowed: {', '.join(allowed)}")
    return True
