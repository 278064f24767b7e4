# The shared library of the scripts (scripts/<model>/<benchmark>.sh, scripts/sparc_demo.sh), sourced first by each.
#
# A script holds only what is its own: its data path variables, model and save path with their defaults
# (`defaults NAME=VALUE ...`) and its run (caption_all in lib/caption.sh; run_pope, run_mme, run_amber,
# run_llava_bench in lib/vqa.sh), which scores each run with its benchmark's scorer. Every knob shared by scripts is
# declared here or in those two files, once, with its default and its help (`knob`); `bash scripts/X.sh --help`
# prints the script's variables and every knob it reads, with their defaults. Every variable is read from the environment (NAME=value bash scripts/X.sh).
#
# A method parameter variable left empty means the preset's value, a protocol knob left empty the benchmark's: a
# script passes --preset and only the values its user set. `python -m eval.methods --resolve PRESET --benchmark NAME`
# prints what a preset resolves to; each run's _results.json records every value and its source.
set -euo pipefail

script_path=$0
script_args=("$@")   # sourced without arguments: the script's own
lib_dir=$(dirname "${BASH_SOURCE[0]}")

KNOBS=()
declare -A KNOB_DEFAULT=() KNOB_HELP=() KNOB_ONLY=() DESCRIPTION=() OWN_DEFAULT=()
OWN=()

# knob NAME DEFAULT HELP [BENCHMARKS]: a variable shared by scripts (listed by --help only for BENCHMARKS, if given).
knob() {
  KNOBS+=("$1")
  KNOB_DEFAULT[$1]=$2 KNOB_HELP[$1]=$3 KNOB_ONLY[$1]=${4:-}
}

# describe NAME HELP: what a script's own variable of that name holds (printed by --help).
describe() { DESCRIPTION[$1]=$2; }

# defaults NAME=VALUE...: the script's own variables and their defaults (an empty or unset variable takes VALUE).
defaults() {
  local pair name
  for pair in "$@"; do
    name=${pair%%=*}
    OWN+=("$name")
    OWN_DEFAULT[$name]=${pair#*=}
    printf -v "$name" '%s' "${!name:-${pair#*=}}"
  done
}

knob PRESET paper "the methods' preset: paper | scripts | official | ... (python -m eval.methods lists them)"
knob BATCH_SIZE 8 "samples per batch; outputs do not depend on it (lower it if GPU memory is short)"
knob LIMIT "" "trial: only the first N samples of each run (marked in the report)"
knob MAX_NEW_TOKENS "" "empty: the benchmark's (python -m eval.caption --help, python -m eval.vqa --help)"
knob DEVICE "" "empty: cuda when available, else cpu"
knob DTYPE "" "float32 | float16 | bfloat16 (empty: float16 on a GPU, float32 on the CPU)"
knob DECODING "" "greedy | sample (empty: the benchmark's)"
knob SEED "" "subset draw and sampling (empty: the benchmark's)"
knob MIN_PIXELS "" "Qwen2-VL: fewest pixels of a resized image (empty: the checkpoint's)"
knob MAX_PIXELS "" "Qwen2-VL: most pixels of a resized image (empty: the checkpoint's)"
knob LAUNCH "python -m" "several GPUs: LAUNCH=\"torchrun --nproc_per_node 8 -m\" (or \"accelerate launch -m\")"
knob OVERWRITE "" "1: start each run again, discarding its earlier outputs (--overwrite); empty: resume"
knob SWEEP "" "a sweep instead of the plain runs: \"alpha=1.05,1.1 tau=1,2\" (each method of METHODS) or \"method=baseline,sparc,vcd\" (python -m eval.sweep --help)"
knob JUDGE_URL "" "an OpenAI-compatible judge, e.g. http://localhost:8000/v1 (empty: OpenAI's)" "iiw docci llava_bench"
knob API_KEY_ENV OPENAI_API_KEY "the variable that holds the judge's key (never taken on the command line)" \
  "iiw docci llava_bench"
describe MODEL_PATH "checkpoint folder or hub id; trials: tiny, tiny-next, tiny-instructblip, tiny-qwen2-vl (random)"
describe SAVE_PATH "output folder: one <run>.jsonl (+ _results.json, ...) per run and its scores"

# The variables that set a method's parameters (VARIABLE=parameter); empty: the preset's value. Any method also takes
# <METHOD>_ARGS="name=value,..." (e.g. PAI_ARGS="gamma=1.2"), with the method's own parameter names.
declare -A METHOD_VARIABLES=(
  [sparc]="ALPHA=alpha BETA=beta TAU=tau SELECTED_LAYER=selected_layer START_LAYER=start_layer END_LAYER=end_layer"
  [avisc]="LAYER_GAMMA=layer_gamma LAMB=lamb AVISC_ALPHA=cd_alpha MASKING=masking_scheme CD_BETA=cd_beta"
  [vcd]="VCD_ALPHA=cd_alpha NOISE_STEP=noise_step CD_BETA=cd_beta"
  [m3id]="CD_BETA=cd_beta"
)
# The runner flags of the knobs (VARIABLE=--flag), passed when the variable is set; lib/caption.sh adds its own.
RUN_FLAGS=(LIMIT=--limit MAX_NEW_TOKENS=--max-new-tokens DEVICE=--device DTYPE=--dtype DECODING=--decoding
           SEED=--seed MIN_PIXELS=--min-pixels MAX_PIXELS=--max-pixels)

# method_variables: every method parameter variable, once.
method_variables() {
  local pair
  for pair in ${METHOD_VARIABLES[*]}; do echo "${pair%%=*}"; done | sort -u
}

# begin BENCHMARK: --help, the knobs' defaults, and a warning per set variable that looks like a knob but is not one.
begin() {
  case "${script_args[*]}" in
    "") ;;
    -h|--help) usage "$1"; exit 0 ;;
    *) echo "error: $script_path takes no arguments, only variables (bash $script_path --help lists them)" >&2
       exit 2 ;;
  esac
  local name
  for name in "${KNOBS[@]}"; do printf -v "$name" '%s' "${!name:-${KNOB_DEFAULT[$name]}}"; done
  # shellcheck disable=SC2046
  python "$lib_dir/typos.py" "$script_path" "${KNOBS[@]}" "${OWN[@]}" $(method_variables) "${API_KEY_ENV:-}" \
    PROGRESS_EVERY || true
  trap 'on_signal SIGTERM 143' TERM
  trap 'on_signal SIGINT 130' INT
}

# usage BENCHMARK: the script's header, its variables and the knobs it reads, with their defaults.
usage() {
  local name
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$script_path"
  echo
  echo "Variables of this script (set them in the environment: NAME=value bash $script_path):"
  for name in "${OWN[@]}"; do show "$name" "${OWN_DEFAULT[$name]}" "${DESCRIPTION[$name]:-}"; done
  echo "Shared knobs (scripts/lib; README, section Scripts):"
  for name in "${KNOBS[@]}"; do
    case " ${KNOB_ONLY[$name]:-$1} " in *" $1 "*) show "$name" "${KNOB_DEFAULT[$name]}" "${KNOB_HELP[$name]}" ;; esac
  done
  echo "Method parameters, empty: the preset's value (python -m eval.methods --resolve ${PRESET:-${KNOB_DEFAULT[PRESET]}} --benchmark $1):"
  for name in "${!METHOD_VARIABLES[@]}"; do
    echo "  $name: ${METHOD_VARIABLES[$name]}"
  done | sort
  echo "  any method: <METHOD>_ARGS=\"name=value,...\" (e.g. SPARC_ARGS=\"tau=2.0\", PAI_ARGS=\"gamma=1.2\")"
}

# show NAME DEFAULT HELP: one line of --help.
show() {
  local value=$2
  case $value in *" "*) value="\"$value\"" ;; esac
  if [ ${#1} -gt 30 ] || [ ${#value} -gt 30 ] || [ $(( ${#1} + ${#value} )) -gt 32 ]; then
    printf '  %s\n  %-34s %s\n' "$1=$value" "" "$3"
  else
    printf '  %-34s %s\n' "$1=$value" "$3"
  fi
}

# fail MESSAGE: one line and exit status 2.
fail() {
  echo "error: $*" >&2
  exit 2
}

# run_args METHOD: sets RUN_ARGS to the method, the preset, the method's set parameters and the set knobs.
run_args() {
  local method=$1 pair variable values=() extra
  for pair in ${METHOD_VARIABLES[$method]:-}; do
    variable=${pair%%=*}
    if [ -n "${!variable:-}" ]; then values+=("${pair#*=}=${!variable}"); fi
  done
  extra="${method^^}_ARGS"
  if [ -n "${!extra:-}" ]; then values+=("${!extra}"); fi
  RUN_ARGS=(--model-path "$MODEL_PATH" --method "$method" --preset "$PRESET" --batch-size "$BATCH_SIZE")
  if [ ${#values[@]} -gt 0 ]; then RUN_ARGS+=(--method-args "$(IFS=,; echo "${values[*]}")"); fi
  for pair in "${RUN_FLAGS[@]}"; do
    variable=${pair%%=*}
    if [ -n "${!variable:-}" ]; then RUN_ARGS+=("${pair#*=}" "${!variable}"); fi
  done
  case ${OVERWRITE:-} in ""|0) ;; *) RUN_ARGS+=(--overwrite) ;; esac
}

# check_runs RUNNER ARGS...: every name of METHODS is a registered method (one line if not), and every method with its
# set parameters resolves and passes the runner's checks (values, layers, files, output folder) with these data
# arguments, before the first run starts (not hours into one).
check_runs() {
  local runner=$1 method
  shift
  # shellcheck disable=SC2086
  python -m eval.methods $METHODS > /dev/null || return
  for method in $METHODS; do
    run_args "$method"
    python -m "$runner" "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$method" --check-only \
      > /dev/null || return
  done
}

# child COMMAND...: runs COMMAND (a run) and waits for it. A SIGTERM sent to this shell alone (a scheduler, `kill`)
# is passed on to it, so that no run is left behind; see on_signal.
child_pid=
child() {
  ( trap - INT QUIT; exec "$@" ) &
  child_pid=$!
  local status=0
  wait "$child_pid" || status=$?
  child_pid=
  return "$status"
}

# on_signal NAME STATUS: SIGTERM (passed on to the run) or SIGINT (Ctrl-C reaches the run too): the run stops with its
# one line (the answers written so far are kept), then the script with the same hint and exit 143 or 130.
on_signal() {
  if [ -n "$child_pid" ]; then
    if [ "$1" = SIGTERM ]; then kill -TERM "$child_pid" 2> /dev/null || true; fi
    wait "$child_pid" 2> /dev/null || true
  fi
  echo "$script_path: stopped ($1): the answers written so far are kept; rerun the same command to resume" >&2
  exit "$2"
}

# sweep RUNNER EXPERIMENT SCORE_ARGS ARGS...: the grids of SWEEP, each point a run under SAVE_PATH scored with the
# benchmark's scorer (SCORE_ARGS: what it needs beyond the answers, shell-quoted), tabled and drawn (python -m
# eval.sweep). A grid of the method itself is one sweep named EXPERIMENT; else one sweep per method of METHODS
# (<method>_EXPERIMENT), the first with the baseline point when METHODS has baseline. A sweep with a failed point
# sets SWEEP_STATUS (the script's exit status, after the table) and the others go on.
SWEEP_STATUS=0
sweep() {
  local runner=$1 experiment=$2 score_args=$3 method grid grids=() first=1 args
  shift 3
  for grid in $SWEEP; do grids+=(--grid "$grid"); done
  case " $SWEEP" in
    *" method="*)
      run_args baseline
      args=("${RUN_ARGS[@]}")
      for grid in "${!args[@]}"; do  # the method is the grid's
        if [ "${args[$grid]:-}" = --method ]; then unset "args[$grid]" "args[$((grid + 1))]"; fi
      done
      args=("${args[@]}")
      child python -m eval.sweep "$runner" "${grids[@]}" --score-args="$score_args" "${args[@]}" "$@" \
        --save-path "$SAVE_PATH" --experiment-name "$experiment" || SWEEP_STATUS=$?
      return ;;
  esac
  local pass command
  for pass in check run; do  # every method's points checked before the first one runs
    first=1
    for method in $METHODS; do
      if [ "$method" = baseline ]; then continue; fi
      args=()
      if [ $first = 0 ] || [[ " $METHODS " != *" baseline "* ]]; then args=(--no-baseline); fi
      first=0
      run_args "$method"
      command=(python -m eval.sweep "$runner" "${grids[@]}" "${args[@]}" --score-args="$score_args" "${RUN_ARGS[@]}"
               "$@" --save-path "$SAVE_PATH" --experiment-name "${method}_$experiment")
      if [ $pass = check ]; then
        "${command[@]}" --check-only || exit 2
      else
        child "${command[@]}" || SWEEP_STATUS=$?
      fi
    done
  done
}

# finish: the table of everything scored under SAVE_PATH, then the script's exit status (a sweep's failed point: 1).
finish() {
  python -m eval.report "$SAVE_PATH"
  return "$SWEEP_STATUS"
}

# quoted ARGS...: the arguments shell-quoted on one line (nothing for none).
quoted() {
  if [ $# -gt 0 ]; then printf '%q ' "$@"; fi
}

# judged SCORER RUN KIND COMMAND...: an LLM-judge scorer of a run (with the judge's key variable and JUDGE_URL added);
# without a key in the variable named by API_KEY_ENV the run's KIND (captions, answers) is kept and one line gives the
# command, shell-quoted, that scores it later.
judged() {
  local scorer=$1 run=$2 kind=$3 line
  shift 3
  judge_args
  local command=("$@" "${JUDGE_ARGS[@]}")
  if [ -z "${!API_KEY_ENV:-}" ]; then
    printf -v line '%q ' "${command[@]}"
    echo "$scorer not scored for $run (no judge key in \$$API_KEY_ENV); $kind kept in $SAVE_PATH/$run.jsonl. Score later with:" >&2
    echo "  $API_KEY_ENV=... ${line% }" >&2
    return
  fi
  "${command[@]}"
}

# judge_args: the judge's key variable and endpoint, as a judged scorer takes them (in JUDGE_ARGS).
judge_args() { JUDGE_ARGS=(--api_key_env "$API_KEY_ENV" ${JUDGE_URL:+--base_url "$JUDGE_URL"}); }
