"""Where a result came from: package versions, the project's git commit, the device (recorded in every
``_results.json`` and metrics file that asks)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """The project's git commit (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(device: Any = None) -> dict[str, Any]:
    """Versions, commit and device for ``_results.json``."""
    import accelerate
    import torch
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
