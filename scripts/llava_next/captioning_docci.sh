#!/usr/bin/env bash
# DOCCI captioning, LLaVA-NeXT: each method of METHODS (default: the baseline and SPARC) with PRESET, scored with
# CLAIR (when the judge's key is set), then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava_next/captioning_docci.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens, no judge key needed
#   MODEL_PATH=tiny-next LIMIT=2 MAX_NEW_TOKENS=16 IMAGE_FOLDER=/data/DOCCI/images ANNOTATION_FILE=/data/DOCCI/docci_descriptions.jsonlines SAVE_PATH=/tmp/try/llava_next_docci bash scripts/llava_next/captioning_docci.sh
source "$(dirname "$0")/../lib/caption.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.6-vicuna-7b SAVE_PATH=results/llava-v1.6-vicuna-7b/docci
defaults IMAGE_FOLDER=data/DOCCI/images ANNOTATION_FILE=data/DOCCI/docci_descriptions.jsonlines
caption_all docci --image-folder "$IMAGE_FOLDER" --annotation-file "$ANNOTATION_FILE"
