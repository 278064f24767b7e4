# The yes/no scripts' part of the shared library (scripts/*/{pope,mme,amber}.sh), with lib/run.sh: their knobs, the
# help of their data variables, and the runs of each benchmark, each scored with the script's `score` function.
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"

knob METHODS "baseline vcd m3id avisc" "any registered methods (python -m eval.methods)"
knob POPE_DATASETS "coco aokvqa gqa" "POPE question sets (coco, aokvqa: COCO images; gqa: GQA images)" pope
knob POPE_SETTINGS "random popular adversarial" "POPE settings of each question set" pope
knob SEEDS "42 43 44 45 46" "one run per seed, scored together (mean +- std); the shipped script: SEEDS=55" mme
describe COCO_IMAGES "COCO val2014 images (POPE coco and aokvqa questions)"
describe GQA_IMAGES "GQA images (POPE gqa questions)"
describe MME_ROOT "MME_Benchmark_release_version (images as <task>/<image> or <task>/images/<image>)"
describe MME_GT "MME ground truth: the release folder or the eval tool's <task>.txt files"
describe QUESTION_FILE "empty: the shipped 240-question hallucination subset; llava_mme.jsonl: all of MME"
describe QUERY_FILE "empty: the shipped query_all.json"
describe AMBER_IMAGES "AMBER images"
describe LLAVA_BENCH "the llava-bench-in-the-wild folder: questions.jsonl, context.jsonl, answers_gpt4.jsonl, images/"
knob LLAVA_BENCH_JUDGE "" "the LLaVA-Bench judge (empty: the scorer's, gpt-4-0613)" llava_bench

# answer METHOD EXPERIMENT ARGS...: one run of eval.vqa.
answer() {
  local method=$1 name=$2
  shift 2
  run_args "$method"
  child $LAUNCH eval.vqa "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$name"
}

# each_method EXPERIMENT SCORER SCORE_ARGS ARGS...: every method of METHODS answers (run <method>_EXPERIMENT) and is
# scored by `SCORER NAME`; with SWEEP, the sweeps instead (their points scored with SCORE_ARGS, shell-quoted).
each_method() {
  local experiment=$1 scorer=$2 score_args=$3 method
  shift 3
  if [ -n "$SWEEP" ]; then
    sweep vqa "$experiment" "$score_args" "$@"
    return
  fi
  for method in $METHODS; do
    answer "$method" "${method}_$experiment" "$@"
    "$scorer" "${method}_$experiment"
  done
}

# POPE: every method on the chosen settings (COCO and A-OKVQA on COCO images, GQA on GQA images), each scored.
run_pope() {
  local dataset setting images
  begin pope
  for dataset in $POPE_DATASETS; do
    case $dataset in coco|aokvqa|gqa) ;; *) fail "POPE_DATASETS: unknown dataset '$dataset' (coco, aokvqa, gqa)" ;; esac
  done
  for setting in $POPE_SETTINGS; do
    case $setting in random|popular|adversarial) ;; *) fail "POPE_SETTINGS: unknown setting '$setting' (random, popular, adversarial)" ;; esac
  done
  dataset=${POPE_DATASETS%% *} setting=${POPE_SETTINGS%% *}
  images=$([ "$dataset" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
  check_runs eval.vqa --benchmark pope --image-folder "$images" --pope-split "$dataset/$setting" || return
  for dataset in $POPE_DATASETS; do
    images=$([ "$dataset" = gqa ] && echo "$GQA_IMAGES" || echo "$COCO_IMAGES")
    for setting in $POPE_SETTINGS; do
      each_method "${dataset}_pope_${setting}" score_pope "" --benchmark pope --image-folder "$images" \
        --pope-split "$dataset/$setting"
    done
  done
  finish
}

# score_pope NAME: POPE of one run.
score_pope() {
  python -m eval.pope --answers "$SAVE_PATH/$1.jsonl" --save_path "$SAVE_PATH/$1_pope.json"
}

# MME: every method with every seed of SEEDS, scored together (mean +- std); with SWEEP, the sweeps at the first seed.
# The ground truth is checked before the first run.
run_mme() {
  local method seed answers SEED=  # each run's seed is one of SEEDS
  begin mme
  set -- --benchmark mme --image-folder "$MME_ROOT" ${QUESTION_FILE:+--question-file "$QUESTION_FILE"}
  check_runs eval.vqa "$@" || return
  check_mme_gt
  if [ -n "$SWEEP" ]; then
    sweep vqa mme "$(quoted --gt_dir "$MME_GT")" "$@" --seed "${SEEDS%% *}"
    finish
    return
  fi
  for method in $METHODS; do
    answers=()
    for seed in $SEEDS; do
      answer "$method" "${method}_mme_seed${seed}" "$@" --seed "$seed"
      answers+=("$SAVE_PATH/${method}_mme_seed${seed}.jsonl")
    done
    python -m eval.mme --answers "${answers[@]}" --gt_dir "$MME_GT" --save_path "$SAVE_PATH/${method}_mme.json"
  done
  finish
}

# check_mme_gt: MME_GT holds MME ground truth for the hallucination tasks, in the eval tool's layout (<task>.txt) or
# the release folder's (<task>/questions_answers_YN/*.txt or <task>/*.txt); one line naming the folder if not.
check_mme_gt() {
  local task
  for task in existence count position color; do
    if [ -f "$MME_GT/$task.txt" ] || compgen -G "$MME_GT/$task/questions_answers_YN/*.txt" > /dev/null \
       || compgen -G "$MME_GT/$task/*.txt" > /dev/null; then
      return 0
    fi
  done
  fail "MME_GT=$MME_GT: $([ -d "$MME_GT" ] && echo "no MME ground truth in this folder" || echo "no such folder");" \
       "expected the eval tool's existence.txt, count.txt, position.txt, color.txt, or the release folder" \
       "(MME_Benchmark_release_version) with existence/, count/, position/, color/ and their question .txt files;" \
       "set MME_GT to the folder that holds them"
}

# AMBER: every method on all queries (or QUERY_FILE), each scored.
run_amber() {
  begin amber
  set -- --benchmark amber --image-folder "$AMBER_IMAGES" ${QUERY_FILE:+--question-file "$QUERY_FILE"}
  check_runs eval.vqa "$@" || return
  each_method amber score_amber "" "$@"
  finish
}

# score_amber NAME: AMBER (all query types) of one run; AMBER's notice about word similarity (spaCy) is shown once
# per script run, not once per method.
score_amber() {
  local output status=0
  output=$(python -m eval.amber --inference_data "$SAVE_PATH/$1.jsonl" --evaluation_type a \
    --save_path "$SAVE_PATH/$1_amber.json") || status=$?
  if [ -n "${amber_notice:-}" ]; then output=$(grep -v '^!!' <<< "$output" || true); fi
  case $output in *"!! WARNING"*) amber_notice=1 ;; esac
  printf '%s\n' "$output"
  return "$status"
}

# LLaVA-Bench (In-the-Wild): every method on its 60 questions, each reviewed by the judge against GPT-4's answers
# (relative score per category), then the table.
run_llava_bench() {
  begin llava_bench
  set -- --benchmark llava_bench --image-folder "$LLAVA_BENCH/images" --question-file "$LLAVA_BENCH/questions.jsonl"
  check_runs eval.vqa "$@" || return
  llava_bench_args
  judge_args
  each_method llava_bench score_llava_bench "$(quoted "${LLAVA_BENCH_ARGS[@]}" "${JUDGE_ARGS[@]}")" "$@"
  finish
}

# llava_bench_args: what the LLaVA-Bench scorer needs beyond the answers (in LLAVA_BENCH_ARGS).
llava_bench_args() {
  LLAVA_BENCH_ARGS=(--question "$LLAVA_BENCH/questions.jsonl" --context "$LLAVA_BENCH/context.jsonl"
                    --reference "$LLAVA_BENCH/answers_gpt4.jsonl" ${LLAVA_BENCH_JUDGE:+--model "$LLAVA_BENCH_JUDGE"})
}

# score_llava_bench NAME: the judge's review of one run (see `judged` in lib/run.sh).
score_llava_bench() {
  judged LLaVA-Bench "$1" answers python -m eval.llava_bench --answers "$SAVE_PATH/$1.jsonl" "${LLAVA_BENCH_ARGS[@]}"
}
