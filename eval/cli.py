"""Command-line plumbing shared by the runners: arguments (dash and underscore spellings), model loading, the
environment block of ``_results.json``, and one-line errors."""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from eval.files import InputError
from llava.model.builder import DTYPES, resolve_dtype

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def add(parser: argparse.ArgumentParser | Any, name: str, *aliases: str, **kwargs: Any) -> None:
    """``add_argument`` with the official underscore spelling of ``--dash-names`` accepted too."""
    names = [name, *aliases]
    underscored = "--" + name[2:].replace("-", "_")
    if "-" in name[2:] and underscored not in names:
        names.append(underscored)
    parser.add_argument(*names, **kwargs)


def add_run_arguments(parser: argparse.ArgumentParser, max_new_tokens: int | None, seed: int = 42) -> None:
    """Arguments every runner has: model, decoding basics, outputs, resume and robustness switches."""
    model = parser.add_argument_group("model")
    add(model, "--model-path", required=True, help="checkpoint folder or hub id (original LLaVA, llava-hf, InstructBLIP)")
    add(model, "--vision-tower", default=None, help="override mm_vision_tower of original LLaVA checkpoints")
    add(model, "--conv-mode", default=None, help="conversation template (default: the benchmark's)")
    add(model, "--dtype", choices=sorted(DTYPES), default=None, help="default: float16 on GPU, float32 on CPU")
    add(model, "--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    add(model, "--attn", choices=("sdpa", "eager"), default=None, help="default: sdpa on GPU, eager on CPU")
    run = parser.add_argument_group("run")
    add(run, "--batch-size", type=int, default=1, help="sequences decoded together (same outputs as 1)")
    add(run, "--seed", type=int, default=seed, help="subset draw and sampling (each sample its own generator)")
    add(run, "--max-new-tokens", type=int, default=max_new_tokens, help="tokens generated at most per answer")
    add(run, "--limit", type=int, default=None, help="only the first N samples (quick checks)")
    add(run, "--save-path", required=True, help="output folder")
    add(run, "--experiment-name", required=True, help="output file stem")
    add(run, "--overwrite", action="store_true", help="discard earlier outputs of this experiment")
    add(run, "--strict", action="store_true", help="exit non-zero when any sample was skipped")


@dataclass
class LoadedModel:
    """What the runners need of a loaded checkpoint."""

    tokenizer: Any
    model: torch.nn.Module
    image_processor: Any
    family: Any
    device: torch.device


def resolve_device(requested: str | None, rank: int = 0) -> torch.device:
    """``--device``, else this process's GPU when there is one, else the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def load_model(args: argparse.Namespace, rank: int = 0) -> LoadedModel:
    """Load ``--model-path`` on this process's device."""
    from llava.model.builder import load_pretrained_model
    from llava.model.families import family_of

    device = resolve_device(args.device, rank)
    dtype = resolve_dtype(args.dtype, device)
    tokenizer, model, processor, _ = load_pretrained_model(
        args.model_path, device_map={"": str(device)}, dtype=dtype, vision_tower=args.vision_tower,
        attn_implementation=args.attn,
    )
    return LoadedModel(tokenizer, model, processor, family_of(model), device)


def git_commit() -> str | None:
    """The project's git commit (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(device: torch.device | None = None) -> dict[str, Any]:
    """Versions, commit and device for ``_results.json``."""
    import accelerate
    import transformers

    import llava

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "llava": llava.__version__,
        "commit": git_commit(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI ``main``: bad input is one clear line and exit status 2, not a traceback."""
    try:
        code = main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)
