#!/usr/bin/env bash
# MME hallucination subset (existence, count, position, color), LLaVA-1.5: each method of METHODS (default: the
# baseline, VCD, M3ID, AvisC) with PRESET over SEEDS, scored together (mean +- std), then the paper-style table.
# Every variable can be set from the environment, e.g. MME_ROOT=/data/MME_Benchmark_release_version bash scripts/llava/mme.sh
# Try it in two minutes (random tiny model, 4 questions, one seed, 8 tokens):
#   MODEL_PATH=tiny SEEDS=42 LIMIT=4 MAX_NEW_TOKENS=8 MME_ROOT=/data/MME_Benchmark_release_version SAVE_PATH=/tmp/try bash scripts/llava/mme.sh
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
MME_ROOT=${MME_ROOT:-data/MME_Benchmark_release_version}
MME_GT=${MME_GT:-$MME_ROOT}        # MME release folder or the eval tool's ground-truth txt files
QUESTION_FILE=${QUESTION_FILE:-}     # default: the shipped 240-question hallucination subset; llava_mme.jsonl for all of MME
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/mme}
SEEDS=${SEEDS:-"42 43 44 45 46"}     # the paper reports mean +- std over several seeds
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
run_mme
report
