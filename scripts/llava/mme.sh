#!/usr/bin/env bash
# MME hallucination subset (existence, count, position, color) with LLaVA-1.5: base, VCD, M3ID and AvisC with the paper's settings (sampling, temperature 1),
# then the MME scorer and the paper-style table. Override any variable from the environment.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
MME_ROOT=${MME_ROOT:-data/MME_Benchmark_release_version}
MME_GT=${MME_GT:-$MME_ROOT}        # MME release folder or the eval tool's ground-truth txt files
QUESTION_FILE=${QUESTION_FILE:-}     # default: the shipped 240-question hallucination subset; llava_mme.jsonl for all of MME
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/mme}
METHODS=${METHODS:-"base vcd m3id avisc"}
PRESET=${PRESET:-paper}                # paper | scripts | official (see README)
DECODING=${DECODING:-sample}           # sample (as the papers) | greedy
SEEDS=${SEEDS:-"42 43 44 45 46"}     # the paper reports mean +- std over several seeds
BATCH_SIZE=${BATCH_SIZE:-8}
# AvisC (paper: P = 0.5, lambda = 1, alpha = 2.5); VCD (alpha 1, noise step 500); beta 0.1 for every method
LAYER_GAMMA=${LAYER_GAMMA:-0.5}; LAMB=${LAMB:-1.0}; AVISC_ALPHA=${AVISC_ALPHA:-2.5}; MASKING=${MASKING:-zeros}
VCD_ALPHA=${VCD_ALPHA:-1.0}; NOISE_STEP=${NOISE_STEP:-500}; CD_BETA=${CD_BETA:-0.1}
LAUNCH=${LAUNCH:-python -m}            # several GPUs: LAUNCH="accelerate launch -m"

method_args() {  # the settings each method takes
  case "$1" in
    avisc) echo --layer-gamma "$LAYER_GAMMA" --lamb "$LAMB" --cd-alpha "$AVISC_ALPHA" --masking-scheme "$MASKING" --cd-beta "$CD_BETA" ;;
    vcd) echo --cd-alpha "$VCD_ALPHA" --noise-step "$NOISE_STEP" --cd-beta "$CD_BETA" ;;
    m3id) echo --cd-beta "$CD_BETA" ;;
  esac
}

run() {  # run METHOD EXPERIMENT SEED EXTRA_ARGS...
  local method=$1 name=$2 seed=$3; shift 3
  # shellcheck disable=SC2046
  $LAUNCH eval.vqa --model-path "$MODEL_PATH" --method "$method" --preset "$PRESET" --decoding "$DECODING" \
    $(method_args "$method") --seed "$seed" --batch-size "$BATCH_SIZE" --save-path "$SAVE_PATH" \
    --experiment-name "$name" "$@"
}

for METHOD in $METHODS; do
  for SEED in $SEEDS; do
    run "$METHOD" "${METHOD}_mme_seed${SEED}" "$SEED" --benchmark mme --image-folder "$MME_ROOT" \
      ${QUESTION_FILE:+--question-file "$QUESTION_FILE"}
  done
  # shellcheck disable=SC2086
  python -m eval.mme --answers $(for SEED in $SEEDS; do echo "$SAVE_PATH/${METHOD}_mme_seed${SEED}.jsonl"; done) \
    --gt_dir "$MME_GT" --save_path "$SAVE_PATH/${METHOD}_mme.json"
done

python -m eval.report "$SAVE_PATH"
