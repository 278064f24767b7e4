#!/usr/bin/env bash
# IIW-400 captioning, Qwen2-VL (the SPARC paper's third model; a Qwen2.5-VL checkpoint works through MODEL_PATH): each
# method of METHODS (default: the baseline and SPARC) with PRESET, scored with CLAIR (when the judge's key is set),
# then the paper-style table. No paper gives SPARC's values for Qwen2-VL: the family default is used and recorded as
# such.
# Its variables, the shared knobs and their defaults: bash scripts/qwen2_vl/captioning_iiw400.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens, no judge key needed
#   MODEL_PATH=tiny-qwen2-vl LIMIT=2 MAX_NEW_TOKENS=16 IMAGE_FOLDER=/data/DOCCI/images_aar ANNOTATION_FILE=/data/IIW-400/data.jsonl SAVE_PATH=/tmp/try/qwen2_vl_iiw400 bash scripts/qwen2_vl/captioning_iiw400.sh
source "$(dirname "$0")/../lib/caption.sh"
defaults MODEL_PATH=Qwen/Qwen2-VL-7B-Instruct SAVE_PATH=results/qwen2-vl-7b-instruct/iiw400
defaults IMAGE_FOLDER=data/DOCCI/images_aar ANNOTATION_FILE=data/IIW-400/data.jsonl
caption_all iiw --image-folder "$IMAGE_FOLDER" --annotation-file "$ANNOTATION_FILE"
