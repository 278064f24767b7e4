#!/usr/bin/env bash
# COCO val2014 captioning, Qwen2-VL (the SPARC paper's third model; a Qwen2.5-VL checkpoint works through MODEL_PATH):
# each method of METHODS (default: the baseline and SPARC) with PRESET, scored with CHAIR, then the paper-style table.
# No paper gives SPARC's values for Qwen2-VL: the family default is used and recorded as such.
# Its variables, the shared knobs and their defaults: bash scripts/qwen2_vl/captioning_coco.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens
#   MODEL_PATH=tiny-qwen2-vl LIMIT=2 MAX_NEW_TOKENS=16 COCO_IMAGES=/data/coco/val2014 SAVE_PATH=/tmp/try/qwen2_vl_coco bash scripts/qwen2_vl/captioning_coco.sh
source "$(dirname "$0")/../lib/caption.sh"
defaults MODEL_PATH=Qwen/Qwen2-VL-7B-Instruct SAVE_PATH=results/qwen2-vl-7b-instruct/coco
defaults COCO_IMAGES=data/coco/val2014 COCO_ANNOTATIONS=
caption_all coco --image-folder "$COCO_IMAGES"
