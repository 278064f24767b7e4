#!/usr/bin/env bash
# AMBER (all 15,220 queries, evaluation type a), LLaVA-1.5: each method of METHODS (default: the baseline, VCD, M3ID,
# AvisC) with PRESET, each scored, then the paper-style table. Every variable can be set from the environment, e.g.
#   AMBER_IMAGES=/data/AMBER/image bash scripts/llava/amber.sh
# Try it in two minutes (random tiny model, 4 queries, 8 tokens):
#   MODEL_PATH=tiny LIMIT=4 MAX_NEW_TOKENS=8 AMBER_IMAGES=/data/AMBER/image SAVE_PATH=/tmp/try bash scripts/llava/amber.sh
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
AMBER_IMAGES=${AMBER_IMAGES:-data/AMBER/image}
QUERY_FILE=${QUERY_FILE:-}           # default: the shipped query_all.json
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/amber}
SEED=${SEED:-}                          # 42
METHODS=${METHODS:-"baseline vcd m3id avisc"}   # any registered methods (python -m eval.methods)
PRESET=${PRESET:-paper}                # paper | scripts (the shipped scripts' values) | official (see README)
BATCH_SIZE=${BATCH_SIZE:-8}             # outputs do not depend on it; lower it if GPU memory is short
# Empty = the benchmark's or the preset's value (each run's _results.json records the resolved value and its source).
DECODING=${DECODING:-}                  # sample (temperature 1, as the papers) | greedy
# avisc (paper preset): LAYER_GAMMA=0.5 LAMB=1.0 AVISC_ALPHA=2.5 MASKING=zeros CD_BETA=0.1
LAYER_GAMMA=${LAYER_GAMMA:-}; LAMB=${LAMB:-}; AVISC_ALPHA=${AVISC_ALPHA:-}; MASKING=${MASKING:-}
# vcd (paper preset): VCD_ALPHA=1.0 NOISE_STEP=500 CD_BETA=0.1
VCD_ALPHA=${VCD_ALPHA:-}; NOISE_STEP=${NOISE_STEP:-}; CD_BETA=${CD_BETA:-}   # CD_BETA: every contrastive method
# any method's parameters: <METHOD>_ARGS="name=value,..." (e.g. SPARC_ARGS="tau=2.0", M3ID_ARGS="m3id_lambda=0.02")
# trial knobs: LIMIT (first N questions of each run), MAX_NEW_TOKENS (64), DEVICE (cuda when available, else cpu), DTYPE
LIMIT=${LIMIT:-}; MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-}; DEVICE=${DEVICE:-}; DTYPE=${DTYPE:-}
LAUNCH=${LAUNCH:-python -m}            # several GPUs: LAUNCH="torchrun --nproc_per_node 8 -m" (or "accelerate launch -m")

source "$(dirname "$0")/../lib/vqa.sh"
run_amber
report
