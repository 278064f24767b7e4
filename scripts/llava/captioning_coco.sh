#!/usr/bin/env bash
# COCO val2014 captioning, LLaVA-1.5: each method of METHODS (default: the baseline and SPARC) with PRESET, scored
# with CHAIR, then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava/captioning_coco.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens
#   MODEL_PATH=tiny LIMIT=2 MAX_NEW_TOKENS=16 COCO_IMAGES=/data/coco/val2014 SAVE_PATH=/tmp/try/llava_coco bash scripts/llava/captioning_coco.sh
source "$(dirname "$0")/../lib/caption.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/llava-v1.5-7b/coco
defaults COCO_IMAGES=data/coco/val2014 COCO_ANNOTATIONS=
caption_all coco --image-folder "$COCO_IMAGES"
