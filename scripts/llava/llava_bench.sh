#!/usr/bin/env bash
# LLaVA-Bench (In-the-Wild), LLaVA-1.5: each method of METHODS (default: the baseline, VCD, M3ID, AvisC) with PRESET on
# the 60 questions (AvisC's generation protocol), reviewed by an LLM judge against GPT-4's answers (when the judge's
# key is set), then the table of relative scores per category.
# Its variables, the shared knobs and their defaults: bash scripts/llava/llava_bench.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 questions, 8 tokens, no judge key needed
#   MODEL_PATH=tiny LIMIT=2 MAX_NEW_TOKENS=8 LLAVA_BENCH=/data/llava-bench-in-the-wild SAVE_PATH=/tmp/try/llava_bench bash scripts/llava/llava_bench.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/llava-v1.5-7b/llava_bench
defaults LLAVA_BENCH=data/llava-bench-in-the-wild
run_llava_bench
