# Shared by scripts/*/captioning_*.sh (sourced after their variables are set), with lib/run.sh.
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

# caption_all DATA_ARGS...: every method of METHODS on the dataset, one experiment per method, each scored with the
# script's `score METHOD` function.
caption_all() {
  local method
  check_runs eval.caption "$@" || return
  for method in $METHODS; do
    run_args "$method"
    $LAUNCH eval.caption "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$method"
    score "$method"
  done
}

# score_chair METHOD: CHAIR of a captioning run.
score_chair() {
  python -m eval.chair --cap_file "$SAVE_PATH/$1.jsonl" --save_path "$SAVE_PATH/$1_chair.json" \
    ${COCO_ANNOTATIONS:+--coco_path "$COCO_ANNOTATIONS"}
}

# score_clair METHOD DATA_TYPE: CLAIR with the judge whose key is in the variable named by API_KEY_ENV; without a key
# the captions are kept and one line says how to score them later. The subset is the run's manifest.
score_clair() {
  local command=(python -m eval.clair --annotation_file "$ANNOTATION_FILE" --answer_file "$SAVE_PATH/$1.jsonl"
                 --data_type "$2" --model "$JUDGE_MODEL" --api_key_env "$API_KEY_ENV"
                 ${JUDGE_URL:+--base_url "$JUDGE_URL"} --save_path "$SAVE_PATH/$1_clair.json")
  if [ -z "${!API_KEY_ENV:-}" ]; then
    echo "CLAIR not scored for $1 (no judge key in \$$API_KEY_ENV); captions kept in $SAVE_PATH/$1.jsonl. Score later with:" >&2
    echo "  $API_KEY_ENV=... ${command[*]}" >&2
    return
  fi
  "${command[@]}"
}
