"""Model loading and the per-family registry (imported on first use, so that light submodules such as
:mod:`llava.model.names` can be imported without torch)."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"load_pretrained_model": "llava.model.builder", "load_model": "llava.model.builder",
            "FAMILIES": "llava.model.families", "ModelFamily": "llava.model.families", "family_of": "llava.model.families"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llava.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
