# The captioning scripts' part of the shared library (scripts/*/captioning_*.sh), with lib/run.sh: their knobs, the
# help of their data variables, the runs and the scorers.
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

knob METHODS "baseline sparc" "any registered methods (python -m eval.methods), e.g. \"baseline sparc vcd pai opera\""
knob NUM_SAMPLES "" "empty: the benchmark's subset (drawn with SEED)"
knob JUDGE_MODEL gpt-4o "the CLAIR judge" "iiw docci"
describe COCO_IMAGES "COCO val2014 images, named like COCO_val2014_000000000139.jpg (your own photos: sparc_demo.sh)"
describe COCO_ANNOTATIONS "optional: instances_/captions_{train,val}2014.json to rebuild the CHAIR ground truth"
describe IMAGE_FOLDER "the images of ANNOTATION_FILE (IIW-400: DOCCI's images_aar; DOCCI: its images)"
describe ANNOTATION_FILE "IIW-400 data.jsonl or DOCCI docci_descriptions.jsonlines"
RUN_FLAGS+=(NUM_SAMPLES=--num-samples)

# caption_all DATASET_TYPE DATA_ARGS...: every method of METHODS on the dataset, one experiment per method, each
# scored (COCO: CHAIR; IIW-400, DOCCI: CLAIR), then the paper-style table; with SWEEP, the sweeps instead.
caption_all() {
  local method data_type=$1
  begin "$1"
  set -- --dataset-type "$@"
  check_runs eval.caption "$@" || return
  if [ -n "$SWEEP" ]; then
    sweep caption "$data_type" "$(score_args "$data_type")" "$@"
    finish
    return
  fi
  for method in $METHODS; do
    run_args "$method"
    child $LAUNCH eval.caption "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$method"
    if [ "$data_type" = coco ]; then score_chair "$method"; else score_clair "$method" "$data_type"; fi
  done
  finish
}

# chair_args, clair_args DATA_TYPE: what CHAIR and CLAIR need beyond a run's answers (in CHAIR_ARGS, CLAIR_ARGS).
chair_args() { CHAIR_ARGS=(${COCO_ANNOTATIONS:+--coco_path "$COCO_ANNOTATIONS"}); }
clair_args() { CLAIR_ARGS=(--annotation_file "$ANNOTATION_FILE" --data_type "$1" --model "$JUDGE_MODEL"); }

# score_args DATA_TYPE: the scorer's arguments beyond the answers, shell-quoted (a sweep's --score-args).
score_args() {
  if [ "$1" = coco ]; then
    chair_args
    quoted "${CHAIR_ARGS[@]}"
  else
    clair_args "$1"
    judge_args
    quoted "${CLAIR_ARGS[@]}" "${JUDGE_ARGS[@]}"
  fi
}

# score_chair METHOD: CHAIR of a captioning run.
score_chair() {
  chair_args
  python -m eval.chair --cap_file "$SAVE_PATH/$1.jsonl" --save_path "$SAVE_PATH/$1_chair.json" "${CHAIR_ARGS[@]}"
}

# score_clair METHOD DATA_TYPE: CLAIR with the judge (see `judged` in lib/run.sh). The subset is the run's manifest.
score_clair() {
  clair_args "$2"
  judged CLAIR "$1" captions python -m eval.clair --answer_file "$SAVE_PATH/$1.jsonl" "${CLAIR_ARGS[@]}" \
    --save_path "$SAVE_PATH/$1_clair.json"
}
