"""Modules imported on first use, so that ``rotator --help`` (and a command that needs
none of AWS) does not pay for aioboto3, pydantic and rich tables up front.

``app = lazy("rotator.app")`` binds a module whose code runs the first time an attribute
is read (``importlib.util.LazyLoader``). Pair it with a ``TYPE_CHECKING`` import of the
same name so that mypy still checks every use.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy(name: str) -> ModuleType:
    """``name``, loaded when first used (at once if it is already loaded)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
