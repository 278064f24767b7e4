#!/usr/bin/env bash
# POPE (COCO, A-OKVQA, GQA x random, popular, adversarial) with LLaVA-1.5: base, VCD, M3ID and AvisC with the paper's settings (sampling, temperature 1),
# then the POPE scorer and the paper-style table. Override any variable from the environment.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
COCO_IMAGES=${COCO_IMAGES:-data/coco/val2014}   # COCO and A-OKVQA questions
GQA_IMAGES=${GQA_IMAGES:-data/gqa/images}
# question files: the VCD copies the AvisC runs used, shipped in eval/data/pope/vcd
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/pope}
METHODS=${METHODS:-"base vcd m3id avisc"}
PRESET=${PRESET:-paper}                # paper | scripts | official (see README)
DECODING=${DECODING:-sample}           # sample (as the papers) | greedy
SEED=${SEED:-42}
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
  for DATASET in coco aokvqa gqa; do
    IMAGES=$([ "$DATASET" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
    for SETTING in random popular adversarial; do
      NAME="${METHOD}_${DATASET}_pope_${SETTING}"
      run "$METHOD" "$NAME" "$SEED" --benchmark pope --image-folder "$IMAGES" --pope-split "$DATASET/$SETTING"
      python -m eval.pope --answers "$SAVE_PATH/$NAME.jsonl" --save_path "$SAVE_PATH/${NAME}_pope.json"
    done
  done
done

python -m eval.report "$SAVE_PATH"
