"""The papers' protocols, shared by the benchmarks of one kind (``sparc-official.md`` section 2,
``avisc-official.md`` section 3, ``llava-bench.md``). What the model family decides on top (no LLaVA template for
InstructBLIP's raw question or Qwen2-VL's chat template, the checkpoint's pixel bounds) is applied when a run is
resolved (:func:`eval.benchmarks.resolve.apply_family`).

- captioning: "Please describe this image in detail.", ``vicuna_v1``, the model's own preprocessing (pad for
  LLaVA-1.5, anyres for LLaVA-NeXT), greedy, 512 new tokens, seed 42;
- yes/no: the raw question, ``llava_v1``, CLIP resize + center-crop for LLaVA-1.5, sampling at temperature 1
  (InstructBLIP: LAVIS' top-k 50 and 63 new tokens), 64 new tokens, seed 42;
- open-ended (LLaVA-Bench, AvisC's ``llava_bench_llava.py``): the question, ``llava_v1``, center crop, sampling at
  temperature 1 with top-p 1, 64 new tokens, seed 42.
"""
from __future__ import annotations

from eval.benchmarks.spec import PerFamily

CAPTION_PROMPT = "Please describe this image in detail."

CAPTIONING = {
    "conv_mode": "vicuna_v1",  # for the families with LLaVA templates (the others: apply_family)
    "prompt": CAPTION_PROMPT,
    "image_aspect": None,  # the model's own: pad (LLaVA-1.5), anyres (LLaVA-NeXT), 224 (InstructBLIP)
    "min_pixels": None,  # Qwen2-VL: the checkpoint's processor bounds
    "max_pixels": None,
    "decoding": "greedy",
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "max_new_tokens": 512,
    "seed": 42,
    "num_beams": 1,
    "text_cut": None,  # an answer is the whole decoded text (OPERA's own protocol cuts it at "###")
}
YES_NO = {
    "conv_mode": "llava_v1",
    "prompt": None,  # the question of each sample
    "image_aspect": PerFamily("crop", {"llava_next": None}),  # LLaVA-NeXT: its own anyres
    "min_pixels": None,
    "max_pixels": None,
    "decoding": "sample",
    "temperature": 1.0,
    # LAVIS' InstructBLIP generate: top_k left at transformers' default 50; max_length 64 counts the BOS it seeds
    "top_k": PerFamily(None, {"instructblip": 50}),
    "top_p": None,
    "max_new_tokens": PerFamily(64, {"instructblip": 63}),
    "seed": 42,
    "num_beams": 1,
    "text_cut": None,
}
OPEN_ENDED = {**YES_NO, "image_aspect": "crop", "top_k": None, "top_p": 1.0, "max_new_tokens": 64}
"""AvisC's LLaVA-Bench generation (``llava_bench_eval.sh``): ``llava_v1``, ``image_processor.preprocess`` (resize +
center crop, no pad), ``do_sample=True``, temperature 1, top-p 1, top-k None, 64 new tokens, seed 42."""
AVISC_SCRIPT_SEED = {"scripts": {"seed": 55}, "official": {"seed": 55}}  # experiments/cd_scripts/mme_eval.sh
