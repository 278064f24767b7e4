#!/usr/bin/env bash
# SPARC, COCO val2014, LLaVA-NeXT: the baseline (alpha 1.0) and SPARC with the paper's parameters, then CHAIR.
# Every variable can be overridden from the environment, e.g. `COCO_IMAGES=/data/coco/val2014 bash scripts/llava_next/captioning_coco.sh`.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.6-vicuna-7b}
COCO_IMAGES=${COCO_IMAGES:-data/coco/val2014}
COCO_ANNOTATIONS=${COCO_ANNOTATIONS:-}   # optional: instances_/captions_{train,val}2014.json to rebuild the CHAIR ground truth
SAVE_PATH=${SAVE_PATH:-results/llava-v1.6-vicuna-7b/coco}
NUM_SAMPLES=${NUM_SAMPLES:-500}     # the official subset size; drawn from the sorted folder with SEED
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}           # outputs do not depend on it; lower it if GPU memory is short
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
# SPARC (LLaVA-NeXT preset of the official scripts)
ALPHA=${ALPHA:-1.1}; BETA=${BETA:-0.1}; TAU=${TAU:-4.0}
SELECTED_LAYER=${SELECTED_LAYER:-20}; START_LAYER=${START_LAYER:-0}; END_LAYER=${END_LAYER:-31}
LAUNCH=${LAUNCH:-python -m}           # several GPUs: LAUNCH="accelerate launch -m"

source "$(dirname "$0")/../lib/sparc.sh"
score() { python -m eval.chair --cap_file "$SAVE_PATH/$1.jsonl" --save_path "$SAVE_PATH/$1_chair.json" ${COCO_ANNOTATIONS:+--coco_path "$COCO_ANNOTATIONS"}; }
caption_baseline_and_sparc --dataset-type coco --image-folder "$COCO_IMAGES"
python -m eval.report "$SAVE_PATH"
