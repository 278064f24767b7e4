"""Every bash script end to end as a newcomer tries it: the documented two-minute trial (a random tiny model named in
MODEL_PATH, LIMIT and MAX_NEW_TOKENS, nothing else), which runs the runners with the script's defaults, scores, and
ends with the report."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import EVAL_DATA, MME_GT, PROJECT_ROOT
from helpers import signal_when_running
from judge_server import FakeJudge, serve

TINY = {"llava": "tiny", "llava_next": "tiny-next", "instructblip": "tiny-instructblip", "qwen2_vl": "tiny-qwen2-vl"}


def run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script)], env={**clean, **env},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def save_noise(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)


def trial(tmp_path: Path, family: str, **extra: str) -> dict[str, str]:
    return {"MODEL_PATH": TINY[family], "LIMIT": "2", "MAX_NEW_TOKENS": "4", "SAVE_PATH": str(tmp_path / "out"),
            **extra}


def results(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "out" / f"{name}_results.json").read_text())


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl"])
def test_captioning_coco_trial(tmp_path, family):
    for image_id in (139, 285, 632):
        save_noise(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", image_id)
    result = run_script(f"{family}/captioning_coco.sh", trial(tmp_path, family, COCO_IMAGES=str(tmp_path / "val2014")))
    for method in ("baseline", "sparc"):
        assert len((tmp_path / "out" / f"{method}.jsonl").read_text().splitlines()) == 2
        assert json.loads((tmp_path / "out" / f"{method}_chair.json").read_text())["scorer"] == "chair"
        config = results(tmp_path, method)
        assert config["config"]["method"] == method and config["config"]["limit"] == 2
        assert config["subset"] == {"requested": 500, "available": 3, "used": 2, "short": True}
    sparc = results(tmp_path, "sparc")["config"]
    assert sparc["method_params"]["tau"] == (4.0 if family == "llava_next" else 1.5)
    if family == "qwen2_vl":  # no paper gives Qwen2-VL values: the family default, depth-relative, says so
        assert sparc["method_params"]["end_layer"] == 7 and "not from a paper" in sparc["sources"]["tau"]
    model, trial_flag = TINY[family], "(max_new_tokens=4)"  # the trial's token budget is a flag: it names the row
    assert f"| {model} | baseline {trial_flag} | ours |" in result.stdout
    assert f"| {model} | SPARC {trial_flag} | ours |" in result.stdout
    assert "short subset" in result.stdout and "trial run (--limit 2)" in result.stdout
    assert "fewer than the 500 the benchmark asks for" in result.stderr


def test_captioning_comparison_of_the_sparc_paper(tmp_path):
    """The SPARC paper's comparison: ``METHODS="baseline sparc vcd pai opera"`` captions with each method and the
    report has one row per method."""
    save_noise(tmp_path / "val2014" / "COCO_val2014_000000000139.jpg", 1)
    result = run_script("llava/captioning_coco.sh", trial(tmp_path, "llava", COCO_IMAGES=str(tmp_path / "val2014"),
                                                          METHODS="baseline sparc vcd pai opera", LIMIT="1"))
    for method, label in (("baseline", "baseline"), ("sparc", "SPARC"), ("vcd", "VCD"), ("pai", "PAI"),
                          ("opera", "OPERA")):
        assert results(tmp_path, method)["config"]["method"] == method
        assert f"| tiny | {label} (max_new_tokens=4) | ours |" in result.stdout
    opera = results(tmp_path, "opera")["config"]
    assert opera["preset"] == "paper" and opera["protocol"]["conv_mode"] == "vicuna_v1"  # the captioning protocol
    assert opera["method_params"]["beam"] == 5


@pytest.mark.parametrize("script, data_type", [("llava/captioning_iiw400.sh", "iiw"),
                                               ("llava_next/captioning_docci.sh", "docci"),
                                               ("qwen2_vl/captioning_iiw400.sh", "iiw"),
                                               ("qwen2_vl/captioning_docci.sh", "docci")])
def test_clair_captioning_trial_finishes_without_a_judge_key(tmp_path, script, data_type):
    """No key: the captions are kept, the script finishes (exit 0), says how to score CLAIR later, and the report
    lists the runs that are not scored yet."""
    key, name = ("image/key", "IIW") if data_type == "iiw" else ("image_file", "description")
    records = []
    for index in range(3):
        image = f"aar_{index}" if data_type == "iiw" else f"test_{index:05d}.jpg"
        save_noise(tmp_path / "images" / (f"{image}.jpg" if data_type == "iiw" else image), index)
        records.append({key: image, name: "A reference description."})
    annotations = tmp_path / "annotations.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in records))
    family = script.split("/")[0]
    result = run_script(script, trial(tmp_path, family, IMAGE_FOLDER=str(tmp_path / "images"),
                                      ANNOTATION_FILE=str(annotations)))
    for method in ("baseline", "sparc"):
        assert len((tmp_path / "out" / f"{method}.jsonl").read_text().splitlines()) == 2
        assert f"CLAIR not scored for {method} (no judge key in $OPENAI_API_KEY)" in result.stderr
        assert f"--answer_file {tmp_path / 'out' / method}.jsonl" in result.stderr
        assert f"{tmp_path / 'out' / method}.jsonl: " in result.stdout and "not scored yet" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_pope_trial(tmp_path, family):
    questions = [json.loads(line) for line in (EVAL_DATA / "pope/vcd/coco/coco_pope_random.json").read_text().splitlines()[:2]]
    for index, question in enumerate(questions):
        save_noise(tmp_path / "coco" / question["image"], index)
    result = run_script(f"{family}/pope.sh", trial(tmp_path, family, COCO_IMAGES=str(tmp_path / "coco"),
                                                   POPE_DATASETS="coco", POPE_SETTINGS="random"))
    for method in ("baseline", "vcd", "m3id", "avisc"):
        name = f"{method}_coco_pope_random"
        assert len((tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()) == 2
        assert json.loads((tmp_path / "out" / f"{name}_pope.json").read_text())["scorer"] == "pope"
        config = results(tmp_path, name)["config"]
        assert config["protocol"]["conv_mode"] == (None if family == "instructblip" else "llava_v1")
        assert config["preset"] == "paper"
    assert "AvisC: POPE" in result.stdout
    assert f"| {TINY[family]} | coco | random | AvisC (max_new_tokens=4) | ours |" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_mme_trial(tmp_path, family):
    questions = [json.loads(line) for line in (EVAL_DATA / "mme/mme_hallucination.jsonl").read_text().splitlines()[:2]]
    for index, question in enumerate(questions):
        save_noise(tmp_path / "mme" / question["image"], index)
    result = run_script(f"{family}/mme.sh", trial(tmp_path, family, MME_ROOT=str(tmp_path / "mme"),
                                                  MME_GT=str(MME_GT), SEEDS="42 43",
                                                  METHODS="baseline avisc"))
    for method in ("baseline", "avisc"):
        assert json.loads((tmp_path / "out" / f"{method}_mme.json").read_text())["scorer"] == "mme"
        assert results(tmp_path, f"{method}_mme_seed43")["seed"] == 43
    assert "MME" in result.stdout and "2 (seeds 42, 43)" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_amber_trial(tmp_path, family):
    queries = json.loads(gzip.decompress((EVAL_DATA / "amber/query_all.json.gz").read_bytes()))[:2]
    for index, query in enumerate(queries):
        save_noise(tmp_path / "amber" / query["image"], index)
    result = run_script(f"{family}/amber.sh", trial(tmp_path, family, AMBER_IMAGES=str(tmp_path / "amber"),
                                                    METHODS="baseline avisc"))
    metrics = json.loads((tmp_path / "out" / "avisc_amber_amber.json").read_text())
    assert metrics["scorer"] == "amber"
    assert "AMBER" in result.stdout


def test_sweep_variable_runs_a_sweep_per_method_and_the_report_lists_it(tmp_path):
    """SWEEP="alpha=... tau=...": one sweep of SPARC (METHODS' baseline is its baseline point), every point scored with
    CHAIR, the sweep's table, json and figure, and the report lists the sweep as its own table."""
    for image_id in (139, 285):
        save_noise(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", image_id)
    result = run_script("llava/captioning_coco.sh", trial(tmp_path, "llava", COCO_IMAGES=str(tmp_path / "val2014"),
                                                          SWEEP="alpha=1.05,1.2 tau=1,2"))
    out = tmp_path / "out"
    sweep = json.loads((out / "sparc_coco_sweep.json").read_text())
    assert [p["status"] for p in sweep["points"]] == ["scored"] * 5 and sweep["points"][0]["baseline"]
    assert (out / "sparc_coco_sweep.png").is_file()
    assert "### Sweep sparc_coco: COCO" in result.stdout
    assert not (out / "baseline.jsonl").exists() and not (out / "sparc.jsonl").exists()  # no plain runs


def test_sweep_variable_on_mme_passes_the_ground_truth_to_its_scorer(tmp_path):
    """A yes/no sweep (MME, a grid of the method itself) scores each point with what its scorer needs (MME_GT)."""
    questions = [json.loads(line) for line in (EVAL_DATA / "mme/mme_hallucination.jsonl").read_text().splitlines()[:2]]
    for index, question in enumerate(questions):
        save_noise(tmp_path / "mme" / question["image"], index)
    run_script("llava/mme.sh", trial(tmp_path, "llava", MME_ROOT=str(tmp_path / "mme"),
                                     MME_GT=str(MME_GT), SWEEP="method=baseline,avisc"))
    sweep = json.loads((tmp_path / "out" / "mme_sweep.json").read_text())
    assert [p["values"] for p in sweep["points"]] == [{"method": "baseline"}, {"method": "avisc"}]
    # two questions of one task: its score, no total (the total needs every task)
    assert all(p["status"] == "scored" and p["metrics"]["color"] is not None for p in sweep["points"])
    results = json.loads((tmp_path / "out" / "mme__method=avisc_results.json").read_text())
    assert results["seed"] == 42 and results["config"]["sources"]["method"] == "sweep"


def llava_bench_folder(tmp_path: Path) -> Path:
    """A llava-bench-in-the-wild folder as the Hub dataset ships it, with three questions on two images."""
    folder = tmp_path / "llava-bench-in-the-wild"
    questions = [(0, "001.jpg", "conv"), (1, "001.jpg", "detail"), (2, "002.jpg", "complex")]
    for index, image in enumerate(("001.jpg", "002.jpg")):
        save_noise(folder / "images" / image, index)
    files = {"questions": [{"question_id": i, "image": image, "text": f"Question {i}?", "category": category}
                           for i, image, category in questions],
             "context": [{"id": image[:3], "image": image, "caption": ["A caption."]}
                         for image in ("001.jpg", "002.jpg")],
             "answers_gpt4": [{"question_id": i, "text": f"Reference {i}.", "model_id": "gpt-4-0314"}
                              for i, *_ in questions]}
    for name, records in files.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_llava_bench_trial_with_a_judge(tmp_path):
    """The script answers with every default method, has each run reviewed by the judge (here a local server that
    speaks the OpenAI protocol, reached through JUDGE_URL and the key in API_KEY_ENV) and prints the table."""
    judge = FakeJudge(lambda prompt: prompt)
    judge.default = lambda prompt: "8 6\nAssistant 2 is shorter."
    with serve(judge):
        result = run_script("llava/llava_bench.sh", trial(
            tmp_path, "llava", LIMIT="3", LLAVA_BENCH=str(llava_bench_folder(tmp_path)), JUDGE_URL=judge.base_url,
            API_KEY_ENV="LLAVA_BENCH_SCRIPT_KEY", LLAVA_BENCH_SCRIPT_KEY="sk-test"))
    methods = ("baseline", "vcd", "m3id", "avisc")
    assert len(judge.requests) == 3 * len(methods) and {r["model"] for r in judge.requests} == {"gpt-4-0613"}
    for method in methods:
        metrics = json.loads((tmp_path / "out" / f"{method}_llava_bench_llava_bench.json").read_text())
        assert metrics["scorer"] == "llava_bench" and metrics["metrics"]["all"]["relative_score"] == 75.0, metrics
    assert "LLaVA-Bench" in result.stdout and "75.0" in result.stdout


def test_llava_bench_trial_without_a_judge_key(tmp_path):
    """No key: the answers are kept, the script finishes and prints the command that scores each run later."""
    result = run_script("llava/llava_bench.sh", trial(tmp_path, "llava", METHODS="baseline avisc",
                                                      LLAVA_BENCH=str(llava_bench_folder(tmp_path))))
    for method in ("baseline", "avisc"):
        assert len((tmp_path / "out" / f"{method}_llava_bench.jsonl").read_text().splitlines()) == 2
        assert (f"LLaVA-Bench not scored for {method}_llava_bench (no judge key in $OPENAI_API_KEY)"
                in result.stderr)
        assert f"python -m eval.llava_bench --answers {tmp_path / 'out' / method}_llava_bench.jsonl" in result.stderr


def test_sparc_demo(tmp_path):
    for index in range(3):
        save_noise(tmp_path / "photos" / f"photo{index}.jpg", index)
    result = run_script("sparc_demo.sh", {"MODEL_PATH": "tiny", "IMAGE_FOLDER": str(tmp_path / "photos"),
                                          "NUM_IMAGES": "2", "MAX_NEW_TOKENS": "6", "SAVE_PATH": str(tmp_path / "out")})
    assert result.stdout.count("== photo") == 2 and "baseline:" in result.stdout and "sparc:" in result.stdout
    assert (tmp_path / "out" / "sparc_selections.png").is_file()


@pytest.mark.parametrize("script, env, message", [
    ("llava/captioning_coco.sh", {"METHODS": "baseline sparcc"}, "error: unknown method 'sparcc'"),
    ("llava/pope.sh", {"POPE_DATASETS": "cocoo"}, "error: POPE_DATASETS: unknown dataset 'cocoo'"),
    ("instructblip/pope.sh", {"POPE_SETTINGS": "randm"}, "error: POPE_SETTINGS: unknown setting 'randm'"),
    ("llava/mme.sh", {"METHODS": "avsic"}, "error: unknown method 'avsic'"),
    ("llava/captioning_coco.sh", {"METHODS": "baseline sparc", "TAU": "nan"}, "tau must be a finite number"),
    ("llava/pope.sh", {"METHODS": "baseline avisc", "AVISC_ARGS": "lamb=x"}, "lamb: could not convert"),
    ("instructblip/amber.sh", {"METHODS": "baseline vcd", "VCD_ARGS": "noise_step=-1"}, "noise_step"),
    ("llava/mme.sh", {"METHODS": "baseline sparc", "SPARC_ARGS": "selected_layer=99"}, "selected_layer=99"),
])
def test_a_bad_name_or_value_stops_a_script_before_any_run(tmp_path, script, env, message):
    """Names, and every method's values, are checked before the first run (of any method), not hours into the
    script."""
    model = "tiny-instructblip" if script.startswith("instructblip") else "tiny"
    (tmp_path / "images").mkdir()
    data = {name: str(tmp_path / "images") for name in ("COCO_IMAGES", "GQA_IMAGES", "MME_ROOT", "AMBER_IMAGES")}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "MODEL_PATH": model, "SAVE_PATH": str(tmp_path / "out"),
                                              **data, **env})
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))


# -- the scripts' layout: variables of their own, shared knobs read by scripts/lib, --help ------------------------

SCRIPTS = sorted(str(p.relative_to(PROJECT_ROOT / "scripts")) for p in (PROJECT_ROOT / "scripts").glob("**/*.sh")
                 if p.parent.name != "lib")
KNOB_DEFAULTS = [(name, default.strip('"')) for lib in sorted((PROJECT_ROOT / "scripts" / "lib").glob("*.sh"))
                 for name, default in re.findall(r'^knob (\w+) ("[^"]*"|\S+)', lib.read_text(), re.M)]
KNOBS = sorted({name for name, _ in KNOB_DEFAULTS})


def run_raw(script: str, env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A script run whose exit status the test checks itself."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    return subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script), *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout)


def errors(stderr: str) -> list[str]:
    """stderr without the warnings (a typo-like variable of the machine's environment warns, and only warns)."""
    return [line for line in stderr.splitlines() if not line.startswith("warning: ")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_scripts_variables_and_the_shared_knobs_with_their_defaults(script):
    text = (PROJECT_ROOT / "scripts" / script).read_text()
    own = dict(re.findall(r"(\w+)=(\S*)", " ".join(re.findall(r"^defaults (.*)$", text, re.M))))
    assert {"MODEL_PATH", "SAVE_PATH"} <= set(own)
    result = run_raw(script, {}, "--help", timeout=60)
    assert result.returncode == 0 and not result.stderr
    for name, default in own.items():
        if "$" not in default:
            assert f"  {name}={default}" in result.stdout, name
    for name in ("METHODS", "PRESET", "BATCH_SIZE", "LIMIT", "MAX_NEW_TOKENS", "DEVICE", "DTYPE", "LAUNCH",
                 "OVERWRITE", "MIN_PIXELS"):
        if name != "METHODS" or script != "sparc_demo.sh":
            assert f"  {name}=" in result.stdout, name
    assert "  PRESET=paper " in result.stdout and "  BATCH_SIZE=8 " in result.stdout
    assert "python -m eval.methods --resolve paper --benchmark " in result.stdout
    assert "TAU=tau" in result.stdout and "<METHOD>_ARGS" in result.stdout


def test_the_scripts_hold_only_their_own_variables():
    """A shared knob is read by scripts/lib with its default in one place: no script assigns one, and every knob is
    documented in the README's Scripts section."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Scripts"):readme.index("\n## Reproducing")]
    assert len(KNOBS) >= 15
    for script in SCRIPTS:
        text = (PROJECT_ROOT / "scripts" / script).read_text()
        assert not [k for k in KNOBS if re.search(rf"^{k}=|\b{k}=\$\{{{k}:-", text, re.M)], script
    assert "bash scripts/X.sh --help" in section and "`OVERWRITE=1`" in section
    for name in KNOBS + ["<METHOD>_ARGS", "TAU", "AVISC_ALPHA", "VCD_ALPHA"]:
        assert f"`{name}" in section, name
    for name, default in KNOB_DEFAULTS:  # the table's defaults are the library's
        row = next(line for line in section.splitlines() if line.startswith("| `") and f"`{name}`" in line)
        assert (f"`{default}`" if default else "empty") in row.split(" | ")[1], (name, default, row)


def test_every_trial_suggests_its_own_save_path():
    """Every script's header suggests a trial whose SAVE_PATH no other script suggests: a second trial is not refused
    for settings another script left there."""
    suggested = {}
    for script in SCRIPTS:
        trial = [line for line in (PROJECT_ROOT / "scripts" / script).read_text().splitlines()
                 if line.startswith("#") and "MODEL_PATH=tiny" in line]
        assert len(trial) == 1, script
        suggested[script] = re.search(r"SAVE_PATH=(\S+)", trial[0]).group(1)
        assert f"bash scripts/{script}" in trial[0]
    assert len(set(suggested.values())) == len(suggested), suggested


def test_overwrite_starts_a_run_again_and_the_refusal_says_how(tmp_path):
    """Another MAX_NEW_TOKENS in the same SAVE_PATH is refused with a message naming OVERWRITE=1 and SAVE_PATH;
    OVERWRITE=1 passes --overwrite and the run starts again with the new value."""
    save_noise(tmp_path / "val2014" / "COCO_val2014_000000000139.jpg", 1)
    env = trial(tmp_path, "llava", COCO_IMAGES=str(tmp_path / "val2014"), METHODS="baseline", LIMIT="1",
                MAX_NEW_TOKENS="2")
    run_script("llava/captioning_coco.sh", env)
    refused = run_raw("llava/captioning_coco.sh", {**env, "MAX_NEW_TOKENS": "3"})
    assert refused.returncode == 2
    assert "max_new_tokens: 2 -> 3" in refused.stderr
    assert "--overwrite (scripts: OVERWRITE=1)" in refused.stderr and "(scripts: SAVE_PATH)" in refused.stderr
    run_script("llava/captioning_coco.sh", {**env, "MAX_NEW_TOKENS": "3", "OVERWRITE": "1"})
    assert results(tmp_path, "baseline")["config"]["protocol"]["max_new_tokens"] == 3


def test_mme_ground_truth_is_checked_before_the_first_run(tmp_path):
    question = json.loads((EVAL_DATA / "mme/mme_hallucination.jsonl").read_text().splitlines()[0])
    save_noise(tmp_path / "mme" / question["image"], 0)
    for gt in (tmp_path / "gt", tmp_path / "missing"):
        (tmp_path / "gt").mkdir(exist_ok=True)
        result = run_raw("llava/mme.sh", trial(tmp_path, "llava", MME_ROOT=str(tmp_path / "mme"), MME_GT=str(gt),
                                                 SEEDS="42", METHODS="baseline"))
        assert result.returncode == 2
        assert errors(result.stderr) == [line for line in errors(result.stderr) if f"MME_GT={gt}: " in line]
        assert "existence.txt, count.txt, position.txt, color.txt" in result.stderr
        assert "existence/, count/, position/, color/" in result.stderr
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))


def test_a_variable_that_looks_like_a_knob_is_warned_about(tmp_path):
    """One warning per set variable that is close to a knob but not one, naming the knob; none for unrelated
    variables, whatever the machine's environment holds."""
    (tmp_path / "images").mkdir()
    env = {"MODEL_PATH": "tiny", "SAVE_PATH": str(tmp_path / "out"), "COCO_IMAGES": str(tmp_path / "images"),
           "METHODS": "baseline sparcc", "ALHPA": "1.5", "tau": "2", "MAX_NEW_TOKEN": "8", "SPRAC_ARGS": "tau=2",
           "COCOIMAGES": "x", "SEEDS": "1", **{name: "x" for name in (  # unrelated, or another script's knob
               "DATA_PATH", "JAVA_PATH", "LAMBDA", "NAME", "MODEL", "TERM", "USER", "MAIL", "LINES", "RANK", "WORLD_SIZE",
               "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "HF_HOME", "TMPDIR", "PYTHONPATH", "LANG",
               "POPE_SETTINGS", "QUERY_FILE")}}
    result = run_raw("llava/captioning_coco.sh", env)
    assert result.returncode == 2
    warnings = sorted(line for line in result.stderr.splitlines() if line.startswith("warning: "))
    expected = {"ALHPA": "ALPHA", "COCOIMAGES": "COCO_IMAGES", "MAX_NEW_TOKEN": "MAX_NEW_TOKENS",
                "SPRAC_ARGS": "SPARC_ARGS", "tau": "TAU"}
    script = PROJECT_ROOT / "scripts" / "llava" / "captioning_coco.sh"
    assert warnings == [f"warning: {name} is set but is not a variable of this script (did you mean {knob}?); it "
                        f"is ignored (bash {script} --help lists the variables)"
                        for name, knob in sorted(expected.items())]


def test_an_unknown_method_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    for script in ("llava/captioning_coco.sh", "llava/pope.sh"):
        result = run_raw(script, {"MODEL_PATH": "tiny", "SAVE_PATH": str(tmp_path / "out"), "METHODS": "avisc sparcc",
                                  "COCO_IMAGES": str(tmp_path / "images")})
        assert result.returncode == 2
        assert errors(result.stderr) == ["error: unknown method 'sparcc'; registered: baseline, sparc, avisc, vcd, "
                                         "m3id, pai, opera"], result.stderr


def test_amber_notice_is_printed_once_per_script_run(tmp_path):
    import importlib.util

    queries = json.loads(gzip.decompress((EVAL_DATA / "amber/query_all.json.gz").read_bytes()))[:2]
    for index, query in enumerate(queries):
        save_noise(tmp_path / "amber" / query["image"], index)
    result = run_script("llava/amber.sh", trial(tmp_path, "llava", AMBER_IMAGES=str(tmp_path / "amber"),
                                                METHODS="baseline vcd m3id"))
    notices = result.stdout.count("WARNING: AMBER generative metrics use EXACT word matching")
    assert notices == (0 if importlib.util.find_spec("spacy") else 1)
    assert result.stdout.count("evaluation type a: scored 2 answers") == 3


def test_the_score_later_command_is_shell_quoted(tmp_path):
    """The CLAIR command printed without a judge key runs as printed, on the right files, for any SAVE_PATH."""
    save_noise(tmp_path / "images" / "aar_0.jpg", 0)
    annotations = tmp_path / "annotations.jsonl"
    annotations.write_text(json.dumps({"image/key": "aar_0", "IIW": "A reference description."}) + "\n")
    out = tmp_path / "my results; touch PWNED" / "a b"
    result = run_script("llava/captioning_iiw400.sh", trial(tmp_path, "llava", IMAGE_FOLDER=str(tmp_path / "images"),
                                                            ANNOTATION_FILE=str(annotations), SAVE_PATH=str(out),
                                                            METHODS="baseline"))
    line = result.stderr.splitlines()[result.stderr.splitlines().index(next(
        l for l in result.stderr.splitlines() if l.startswith("CLAIR not scored for baseline"))) + 1]
    pasted = subprocess.run(["bash", "-c", 'python() { printf "%s\\n" "$@"; }\n' + line], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert pasted.returncode == 0 and not (tmp_path / "PWNED").exists()
    args = pasted.stdout.splitlines()
    assert args[args.index("--answer_file") + 1] == f"{out}/baseline.jsonl"
    assert args[args.index("--save_path") + 1] == f"{out}/baseline_clair.json"
    assert args[args.index("--annotation_file") + 1] == str(annotations)


def test_the_readme_quickstart_runs_on_a_folder_of_ones_own_photos(tmp_path):
    """The first Quickstart command, as a newcomer pastes it, on a few photos with any names."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    quickstart = readme[readme.index("## Quickstart"):readme.index("## Layout")]
    block = quickstart[quickstart.index("```bash\n") + 8:]
    command = re.sub(r"\\\n\s*", "", block).splitlines()
    first = next(line for line in command if line.strip() and not line.startswith("#"))
    assert "path/to/photos" in first
    for index, name in enumerate(("holiday 1.jpg", "IMG_2024.JPG", "cat.png")):
        save_noise(tmp_path / "photos" / name, index)
    first = first.replace("path/to/photos", str(tmp_path / "photos"))
    first = re.sub(r"SAVE_PATH=\S+", f"SAVE_PATH={tmp_path / 'out'}", first)
    result = subprocess.run(["bash", "-c", first], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("== ") == 2 and (tmp_path / "out" / "sparc_selections.png").is_file()


@pytest.mark.parametrize("layout, message", [
    ("photos", "none of its 2 images has a COCO file name (like COCO_val2014_000000000139.jpg); for images of your own "
               "use --dataset-type folder (the scripts: scripts/sparc_demo.sh)"),
    ("above", "no COCO images (like COCO_val2014_000000000139.jpg) in this folder; its subfolder val2014 holds them: "
              "use {folder}/val2014"),
])
def test_a_coco_folder_without_coco_images_says_what_to_do(tmp_path, layout, message):
    folder = tmp_path / "data"
    if layout == "photos":
        save_noise(folder / "holiday.jpg", 0)
        save_noise(folder / "cat.png", 1)
    else:
        save_noise(folder / "val2014" / "COCO_val2014_000000000139.jpg", 0)
    result = run_raw("llava/captioning_coco.sh", trial(tmp_path, "llava", COCO_IMAGES=str(folder), METHODS="baseline"))
    assert result.returncode == 2
    assert errors(result.stderr) == [f"error: {folder}: " + message.format(folder=folder)], result.stderr


def test_sigterm_to_a_script_stops_its_run_with_the_resume_hint(tmp_path):
    """A scheduler's SIGTERM sent to the script alone reaches the run: the run's one line, the script's, exit 143, and
    no run left behind."""
    import signal

    for index in range(3):
        save_noise(tmp_path / "photos" / f"photo{index}.jpg", index)
    out = tmp_path / "out"
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    process = subprocess.Popen(["bash", str(PROJECT_ROOT / "scripts" / "sparc_demo.sh")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**clean, "MODEL_PATH": "tiny", "IMAGE_FOLDER": str(tmp_path / "photos"),
                                    "NUM_IMAGES": "3", "MAX_NEW_TOKENS": "400", "SAVE_PATH": str(out),
                                    "PROGRESS_EVERY": "0"})
    err = signal_when_running(process, out / "baseline_config.json", signal.SIGTERM)
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(out))]
    for pid in left:  # a run the script left behind (the fault this test is about)
        os.kill(int(pid), signal.SIGKILL)
    assert process.returncode == 143, err[-2000:]
    assert not left
    assert "terminated (SIGTERM): the answers written so far are kept; rerun the same command to resume" in err
    assert "sparc_demo.sh: stopped (SIGTERM): the answers written so far are kept; rerun the same command" in err
    assert "Traceback" not in err


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
