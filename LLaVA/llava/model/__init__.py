"""Model loading and the family registry (imported on first use, so that the light registry
:mod:`llava.model.families` can be imported without torch)."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"load_pretrained_model": "llava.model.builder", "load_model": "llava.model.builder",
            "family_of": "llava.model.families", "get_family": "llava.model.families",
            "list_families": "llava.model.families", "ModelFamily": "llava.model.families.base"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'llava.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
