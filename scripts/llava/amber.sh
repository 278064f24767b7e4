#!/usr/bin/env bash
# AMBER (all 15,220 queries, evaluation type a), LLaVA-1.5: each method of METHODS (default: the baseline, VCD, M3ID,
# AvisC) with PRESET, each scored, then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava/amber.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 queries, 8 tokens
#   MODEL_PATH=tiny LIMIT=4 MAX_NEW_TOKENS=8 AMBER_IMAGES=/data/AMBER/image SAVE_PATH=/tmp/try/llava_amber bash scripts/llava/amber.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/llava-v1.5-7b/amber
defaults AMBER_IMAGES=data/AMBER/image QUERY_FILE=
run_amber
