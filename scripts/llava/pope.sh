#!/usr/bin/env bash
# POPE (COCO, A-OKVQA, GQA x random, popular, adversarial), LLaVA-1.5: each method of METHODS (default: the baseline,
# VCD, M3ID, AvisC) with PRESET, each scored, then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/llava/pope.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 questions of one setting, 8 tokens
#   MODEL_PATH=tiny POPE_DATASETS=coco POPE_SETTINGS=random LIMIT=4 MAX_NEW_TOKENS=8 COCO_IMAGES=/data/coco/val2014 SAVE_PATH=/tmp/try/llava_pope bash scripts/llava/pope.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/llava-v1.5-7b/pope
defaults COCO_IMAGES=data/coco/val2014 GQA_IMAGES=data/gqa/images
run_pope
