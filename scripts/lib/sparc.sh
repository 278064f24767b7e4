# Shared by scripts/*/captioning_*.sh (sourced after their variables are set).

# caption_baseline_and_sparc DATA_ARGS...: caption with alpha 1.0 (the baseline) and with ALPHA (SPARC), then score
# each run with the script's `score RUN` function.
caption_baseline_and_sparc() {
  local run run_alpha
  for run in baseline sparc; do
    run_alpha=$([ "$run" = baseline ] && echo 1.0 || echo "$ALPHA")
    $LAUNCH eval.caption --model-path "$MODEL_PATH" "$@" \
      --num-samples "$NUM_SAMPLES" --seed "$SEED" --batch-size "$BATCH_SIZE" --max-new-tokens "$MAX_NEW_TOKENS" \
      --alpha "$run_alpha" --beta "$BETA" --tau "$TAU" \
      --selected-layer "$SELECTED_LAYER" --start-layer "$START_LAYER" --end-layer "$END_LAYER" \
      --save-path "$SAVE_PATH" --experiment-name "$run"
    score "$run"
  done
}

# score_clair RUN DATA_TYPE: CLAIR with the judge whose key is in the environment variable named by API_KEY_ENV.
score_clair() {
  if [ -z "${!API_KEY_ENV:-}" ]; then
    echo "CLAIR skipped for $1: set $API_KEY_ENV (the judge's API key) to score" >&2
    return
  fi
  python -m eval.clair --annotation_file "$ANNOTATION_FILE" --answer_file "$SAVE_PATH/$1.jsonl" --data_type "$2" \
    --model "$JUDGE_MODEL" --api_key_env "$API_KEY_ENV" ${JUDGE_URL:+--base_url "$JUDGE_URL"} \
    --seed "$SEED" --save_path "$SAVE_PATH/$1_clair.json"
}
