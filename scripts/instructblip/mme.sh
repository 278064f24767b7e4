#!/usr/bin/env bash
# MME hallucination subset (existence, count, position, color), InstructBLIP: each method of METHODS (default: the
# baseline, VCD, M3ID, AvisC) with PRESET over SEEDS, scored together (mean +- std), then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/instructblip/mme.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 questions, one seed, 8 tokens
#   MODEL_PATH=tiny-instructblip SEEDS=42 LIMIT=4 MAX_NEW_TOKENS=8 MME_ROOT=/data/MME_Benchmark_release_version SAVE_PATH=/tmp/try/instructblip_mme bash scripts/instructblip/mme.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=Salesforce/instructblip-vicuna-7b SAVE_PATH=results/instructblip-vicuna-7b/mme
defaults MME_ROOT=data/MME_Benchmark_release_version QUESTION_FILE=
defaults MME_GT="$MME_ROOT"
run_mme
