#!/usr/bin/env bash
# Caption a few images of your own (any file names) with and without SPARC, print the captions side by side, and draw
# what SPARC amplified. Example: IMAGE_FOLDER=~/pictures bash scripts/sparc_demo.sh
# Its variables, the shared knobs and their defaults: bash scripts/sparc_demo.sh --help (README, section Scripts).
# Trial: a random tiny model, 2 images, 16 tokens
#   MODEL_PATH=tiny NUM_IMAGES=2 MAX_NEW_TOKENS=16 IMAGE_FOLDER=path/to/photos SAVE_PATH=/tmp/try/sparc_demo bash scripts/sparc_demo.sh
source "$(dirname "$0")/lib/run.sh"
describe IMAGE_FOLDER "a folder of images, any names (required)"
describe NUM_IMAGES "how many of them: the first, by name (LIMIT, if set, wins)"
# MODEL_PATH: or liuhaotian/llava-v1.6-vicuna-7b (SPARC's preset follows the family)
defaults MODEL_PATH=liuhaotian/llava-v1.5-7b SAVE_PATH=results/sparc_demo IMAGE_FOLDER= NUM_IMAGES=4
begin folder
[ -n "$IMAGE_FOLDER" ] || fail "set IMAGE_FOLDER to a folder of images"

for METHOD in baseline sparc; do
  run_args "$METHOD"
  [ -n "$LIMIT" ] || RUN_ARGS+=(--limit "$NUM_IMAGES")
  child $LAUNCH eval.caption "${RUN_ARGS[@]}" --dataset-type folder --image-folder "$IMAGE_FOLDER" \
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
from eval.benchmarks.samples import image_files
first = json.loads(Path(sys.argv[1], "sparc.jsonl").read_text().splitlines()[0])["image_id"]
print(next(name for name in image_files(Path(sys.argv[2]), []) if Path(name).stem == first))
PY
)
TOKENS=${MAX_NEW_TOKENS:-96}
python -m eval.figures sparc --model-path "$MODEL_PATH" --image-file "$IMAGE_FOLDER/$FIRST_IMAGE" --preset "$PRESET" \
  --max-new-tokens "$(( TOKENS < 96 ? TOKENS : 96 ))" --out "$SAVE_PATH/sparc_selections.png"
echo "SPARC's selections drawn in $SAVE_PATH/sparc_selections.png"
