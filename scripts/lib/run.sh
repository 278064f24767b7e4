# Shared by every script (sourced after its variables are set). A script passes --preset and only the values its
# user set: an empty variable means the benchmark's or the preset's value (resolved, with its source, in each run's
# _results.json; `python -m eval.methods` lists every preset).

# The script variables that set a method's parameters (VARIABLE=parameter). Any method also takes
# <METHOD>_ARGS="name=value,..." (e.g. PAI_ARGS="gamma=1.2"), with the method's own parameter names.
declare -A METHOD_VARIABLES=(
  [sparc]="ALPHA=alpha BETA=beta TAU=tau SELECTED_LAYER=selected_layer START_LAYER=start_layer END_LAYER=end_layer"
  [avisc]="LAYER_GAMMA=layer_gamma LAMB=lamb AVISC_ALPHA=cd_alpha MASKING=masking_scheme CD_BETA=cd_beta"
  [vcd]="VCD_ALPHA=cd_alpha NOISE_STEP=noise_step CD_BETA=cd_beta"
  [m3id]="CD_BETA=cd_beta"
)

# run_args METHOD: sets RUN_ARGS to the method, the preset, the method's set parameters and the trial knobs.
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
  for pair in LIMIT=--limit MAX_NEW_TOKENS=--max-new-tokens DEVICE=--device DTYPE=--dtype DECODING=--decoding \
              NUM_SAMPLES=--num-samples SEED=--seed MIN_PIXELS=--min-pixels MAX_PIXELS=--max-pixels; do
    variable=${pair%%=*}
    if [ -n "${!variable:-}" ]; then RUN_ARGS+=("${pair#*=}" "${!variable}"); fi
  done
}

# check_methods: every name of METHODS is a registered method, checked before any run (not hours into one).
check_methods() {
  # shellcheck disable=SC2086
  python -m eval.methods $METHODS > /dev/null
}

# check_runs RUNNER ARGS...: every method of METHODS with its set parameters resolves and passes the runner's checks
# (values, layers, files, output folder) with these data arguments, before the first run starts (not hours into one).
check_runs() {
  local runner=$1 method
  shift
  check_methods
  for method in $METHODS; do
    run_args "$method"
    python -m "$runner" "${RUN_ARGS[@]}" "$@" --save-path "$SAVE_PATH" --experiment-name "$method" --check-only \
      > /dev/null || return
  done
}

# report: the paper-style table of everything scored under SAVE_PATH.
report() {
  python -m eval.report "$SAVE_PATH"
}
