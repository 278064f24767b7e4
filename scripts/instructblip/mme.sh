#!/usr/bin/env bash
# MME hallucination subset (existence, count, position, color), InstructBLIP: base, VCD, M3ID and AvisC with the paper's settings (sampling at temperature 1), then the
# MME scorer and the paper-style table. Every variable can be overridden from the environment.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Salesforce/instructblip-vicuna-7b}
MME_ROOT=${MME_ROOT:-data/MME_Benchmark_release_version}
MME_GT=${MME_GT:-$MME_ROOT}        # MME release folder or the eval tool's ground-truth txt files
QUESTION_FILE=${QUESTION_FILE:-}     # default: the shipped 240-question hallucination subset; llava_mme.jsonl for all of MME
SAVE_PATH=${SAVE_PATH:-results/instructblip-vicuna-7b/mme}
METHODS=${METHODS:-"base vcd m3id avisc"}
PRESET=${PRESET:-paper}                # paper | scripts | official (see README)
DECODING=${DECODING:-sample}           # sample (as the papers) | greedy
SEEDS=${SEEDS:-"42 43 44 45 46"}     # the paper reports mean +- std over several seeds
BATCH_SIZE=${BATCH_SIZE:-8}
# AvisC (paper: P = 0.5, lambda = 1, alpha = 3.0); VCD (alpha 1, noise step 500); beta 0.1 for every method
LAYER_GAMMA=${LAYER_GAMMA:-0.5}; LAMB=${LAMB:-1.0}; AVISC_ALPHA=${AVISC_ALPHA:-3.0}; MASKING=${MASKING:-zeros}
VCD_ALPHA=${VCD_ALPHA:-1.0}; NOISE_STEP=${NOISE_STEP:-500}; CD_BETA=${CD_BETA:-0.1}
LAUNCH=${LAUNCH:-python -m}            # several GPUs: LAUNCH="accelerate launch -m"

source "$(dirname "$0")/../lib/avisc.sh"
run_mme
python -m eval.report "$SAVE_PATH"
