#!/usr/bin/env bash
# POPE (COCO, A-OKVQA, GQA x random, popular, adversarial), InstructBLIP: base, VCD, M3ID and AvisC with the paper's settings (sampling at temperature 1), then the
# POPE scorer and the paper-style table. Every variable can be overridden from the environment.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Salesforce/instructblip-vicuna-7b}
COCO_IMAGES=${COCO_IMAGES:-data/coco/val2014}   # COCO and A-OKVQA questions
GQA_IMAGES=${GQA_IMAGES:-data/gqa/images}
# question files: the VCD copies the AvisC runs used, shipped in eval/data/pope/vcd
SAVE_PATH=${SAVE_PATH:-results/instructblip-vicuna-7b/pope}
METHODS=${METHODS:-"base vcd m3id avisc"}
PRESET=${PRESET:-paper}                # paper | scripts | official (see README)
DECODING=${DECODING:-sample}           # sample (as the papers) | greedy
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}
# AvisC (paper: P = 0.5, lambda = 1, alpha = 3.0); VCD (alpha 1, noise step 500); beta 0.1 for every method
LAYER_GAMMA=${LAYER_GAMMA:-0.5}; LAMB=${LAMB:-1.0}; AVISC_ALPHA=${AVISC_ALPHA:-3.0}; MASKING=${MASKING:-zeros}
VCD_ALPHA=${VCD_ALPHA:-1.0}; NOISE_STEP=${NOISE_STEP:-500}; CD_BETA=${CD_BETA:-0.1}
LAUNCH=${LAUNCH:-python -m}            # several GPUs: LAUNCH="accelerate launch -m"

source "$(dirname "$0")/../lib/avisc.sh"
run_pope
python -m eval.report "$SAVE_PATH"
