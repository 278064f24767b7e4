#!/usr/bin/env bash
# SPARC, COCO val2014 (CHAIR): the baseline (alpha 1.0) and SPARC with the paper's LLaVA-1.5 parameters, then CHAIR.
# Every variable can be overridden from the environment, e.g. `COCO_IMAGES=/data/coco/val2014 bash scripts/llava/captioning_coco.sh`.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
COCO_IMAGES=${COCO_IMAGES:-data/coco/val2014}
COCO_ANNOTATIONS=${COCO_ANNOTATIONS:-}   # optional: instances_/captions_{train,val}2014.json to rebuild the CHAIR ground truth
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/coco}
NUM_SAMPLES=${NUM_SAMPLES:-500}     # the official subset size; drawn from the sorted folder with SEED
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}           # outputs do not depend on it; lower it if GPU memory is short
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
# SPARC (LLaVA-1.5 preset of the official scripts)
ALPHA=${ALPHA:-1.1}; BETA=${BETA:-0.1}; TAU=${TAU:-1.5}
SELECTED_LAYER=${SELECTED_LAYER:-20}; START_LAYER=${START_LAYER:-0}; END_LAYER=${END_LAYER:-31}
LAUNCH=${LAUNCH:-python -m}           # several GPUs: LAUNCH="accelerate launch -m"

for RUN in baseline sparc; do
  RUN_ALPHA=$([ "$RUN" = baseline ] && echo 1.0 || echo "$ALPHA")
  $LAUNCH eval.caption --model-path "$MODEL_PATH" --dataset-type coco --image-folder "$COCO_IMAGES" \
    --num-samples "$NUM_SAMPLES" --seed "$SEED" --batch-size "$BATCH_SIZE" --max-new-tokens "$MAX_NEW_TOKENS" \
    --alpha "$RUN_ALPHA" --beta "$BETA" --tau "$TAU" \
    --selected-layer "$SELECTED_LAYER" --start-layer "$START_LAYER" --end-layer "$END_LAYER" \
    --save-path "$SAVE_PATH" --experiment-name "$RUN"
  python -m eval.chair --cap_file "$SAVE_PATH/$RUN.jsonl" --save_path "$SAVE_PATH/${RUN}_chair.json" \
    ${COCO_ANNOTATIONS:+--coco_path "$COCO_ANNOTATIONS"}
done

python -m eval.report "$SAVE_PATH"
