# Shared by scripts/{llava,instructblip}/{pope,mme,amber}.sh (sourced after their variables are set).

# method_args METHOD: the settings each method takes.
method_args() {
  case "$1" in
    avisc) echo --layer-gamma "$LAYER_GAMMA" --lamb "$LAMB" --cd-alpha "$AVISC_ALPHA" --masking-scheme "$MASKING" --cd-beta "$CD_BETA" ;;
    vcd) echo --cd-alpha "$VCD_ALPHA" --noise-step "$NOISE_STEP" --cd-beta "$CD_BETA" ;;
    m3id) echo --cd-beta "$CD_BETA" ;;
  esac
}

# answer METHOD EXPERIMENT SEED EXTRA_ARGS...: one run of eval.vqa.
answer() {
  local method=$1 name=$2 seed=$3
  shift 3
  # shellcheck disable=SC2046
  $LAUNCH eval.vqa --model-path "$MODEL_PATH" --method "$method" --preset "$PRESET" --decoding "$DECODING" \
    $(method_args "$method") --seed "$seed" --batch-size "$BATCH_SIZE" --save-path "$SAVE_PATH" \
    --experiment-name "$name" "$@"
}

# POPE: every method on the 9 settings (COCO and A-OKVQA on COCO images, GQA on GQA images), each scored.
run_pope() {
  local method dataset setting images name
  for method in $METHODS; do
    for dataset in coco aokvqa gqa; do
      images=$([ "$dataset" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
      for setting in random popular adversarial; do
        name="${method}_${dataset}_pope_${setting}"
        answer "$method" "$name" "$SEED" --benchmark pope --image-folder "$images" --pope-split "$dataset/$setting"
        python -m eval.pope --answers "$SAVE_PATH/$name.jsonl" --save_path "$SAVE_PATH/${name}_pope.json"
      done
    done
  done
}

# MME: every method with every seed of SEEDS, scored together (mean +- std).
run_mme() {
  local method seed answers
  for method in $METHODS; do
    answers=()
    for seed in $SEEDS; do
      answer "$method" "${method}_mme_seed${seed}" "$seed" --benchmark mme --image-folder "$MME_ROOT" \
        ${QUESTION_FILE:+--question-file "$QUESTION_FILE"}
      answers+=("$SAVE_PATH/${method}_mme_seed${seed}.jsonl")
    done
    python -m eval.mme --answers "${answers[@]}" --gt_dir "$MME_GT" --save_path "$SAVE_PATH/${method}_mme.json"
  done
}

# AMBER: every method on all queries, scored with evaluation type a.
run_amber() {
  local method name
  for method in $METHODS; do
    name="${method}_amber"
    answer "$method" "$name" "$SEED" --benchmark amber --image-folder "$AMBER_IMAGES" ${QUERY_FILE:+--question-file "$QUERY_FILE"}
    python -m eval.amber --inference_data "$SAVE_PATH/$name.jsonl" --evaluation_type a --save_path "$SAVE_PATH/${name}_amber.json"
  done
}
