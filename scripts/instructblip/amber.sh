#!/usr/bin/env bash
# AMBER (all 15,220 queries, evaluation type a), InstructBLIP: each method of METHODS (default: the baseline, VCD,
# M3ID, AvisC) with PRESET, each scored, then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/instructblip/amber.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 queries, 8 tokens
#   MODEL_PATH=tiny-instructblip LIMIT=4 MAX_NEW_TOKENS=8 AMBER_IMAGES=/data/AMBER/image SAVE_PATH=/tmp/try/instructblip_amber bash scripts/instructblip/amber.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=Salesforce/instructblip-vicuna-7b SAVE_PATH=results/instructblip-vicuna-7b/amber
defaults AMBER_IMAGES=data/AMBER/image QUERY_FILE=
run_amber
