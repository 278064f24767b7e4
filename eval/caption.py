"""Captioning runner: ``python -m eval.caption --dataset-type {coco,iiw,docci,folder} --method NAME``.

Any registered method (default: SPARC) on a captioning benchmark, with the benchmark's protocol (the official SPARC
``eval.py``: "Please describe this image in detail.", ``vicuna_v1``, the model's own preprocessing, greedy, 512 new
tokens, seed 42) and the method's preset (``--preset``, default ``paper``); every flag overrides one setting and is
recorded. The official ``eval.py`` knobs keep their names (``--alpha``, ``--tau``, ``--selected_layer``, ...).

Writes ``{save_path}/{experiment_name}.jsonl`` (``{"image_id", "caption", "num_tokens", "finish_reason"}`` per image,
in dataset order), ``_results.json`` (the resolved settings and where each came from), ``_manifest.json`` (the chosen
ids: pass it back with ``--subset-manifest``), ``_errors.jsonl``. Resumable, shardable with ``torchrun`` or
``accelerate launch -m eval.caption ...``; see ``eval.runner``.
"""
from __future__ import annotations

from eval.cli import run_main, runner_main

DEFAULT_METHOD = "sparc"
"""The method run when ``--method`` is not given (also what ``eval.sweep caption`` assumes)."""


def main(argv: list[str] | None = None) -> int:
    return runner_main("eval.caption", "python -m eval.caption", __doc__, DEFAULT_METHOD, argv)


if __name__ == "__main__":
    run_main(main)
