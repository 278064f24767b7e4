#!/usr/bin/env bash
# MME hallucination subset (existence, count, position, color), LLaVA-1.5: each method of METHODS (default: the
# baseline, VCD, M3ID, AvisC) with PRESET over SEEDS, scored together (mean +- std), then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava/mme.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 questions, one seed, 8 tokens
#   MODEL_PATH=tiny SEEDS=42 LIMIT=4 MAX_NEW_TOKENS=8 MME_ROOT=/data/MME_Benchmark_release_version SAVE_PATH=/tmp/try/llava_mme bash scripts/llava/mme.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/llava-v1.5-7b/mme
defaults MME_ROOT=data/MME_Benchmark_release_version QUESTION_FILE=
defaults MME_GT="$MME_ROOT"
run_mme
