#!/usr/bin/env bash
# POPE (COCO, A-OKVQA, GQA x random, popular, adversarial), InstructBLIP: each method of METHODS (default: the
# baseline, VCD, M3ID, AvisC) with PRESET, each scored, then the paper-style table.
# Its variables, the shared knobs and their defaults: bash scripts/instructblip/pope.sh --help (README, section Scripts).
# Trial: a random tiny model, 4 questions of one setting, 8 tokens
#   MODEL_PATH=tiny-instructblip POPE_DATASETS=coco POPE_SETTINGS=random LIMIT=4 MAX_NEW_TOKENS=8 COCO_IMAGES=/data/coco/val2014 SAVE_PATH=/tmp/try/instructblip_pope bash scripts/instructblip/pope.sh
source "$(dirname "$0")/../lib/vqa.sh"
defaults MODEL_PATH=Salesforce/instructblip-vicuna-7b SAVE_PATH=results/instructblip-vicuna-7b/pope
defaults COCO_IMAGES=data/coco/val2014 GQA_IMAGES=data/gqa/images
run_pope
