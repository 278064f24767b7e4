"""Question-answering runner: ``python -m eval.vqa --benchmark {pope,mme,amber,llava_bench} --method NAME``.

Any registered method (default: AvisC) on a yes/no benchmark (POPE, MME, AMBER) or the open-ended LLaVA-Bench
(In-the-Wild, AvisC's ``llava_bench_llava.py`` protocol: sampling at temperature 1, top-p 1, 64 new tokens), with the
benchmark's protocol (the official AvisC
scripts: LLaVA ``llava_v1`` with the raw question and CLIP resize + center-crop; InstructBLIP the raw question, 224
preprocessing, top-k 50, 63 new tokens; sampling at temperature 1, 64 new tokens, seed 42) and the method's preset
(``--preset paper|scripts|official``); every flag overrides one setting and is recorded. ``--decoding greedy`` takes
the argmax of the same final distribution.

Writes ``{save_path}/{experiment_name}.jsonl`` with LLaVA's answer-file fields (``question_id``, ``prompt``,
``text``, ...) that the scorers read, plus ``_results.json``, ``_manifest.json``, ``_errors.jsonl``. Resumable and
shardable like ``eval.caption``.
"""
from __future__ import annotations

from eval.cli import run_main, runner_main

DEFAULT_METHOD = "avisc"
"""The method run when ``--method`` is not given (also what ``eval.sweep vqa`` assumes)."""


def main(argv: list[str] | None = None) -> int:
    return runner_main("eval.vqa", "python -m eval.vqa", __doc__, DEFAULT_METHOD, argv)


if __name__ == "__main__":
    run_main(main)
