"""Shared test fixtures: where the data the tests read lives.

Everything a test reads ships with the repository: the golden checkpoints and records, the MME ground truth and the
offline NLTK data under ``tests/fixtures/`` (each folder's README says what produced it), the benchmark data the
project itself ships under ``eval/data/``. Nothing is read from outside the clone.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVAL_DATA = PROJECT_ROOT / "eval" / "data"
"""The benchmark data the project ships (POPE questions, CHAIR tables, MME subset, AMBER, ...)."""
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
"""Golden checkpoints and the official code's outputs on them (SPARC, AvisC; ``pai_opera/``: PAI, OPERA)."""
QWEN2VL_GOLDEN = GOLDEN / "qwen2vl"
"""Tiny Qwen2-VL / Qwen2.5-VL checkpoints and their outputs (``qwen2vl/README.md``)."""
MME_GT = FIXTURES / "mme_gt"
"""MME ground truth per task in the official eval tool's format, and its LaVIN example answers."""
NLTK_DATA = FIXTURES / "nltk_data"
"""The NLTK data CHAIR and AMBER need (punkt_tab, the English tagger, WordNet), for machines without internet."""

# CHAIR and AMBER need NLTK data; CI has no route to the NLTK download site.
os.environ.setdefault("NLTK_DATA", str(NLTK_DATA))
# The tests never use the model hub; offline, a hub id fails at once instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread (also for the runners the tests start as subprocesses): the tiny models run thousands of small
# ops, which two threads slow down, by 10x when other work shares the cores. Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden fixtures not found at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def tiny_instructblip(tmp_path_factory) -> str:
    """A random tiny InstructBLIP saved in the Hugging Face layout (model, tokenizers, processor)."""
    from llava.model.synthetic import synthetic_model

    _, model, processor, _ = synthetic_model("instructblip")
    folder = tmp_path_factory.mktemp("tiny-instructblip")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)
