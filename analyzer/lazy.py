"""Names of a package loaded from their modules on first use (PEP 562), so that importing the
package does not import what only some captures need (cryptography for TLS, hpack and hyperframe
for HTTP/2: issue 21)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: `homes` maps each name to the submodule defining it.
    A name loaded once is kept in the package's namespace (later look-ups do not come here)."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    return __getattr__
