#!/usr/bin/env bash
# IIW-400 captioning, LLaVA-NeXT: each method of METHODS (default: the baseline and SPARC) with PRESET, scored with
# CLAIR (when the judge's key is set), then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava_next/captioning_iiw400.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens, no judge key needed
#   MODEL_PATH=tiny-next LIMIT=2 MAX_NEW_TOKENS=16 IMAGE_FOLDER=/data/DOCCI/images_aar ANNOTATION_FILE=/data/IIW-400/data.jsonl SAVE_PATH=/tmp/try/llava_next_iiw400 bash scripts/llava_next/captioning_iiw400.sh
source "$(dirname "$0")/../lib/caption.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.6-vicuna-7b SAVE_PATH=results/llava-v1.6-vicuna-7b/iiw400
defaults IMAGE_FOLDER=data/DOCCI/images_aar ANNOTATION_FILE=data/IIW-400/data.jsonl
caption_all iiw --image-folder "$IMAGE_FOLDER" --annotation-file "$ANNOTATION_FILE"
