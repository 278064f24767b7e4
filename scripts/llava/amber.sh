#!/usr/bin/env bash
# AMBER (generative and discriminative, all 15,220 queries), LLaVA-1.5: base, VCD, M3ID and AvisC with the paper's settings (sampling at temperature 1), then the
# AMBER scorer and the paper-style table. Every variable can be overridden from the environment.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
AMBER_IMAGES=${AMBER_IMAGES:-data/AMBER/image}
QUERY_FILE=${QUERY_FILE:-}           # default: the shipped query_all.json
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/amber}
METHODS=${METHODS:-"base vcd m3id avisc"}
PRESET=${PRESET:-paper}                # paper | scripts | official (see README)
DECODING=${DECODING:-sample}           # sample (as the papers) | greedy
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}
# AvisC (paper: P = 0.5, lambda = 1, alpha = 2.5); VCD (alpha 1, noise step 500); beta 0.1 for every method
LAYER_GAMMA=${LAYER_GAMMA:-0.5}; LAMB=${LAMB:-1.0}; AVISC_ALPHA=${AVISC_ALPHA:-2.5}; MASKING=${MASKING:-zeros}
VCD_ALPHA=${VCD_ALPHA:-1.0}; NOISE_STEP=${NOISE_STEP:-500}; CD_BETA=${CD_BETA:-0.1}
LAUNCH=${LAUNCH:-python -m}            # several GPUs: LAUNCH="accelerate launch -m"

source "$(dirname "$0")/../lib/avisc.sh"
run_amber
python -m eval.report "$SAVE_PATH"
