#!/usr/bin/env bash
# SPARC, DOCCI, LLaVA-1.5: the baseline (alpha 1.0) and SPARC with the paper's parameters, then CLAIR.
# Every variable can be overridden from the environment, e.g. `IMAGE_FOLDER=/data/DOCCI/images ANNOTATION_FILE=/data/DOCCI/docci_descriptions.jsonlines bash scripts/llava/captioning_docci.sh`.
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}
IMAGE_FOLDER=${IMAGE_FOLDER:-data/DOCCI/images}
ANNOTATION_FILE=${ANNOTATION_FILE:-data/DOCCI/docci_descriptions.jsonlines}
SAVE_PATH=${SAVE_PATH:-results/llava-v1.5-7b/docci}
NUM_SAMPLES=${NUM_SAMPLES:-500}     # the official draw: Random(SEED).sample of all lines
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}           # outputs do not depend on it; lower it if GPU memory is short
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
# SPARC (LLaVA-1.5 preset of the official scripts)
ALPHA=${ALPHA:-1.1}; BETA=${BETA:-0.1}; TAU=${TAU:-1.5}
SELECTED_LAYER=${SELECTED_LAYER:-20}; START_LAYER=${START_LAYER:-0}; END_LAYER=${END_LAYER:-31}
LAUNCH=${LAUNCH:-python -m}           # several GPUs: LAUNCH="accelerate launch -m"
# CLAIR judge (the key is read from the environment variable named here, never from the command line)
JUDGE_MODEL=${JUDGE_MODEL:-gpt-4o}
JUDGE_URL=${JUDGE_URL:-}                # e.g. http://localhost:8000/v1 for a local OpenAI-compatible judge
API_KEY_ENV=${API_KEY_ENV:-OPENAI_API_KEY}

source "$(dirname "$0")/../lib/sparc.sh"
score() { score_clair "$1" docci; }
caption_baseline_and_sparc --dataset-type docci --image-folder "$IMAGE_FOLDER" --annotation-file "$ANNOTATION_FILE"
python -m eval.report "$SAVE_PATH"
