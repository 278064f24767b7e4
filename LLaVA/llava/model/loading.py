"""What every family's loader shares: the one error type for checkpoints that cannot be loaded, quiet loading, and
the check that every weight was loaded."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import transformers


class CheckpointError(ValueError):
    """A model path that is not a loadable checkpoint; the message says why."""


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings about original configs (``llava_llama`` type, null ``rope_scaling``) and the
    vision tower keys that original checkpoints keep elsewhere; loading errors are checked explicitly instead."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def check_loading(info: dict[str, list[str]], model_path: str, allowed_missing: str | None = None) -> bool:
    """Fail on keys that did not load (except those starting with ``allowed_missing``); return whether those were
    missing."""
    missing = info.get("missing_keys", [])
    unexpected = [k for k in info.get("unexpected_keys", []) if "rotary_emb.inv_freq" not in k]
    bad = [k for k in missing if allowed_missing is None or not k.startswith(allowed_missing)]
    if bad or unexpected:
        raise CheckpointError(f"{model_path}: checkpoint keys do not match (missing {bad[:5]}, unexpected {unexpected[:5]})")
    return allowed_missing is not None and any(k.startswith(allowed_missing) for k in missing)
