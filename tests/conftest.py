"""Shared test fixtures: where the reference data lives (``../shared/reference``, never copied into the project)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (PROJECT_ROOT / ".." / "shared" / "reference").resolve()
GOLDEN = REFERENCE / "golden"

# CHAIR and AMBER need NLTK data; CI has no route to the NLTK download site.
os.environ.setdefault("NLTK_DATA", str(REFERENCE / "nltk_data"))
# The tests never use the model hub; offline, a hub id fails at once instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread (also for the runners the tests start as subprocesses): the tiny models run thousands of small
# ops, which two threads slow down, by 10x when other work shares the cores. Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE} (expected ../shared/reference beside the project)")
    return REFERENCE


@pytest.fixture(scope="session")
def golden_dir(reference_dir: Path) -> Path:
    return reference_dir / "golden"


@pytest.fixture(scope="session")
def tiny_instructblip(tmp_path_factory) -> str:
    """A random tiny InstructBLIP saved in the Hugging Face layout (model, tokenizers, processor)."""
    from llava.model.synthetic import synthetic_model

    _, model, processor, _ = synthetic_model("instructblip")
    folder = tmp_path_factory.mktemp("tiny-instructblip")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)
