"""Bastion: a web bastion host with recorded, watched SSH sessions and vetted task modules."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `bastion.Modulehandle` is the base class of drop-in modules; imported lazily to keep the CLI light.
    if name == "Modulehandle":
        from .module_api import Modulehandle
        return Modulehandle
    raise AttributeError(name)
