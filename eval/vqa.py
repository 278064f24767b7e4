"""Question-answering runner (AvisC, VCD, M3ID): ``python -m eval.vqa --benchmark {pope,mme,amber}``.

Prompts as the official AvisC scripts: LLaVA gets ``llava_v1`` with the raw question and CLIP resize + center-crop;
InstructBLIP gets the raw question (224 preprocessing). Decoding samples at temperature 1 (top-k 50 for InstructBLIP,
the LAVIS default; none for LLaVA) with seed 42, or takes the argmax of the same final distribution
(``--decoding greedy``). Method settings come from ``--preset`` (``paper``, ``scripts``, ``official``; see
``avisc.config``); explicit values override it.

Writes ``{save_path}/{experiment_name}.jsonl`` with LLaVA's answer-file fields (``question_id``, ``prompt``,
``text``, ...) that the scorers read, plus ``_results.json``, ``_manifest.json``, ``_errors.jsonl``. Resumable and
shardable with ``accelerate launch -m eval.vqa ...`` like ``eval.caption``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from avisc import build_method, preset
from avisc.config import MASKING_SCHEMES, METHODS, PRESET_NAMES, SCRIPT_SEEDS
from eval.cli import add, add_run_arguments, load_model, run_main
from eval.datasets import amber_samples, mme_samples, pope_samples
from eval.files import InputError, Problem, report_problems
from eval.generation_setup import decode_batch, eos_ids
from eval.runner import Distributed, model_identity, run_benchmark
from llava.generation import GenerationConfig

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_QUESTIONS = {"mme": DATA / "mme" / "mme_hallucination.jsonl", "amber": DATA / "amber" / "query_all.json.gz"}
POPE_SPLITS = [f"{d}/{s}" for d in ("coco", "aokvqa", "gqa") for s in ("random", "popular", "adversarial")]
READERS = {"pope": pope_samples, "mme": mme_samples, "amber": amber_samples}
# LAVIS' InstructBLIP generate: max_length 64 counts the BOS it seeds, top_k left at transformers' default 50.
FAMILY_DECODING = {"instructblip": {"max_new_tokens": 63, "top_k": 50}}
DEFAULT_DECODING = {"max_new_tokens": 64, "top_k": None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.vqa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    add(data, "--benchmark", choices=sorted(READERS), required=True)
    add(data, "--image-folder", required=True, help="COCO val2014 / GQA images (POPE), MME release folder, AMBER images")
    add(data, "--question-file", default=None,
        help="POPE question file; MME: a jsonl (default: the shipped 240-question hallucination subset) or a "
             "ground-truth folder (all its questions); AMBER query file (default: the shipped query_all.json)")
    add(data, "--pope-split", choices=POPE_SPLITS, default=None,
        help="use the shipped POPE question file of this dataset/setting (the VCD copies AvisC used)")
    method = parser.add_argument_group("method (unset values come from --preset)")
    add(method, "--method", choices=METHODS, default="avisc")
    add(method, "--preset", choices=PRESET_NAMES, default="paper")
    add(method, "--decoding", choices=("sample", "greedy"), default="sample")
    add(method, "--layer-gamma", type=float, default=None)
    add(method, "--lamb", type=float, default=None)
    add(method, "--cd-alpha", type=float, default=None)
    add(method, "--cd-beta", type=float, default=None)
    add(method, "--masking-scheme", choices=MASKING_SCHEMES, default=None)
    add(method, "--noise-step", type=int, default=None)
    add(method, "--image-aspect", choices=("crop", "pad", "anyres"), default=None,
        help="LLaVA preprocessing (default: crop, as the AvisC scripts; LLaVA-NeXT: its own anyres)")
    add_run_arguments(parser, max_new_tokens=None, seed=None)
    return parser


def question_file(args: argparse.Namespace) -> Path:
    if args.question_file:
        return Path(args.question_file)
    if args.benchmark == "pope":
        if not args.pope_split:
            raise InputError("POPE needs --question-file or --pope-split (e.g. coco/random)")
        dataset, setting = args.pope_split.split("/")
        return DATA / "pope" / "vcd" / dataset / f"{dataset}_pope_{setting}.json"
    return DEFAULT_QUESTIONS[args.benchmark]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dist = Distributed.current()
    problems: list[Problem] = []
    questions = question_file(args)
    if not questions.exists():
        raise InputError(f"{questions}: no such question file")
    samples = READERS[args.benchmark](questions, Path(args.image_folder), problems)
    if args.limit is not None:
        samples = samples[: args.limit]
    report_problems(problems)

    loaded = load_model(args, dist.rank)
    family = loaded.family.name
    seed = args.seed if args.seed is not None else (SCRIPT_SEEDS.get(args.benchmark, 42) if args.preset != "paper" else 42)
    contrast = preset(args.preset, args.method, family, args.benchmark, layer_gamma=args.layer_gamma, lamb=args.lamb,
                      cd_alpha=args.cd_alpha, cd_beta=args.cd_beta, masking_scheme=args.masking_scheme,
                      noise_step=args.noise_step)
    defaults = FAMILY_DECODING.get(family, DEFAULT_DECODING)
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens or defaults["max_new_tokens"], do_sample=args.decoding == "sample",
        top_k=defaults["top_k"], eos_token_ids=eos_ids(loaded.tokenizer),
    )
    conv_mode = args.conv_mode or loaded.family.default_conv_mode
    aspect = args.image_aspect or ("crop" if family == "llava" else None)
    identity = {
        **model_identity(args, loaded), "benchmark": args.benchmark, "question_file": str(questions),
        "conv_mode": conv_mode, "image_aspect": aspect, "preset": args.preset, "method": args.method,
        "method_config": contrast.to_dict(),
        "decoding": args.decoding, "generation": vars(config), "seed": seed,
    }

    def generate_batch(batch, images) -> list[dict[str, Any]]:
        answers = decode_batch(loaded, batch, images, build_method(contrast), config, seed, conv_mode, aspect)
        return [{**a, "model_id": args.model_path, "method": args.method} for a in answers]

    return run_benchmark(
        args, samples, generate_batch, identity, "question_id",
        {"benchmark": args.benchmark, "question_file": str(questions)}, dist, loaded.device, len(problems),
        f"{args.benchmark} ({args.method})",
    )

if __name__ == "__main__":
    run_main(main)
