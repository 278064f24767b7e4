#!/usr/bin/env bash
# Caption a few images with and without SPARC, print the captions side by side, and draw what SPARC amplified.
# Example: IMAGE_FOLDER=~/pictures bash scripts/sparc_demo.sh   (a two-minute trial: MODEL_PATH=tiny MAX_NEW_TOKENS=16)
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-liuhaotian/llava-v1.5-7b}   # or liuhaotian/llava-v1.6-vicuna-7b (SPARC's preset follows the family)
IMAGE_FOLDER=${IMAGE_FOLDER:?set IMAGE_FOLDER to a folder of images}
NUM_IMAGES=${NUM_IMAGES:-4}
PRESET=${PRESET:-paper}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
SAVE_PATH=${SAVE_PATH:-results/sparc_demo}

for METHOD in baseline sparc; do
  python -m eval.caption --model-path "$MODEL_PATH" --dataset-type folder --image-folder "$IMAGE_FOLDER" \
    --limit "$NUM_IMAGES" --method "$METHOD" --preset "$PRESET" --max-new-tokens "$MAX_NEW_TOKENS" \
    --save-path "$SAVE_PATH" --experiment-name "$METHOD"
done

python - "$SAVE_PATH" <<'PY'
import json, sys, textwrap
from pathlib import Path
folder = Path(sys.argv[1])
runs = {name: {r["image_id"]: r["caption"] for r in map(json.loads, (folder / f"{name}.jsonl").open())}
        for name in ("baseline", "sparc")}
for image_id in runs["baseline"]:
    print(f"== {image_id}")
    for name in ("baseline", "sparc"):
        print(textwrap.fill(runs[name].get(image_id, "(skipped)"), 110, initial_indent=f"{name:>9}: ", subsequent_indent=" " * 11))
PY

# the figure of the first image SPARC captioned (a skipped image has no caption), at most 96 tokens
FIRST_IMAGE=$(python - "$SAVE_PATH" "$IMAGE_FOLDER" <<'PY'
import json, sys
from pathlib import Path
from eval.datasets import image_files
first = json.loads(Path(sys.argv[1], "sparc.jsonl").read_text().splitlines()[0])["image_id"]
print(next(name for name in image_files(Path(sys.argv[2])) if Path(name).stem == first))
PY
)
python -m eval.figures sparc --model-path "$MODEL_PATH" --image-file "$IMAGE_FOLDER/$FIRST_IMAGE" --preset "$PRESET" \
  --max-new-tokens "$(( MAX_NEW_TOKENS < 96 ? MAX_NEW_TOKENS : 96 ))" --out "$SAVE_PATH/sparc_selections.png"
echo "SPARC's selections drawn in $SAVE_PATH/sparc_selections.png"
