# Shared by scripts/{llava,instructblip}/{pope,mme,amber}.sh (sourced after their variables are set), with lib/run.sh.
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

# answer METHOD EXPERIMENT ARGS...: one run of eval.vqa.
answer() {
  local method=$1 name=$2
  shift 2
  run_args "$method"
  $LAUNCH eval.vqa "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$name"
}

# POPE: every method on the 9 settings (COCO and A-OKVQA on COCO images, GQA on GQA images), each scored.
run_pope() {
  local method dataset setting images name
  for dataset in $POPE_DATASETS; do
    case $dataset in coco|aokvqa|gqa) ;; *) echo "error: POPE_DATASETS: unknown dataset '$dataset' (coco, aokvqa, gqa)" >&2; return 2 ;; esac
  done
  for setting in $POPE_SETTINGS; do
    case $setting in random|popular|adversarial) ;; *) echo "error: POPE_SETTINGS: unknown setting '$setting' (random, popular, adversarial)" >&2; return 2 ;; esac
  done
  dataset=${POPE_DATASETS%% *} setting=${POPE_SETTINGS%% *}
  images=$([ "$dataset" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
  check_runs eval.vqa --benchmark pope --image-folder "$images" --pope-split "$dataset/$setting" || return
  for method in $METHODS; do
    for dataset in $POPE_DATASETS; do
      images=$([ "$dataset" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
      for setting in $POPE_SETTINGS; do
        name="${method}_${dataset}_pope_${setting}"
        answer "$method" "$name" --benchmark pope --image-folder "$images" --pope-split "$dataset/$setting"
        python -m eval.pope --answers "$SAVE_PATH/$name.jsonl" --save_path "$SAVE_PATH/${name}_pope.json"
      done
    done
  done
}

# MME: every method with every seed of SEEDS, scored together (mean +- std).
run_mme() {
  local method seed answers SEED=  # each run's seed is one of SEEDS
  check_runs eval.vqa --benchmark mme --image-folder "$MME_ROOT" ${QUESTION_FILE:+--question-file "$QUESTION_FILE"} || return
  for method in $METHODS; do
    answers=()
    for seed in $SEEDS; do
      answer "$method" "${method}_mme_seed${seed}" --benchmark mme --image-folder "$MME_ROOT" --seed "$seed" \
        ${QUESTION_FILE:+--question-file "$QUESTION_FILE"}
      answers+=("$SAVE_PATH/${method}_mme_seed${seed}.jsonl")
    done
    python -m eval.mme --answers "${answers[@]}" --gt_dir "$MME_GT" --save_path "$SAVE_PATH/${method}_mme.json"
  done
}

# AMBER: every method on all queries, scored with evaluation type a.
run_amber() {
  local method name
  check_runs eval.vqa --benchmark amber --image-folder "$AMBER_IMAGES" ${QUERY_FILE:+--question-file "$QUERY_FILE"} || return
  for method in $METHODS; do
    name="${method}_amber"
    answer "$method" "$name" --benchmark amber --image-folder "$AMBER_IMAGES" ${QUERY_FILE:+--question-file "$QUERY_FILE"}
    python -m eval.amber --inference_data "$SAVE_PATH/$name.jsonl" --evaluation_type a --save_path "$SAVE_PATH/${name}_amber.json"
  done
}
