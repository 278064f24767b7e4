"""Captioning runner (SPARC): ``python -m eval.caption``.

The official ``eval.py`` knobs under the same names (underscore spellings work too): the baseline is
``--alpha 1.0``; SPARC with the paper's parameters is the default preset of the model's family (``llava-1.5``:
alpha 1.1, beta 0.1, tau 1.5, layer 20, layers 0-31; ``llava-next``: tau 4.0). Greedy decoding, 512 new tokens,
prompt "Please describe this image in detail.", ``vicuna_v1``, the model's own image preprocessing (pad / anyres).

Writes ``{save_path}/{experiment_name}.jsonl`` (``{"image_id", "caption", "num_tokens", "finish_reason"}`` per image,
in dataset order), ``_results.json``, ``_manifest.json`` (the chosen ids: pass it back with ``--subset-manifest``),
``_errors.jsonl``. Resumable, shardable with ``accelerate launch -m eval.caption ...``; see ``eval.runner``.
"""
from __future__ import annotations

import argparse
from typing import Any

from eval.cli import add, add_run_arguments, load_model, run_main
from eval.datasets import CAPTION_PROMPT, DEFAULT_NUM_SAMPLES, caption_samples, select_by_manifest
from eval.files import Problem, report_problems
from eval.generation_setup import decode_batch, eos_ids
from eval.runner import Distributed, model_identity, run_benchmark
from llava.generation import GenerationConfig
from sparc import PRESETS, Sparc, get_preset

FAMILY_PRESETS = {"llava": "llava-1.5", "llava_next": "llava-next", "instructblip": "llava-1.5"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.caption", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    add(data, "--dataset-type", choices=("coco", "iiw", "docci", "folder"), required=True)
    add(data, "--image-folder", required=True, help="COCO val2014 / DOCCI images (also IIW-400's) / any folder")
    add(data, "--annotation-file", default=None, help="IIW-400 data.jsonl or DOCCI docci_descriptions.jsonl(ines)")
    add(data, "--num-samples", type=int, default=None, help="subset size (default: 500 for coco and docci, all otherwise)")
    add(data, "--subset-manifest", default=None, help="run exactly the ids of this manifest, in its order")
    add(data, "--prompt", default=CAPTION_PROMPT, help="the captioning question")
    sparc = parser.add_argument_group("SPARC (unset values come from --preset)")
    add(sparc, "--preset", choices=sorted(PRESETS), default=None, help="default: llava-1.5, or llava-next for LLaVA-NeXT")
    add(sparc, "--alpha", type=float, default=None, help="amplification; 1.0 = baseline (no SPARC)")
    add(sparc, "--beta", type=float, default=None, help="EMA weight of the history")
    add(sparc, "--tau", type=float, default=None, help="relative-change threshold")
    add(sparc, "--selected-layer", type=int, default=None)
    add(sparc, "--start-layer", type=int, default=None)
    add(sparc, "--end-layer", type=int, default=None)
    decoding = parser.add_argument_group("decoding")
    add(decoding, "--temperature", type=float, default=0.0, help="0 = greedy (official); > 0 samples")
    add(decoding, "--top-p", type=float, default=None)
    add_run_arguments(parser, max_new_tokens=512)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    dist = Distributed.current()
    problems: list[Problem] = []
    num_samples = args.num_samples if args.num_samples is not None else DEFAULT_NUM_SAMPLES[args.dataset_type]
    if args.subset_manifest:  # the manifest's ids, drawn from the whole dataset
        num_samples = None
    samples = caption_samples(args.dataset_type, args.image_folder, args.annotation_file, num_samples, args.seed,
                              problems, args.prompt)
    if args.subset_manifest:
        samples = select_by_manifest(samples, args.subset_manifest)
    if args.limit is not None:
        samples = samples[: args.limit]
    report_problems(problems)

    loaded = load_model(args, dist.rank)
    sparc = get_preset(args.preset or FAMILY_PRESETS[loaded.family.name], alpha=args.alpha, beta=args.beta,
                       tau=args.tau, selected_layer=args.selected_layer, start_layer=args.start_layer,
                       end_layer=args.end_layer)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0,
                              temperature=args.temperature if args.temperature > 0 else 1.0, top_p=args.top_p,
                              eos_token_ids=eos_ids(loaded.tokenizer))
    conv_mode = args.conv_mode or loaded.family.default_conv_mode
    identity = {
        **model_identity(args, loaded), "dataset_type": args.dataset_type, "prompt": args.prompt,
        "conv_mode": conv_mode, "method": "sparc" if sparc.enabled else "baseline", "sparc": sparc.to_dict(),
        "generation": vars(config), "seed": args.seed,
    }

    def generate_batch(batch, images) -> list[dict[str, Any]]:
        answers = decode_batch(loaded, batch, images, Sparc(sparc), config, args.seed, conv_mode)
        return [{"caption": a.pop("text"), **a} for a in answers]

    return run_benchmark(
        args, samples, generate_batch, identity, "image_id",
        {"dataset_type": args.dataset_type, "seed": args.seed, "num_samples": num_samples}, dist, loaded.device,
        len(problems), f"captioning ({'SPARC' if sparc.enabled else 'baseline'})",
    )

if __name__ == "__main__":
    run_main(main)
