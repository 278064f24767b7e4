"""Ask one question about one image: ``python -m llava.run --model-path P --image-file I --query Q``.

Like upstream's ``llava.eval.run_llava``: prints the answer. Bad input (a missing or unreadable image, a folder
that is not a checkpoint, an unknown conversation mode) is one clear line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys

from llava.constants import ASPECT_MODES, DTYPE_NAMES, MIN_TEMPERATURE
from llava.conversation import get_conv_template
from llava.settings import GenerationConfig
from llava.model.families import synthetic_names

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.run", description=__doc__)
    parser.add_argument("--model-path", "--model_path", required=True,
                        help="checkpoint folder or hub id, or a random model for trials: "
                             + ", ".join(n for n in synthetic_names() if n.startswith("tiny")))
    parser.add_argument("--image-file", "--image_file", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--conv-mode", "--conv_mode", default=None,
                        help="default: vicuna_v1 (LLaVA); none for InstructBLIP and Qwen2-VL (raw question, chat template)")
    parser.add_argument("--image-aspect", "--image_aspect", choices=ASPECT_MODES, default=None,
                        help="default: the checkpoint's own (pad for LLaVA-1.5, anyres for LLaVA-NeXT)")
    parser.add_argument("--min-pixels", "--min_pixels", type=int, default=None,
                        help="Qwen2-VL: fewest pixels of the resized image (default: the checkpoint's)")
    parser.add_argument("--max-pixels", "--max_pixels", type=int, default=None,
                        help="Qwen2-VL: most pixels of the resized image (default: the checkpoint's)")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", "--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="for sampling")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="default: float16 on GPU, float32 on CPU")
    parser.add_argument("--attn", choices=("sdpa", "eager"), default=None, help="default: sdpa on GPU, eager on CPU")
    return parser


def answer(args: argparse.Namespace, config: GenerationConfig) -> str:
    import torch

    from llava.generation import generate
    from llava.batch import PromptBatch
    from llava.mm_utils import load_image
    from llava.model.builder import inspect_checkpoint, load_model

    pixels = {"min_pixels": args.min_pixels, "max_pixels": args.max_pixels}
    inspect_checkpoint(args.model_path).check_settings(args.image_aspect, args.conv_mode, **pixels)  # before loading
    if args.conv_mode is not None:
        get_conv_template(args.conv_mode)
    load_image(args.image_file)
    loaded = load_model(args.model_path, args.device, args.dtype, args.attn)
    family, model, tokenizer, processor = loaded.family, loaded.model, loaded.tokenizer, loaded.image_processor
    own = {name: value for name, value in pixels.items() if name in family.spec.image_settings}
    preprocessing = family.preprocessing(model, processor, args.image_aspect, **own)
    image = load_image(args.image_file, preprocessing)
    prompt = family.format_prompt(model, args.query, args.conv_mode, tokenizer)
    batch = PromptBatch(model, tokenizer, processor, [prompt], family.pixel_values(model, processor, [image], preprocessing))
    config = dataclasses.replace(config, eos_token_ids=family.eos_token_ids(model, tokenizer))
    generator = torch.Generator(device=loaded.device).manual_seed(args.seed)
    output = generate(batch, config, generators=[generator])
    return tokenizer.decode(output.sequences[0], skip_special_tokens=True).strip()


def check_settings(args: argparse.Namespace) -> GenerationConfig:
    """Values that cannot run, before anything is loaded; the decoding settings (validated by
    :class:`~llava.settings.GenerationConfig`, the one home of those checks)."""
    if not args.query.strip():
        raise ValueError("--query is empty: ask a question")
    if not math.isfinite(args.temperature) or (args.top_p is not None and not math.isfinite(args.top_p)):
        raise ValueError("--temperature and --top-p must be finite numbers")
    if args.temperature < 0 or 0 < args.temperature < MIN_TEMPERATURE:  # the flag's 0 means greedy decoding
        raise ValueError(f"--temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}, got {args.temperature}")
    sampling = args.temperature > 0
    if args.top_p is not None and not sampling:
        raise ValueError(f"--top-p {args.top_p} has no effect with greedy decoding (--temperature 0); drop it or "
                         "set a temperature")
    return GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=sampling,
                            temperature=args.temperature if sampling else 1.0, top_p=args.top_p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(answer(args, check_settings(args)))
    except (ValueError, OSError) as e:  # ImageLoadError and CheckpointError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
