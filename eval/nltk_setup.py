"""NLTK data for the CHAIR and AMBER scorers: find it, or download it once.

Both scorers need the Punkt sentence tokenizer (``punkt_tab``), the averaged-perceptron POS tagger
(``averaged_perceptron_tagger_eng``) and WordNet (``wordnet``), in the formats of NLTK >= 3.9. Offline machines point
``NLTK_DATA`` at a folder that holds them (the tests use ``../shared/reference/nltk_data``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nltk

# package name -> the resource path NLTK itself looks up (a trailing "/" lets find() look inside a .zip too)
REQUIRED = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
    "wordnet": "corpora/wordnet/",
}

_ready = False


def _env_dirs() -> list[str]:
    """The folders listed in ``$NLTK_DATA`` (path-separator separated)."""
    return [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]


def missing_packages() -> list[str]:
    """The required NLTK packages that ``nltk.data.find`` cannot locate, after adding the ``$NLTK_DATA`` folders
    to ``nltk.data.path`` (NLTK reads that variable only when it is imported)."""
    for folder in reversed(_env_dirs()):
        if folder not in nltk.data.path:
            nltk.data.path.insert(0, folder)
    missing = []
    for package, resource in REQUIRED.items():
        try:
            nltk.data.find(resource)
        except LookupError:
            missing.append(package)
    return missing


def download_dir() -> Path:
    """Where missing packages go: the first folder of ``$NLTK_DATA`` if set, else ``~/nltk_data``."""
    dirs = _env_dirs()
    return Path(dirs[0]) if dirs else Path.home() / "nltk_data"


def ensure_nltk_data() -> None:
    """Make sure the tokenizer, tagger and WordNet are available; download what is missing (once per process).

    Raises ``RuntimeError`` with instructions when a download fails (for example on a machine without internet).
    """
    global _ready
    if _ready:
        return
    missing = missing_packages()
    if missing:
        target = download_dir()
        print(f"NLTK data missing ({', '.join(missing)}); downloading into {target} ...", file=sys.stderr)
        target.mkdir(parents=True, exist_ok=True)
        failed = [p for p in missing if not _download(p, target)]
        if str(target) not in nltk.data.path:
            nltk.data.path.insert(0, str(target))
        failed = sorted(set(failed) | set(missing_packages()))
        if failed:
            raise RuntimeError(
                f"NLTK data {', '.join(failed)} could not be downloaded into {target}. On a machine with internet run "
                f"`python -m nltk.downloader {' '.join(REQUIRED)}`, copy the resulting nltk_data folder here and set "
                "NLTK_DATA=/path/to/nltk_data (the folder holding tokenizers/, taggers/ and corpora/)."
            )
    _ready = True


def _download(package: str, target: Path) -> bool:
    """``nltk.download`` that reports failure as ``False`` instead of raising."""
    try:
        return bool(nltk.download(package, download_dir=str(target), quiet=True, raise_on_error=True))
    except Exception as e:  # network errors, bad zip files, permission errors
        print(f"NLTK download of {package} failed: {e}", file=sys.stderr)
        return False
