"""One home for every setting: benchmark protocols and methods resolve once, any method runs on any benchmark, the
golden outputs come out of the runners with the defaults the scripts use, and every setting is checked before a
model is loaded."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EVAL_DATA, PROJECT_ROOT
from eval import caption, vqa
from eval.benchmarks import BENCHMARKS, resolve_run
from eval.files import InputError
from eval.methods import get_method, list_methods
from helpers import golden_json, signal_when_running
from llava.model.families import list_families

PYTHON = sys.executable


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def results(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}_results.json").read_text())


def golden_pope_file(golden_dir: Path, tmp_path: Path) -> Path:
    """The golden AvisC question about each golden image, as a POPE question file."""
    question = golden_json("avisc_golden.json")["question"]
    images = sorted(p.name for p in (golden_dir / "images").iterdir())
    path = tmp_path / "golden_pope.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "image": name, "text": question, "label": "no"}) + "\n"
                            for i, name in enumerate(images)))
    return path


# The golden AvisC cases as a user runs them: the script's method and preset, explicit values only where a case
# departs from every preset. No --conv-mode, no preprocessing flag: the POPE protocol says llava_v1 and crop.
AVISC_RUNS = {
    "avisc_paper": ["--method", "avisc"],
    "avisc_scripts": ["--method", "avisc", "--preset", "scripts"],
    "avisc_ones": ["--method", "avisc", "--method-args",
                   "layer_gamma=0.8,lamb=0.5,cd_alpha=3.0,cd_beta=0.2,masking_scheme=ones"],
    "m3id": ["--method", "m3id"],
    "base": ["--method", "baseline"],
}


@pytest.mark.parametrize("case_name", list(AVISC_RUNS))
def test_avisc_golden_through_eval_vqa_with_the_script_defaults(golden_dir, tmp_path, case_name):
    """The official AvisC outputs (argmax of the sampler's final distribution, so ``--decoding greedy``) come out of
    ``eval.vqa`` without ``--conv-mode``: the POPE protocol's llava_v1 template and center crop are the defaults."""
    from transformers import AutoTokenizer

    golden = golden_json("avisc_golden.json")
    case = next(c for c in golden["cases"] if c["name"] == case_name)
    questions = golden_pope_file(golden_dir, tmp_path)
    assert vqa.main(["--benchmark", "pope", "--model-path", str(golden_dir / golden["checkpoint"]),
                     "--image-folder", str(golden_dir / "images"), "--question-file", str(questions),
                     *AVISC_RUNS[case_name], "--decoding", "greedy", "--max-new-tokens", str(golden["max_new_tokens"]),
                     "--batch-size", "3", "--save-path", str(tmp_path), "--experiment-name", case_name]) == 0
    tokenizer = AutoTokenizer.from_pretrained(golden_dir / golden["checkpoint"])
    expected = {o["image"]: tokenizer.decode(o["generated_ids"], skip_special_tokens=True).strip() for o in case["outputs"]}
    assert {a["image"]: a["text"] for a in lines(tmp_path / f"{case_name}.jsonl")} == expected
    config = results(tmp_path, case_name)["config"]
    assert config["protocol"]["conv_mode"] == "llava_v1" and config["sources"]["conv_mode"] == "benchmark:pope"
    assert config["protocol"]["image_aspect"] == "crop"
    params = {k: v for k, v in case["params"].items() if not k.startswith("use_")}
    assert {k: config["method_params"][k] for k in params} == params


@pytest.mark.parametrize("golden_file, case_name", [("sparc_golden.json", "paper"), ("sparc_golden.json", "vanilla"),
                                                    ("sparc_next_golden.json", "paper")])
def test_sparc_golden_through_eval_caption_with_the_script_defaults(golden_dir, tmp_path, golden_file, case_name):
    """The official SPARC captions from ``eval.caption`` with only the method name: the preset gives tau 1.5 on
    LLaVA-1.5 and 4.0 on LLaVA-NeXT (a family rule), the captioning protocol vicuna_v1 and the model's own
    preprocessing."""
    golden = golden_json(golden_file)
    case = next(c for c in golden["cases"] if c["name"] == case_name)
    method = "baseline" if case["params"]["alpha"] == 1.0 else "sparc"
    assert caption.main(["--dataset-type", "folder", "--model-path", str(golden_dir / golden["checkpoint"]),
                         "--image-folder", str(golden_dir / "images"), "--method", method,
                         "--max-new-tokens", str(golden["max_new_tokens"]), "--batch-size", "3",
                         "--save-path", str(tmp_path), "--experiment-name", "run"]) == 0
    expected = {Path(o["image"]).stem: o["caption"] for o in case["outputs"]}
    assert {r["image_id"]: r["caption"] for r in lines(tmp_path / "run.jsonl")} == expected
    config = results(tmp_path, "run")["config"]
    if method == "sparc":
        assert config["method_params"] == case["params"]
        assert config["sources"]["tau"] == ("preset:paper[family=llava_next]" if "next" in golden_file else "default")
    assert config["protocol"]["conv_mode"] == golden["conv_mode"]


def test_script_preset_resolves_as_the_runner_preset(golden_dir, tmp_path):
    """``PRESET=scripts bash scripts/llava/pope.sh`` (trial knobs only) runs AvisC with the scripts preset's values,
    the same as ``eval.vqa --preset scripts``; nothing is passed that the user did not set."""
    images = tmp_path / "coco"
    images.mkdir()
    from PIL import Image

    question = json.loads((EVAL_DATA / "pope/vcd/coco/coco_pope_random.json").read_text().splitlines()[0])
    Image.new("RGB", (48, 40), (90, 120, 30)).save(images / question["image"])
    env = {**os.environ, "MODEL_PATH": str(golden_dir / "tiny-llava-v1.5"), "COCO_IMAGES": str(images),
           "SAVE_PATH": str(tmp_path / "out"), "PRESET": "scripts", "METHODS": "avisc vcd", "POPE_DATASETS": "coco",
           "POPE_SETTINGS": "random", "LIMIT": "1", "MAX_NEW_TOKENS": "2"}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts/llava/pope.sh")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for method in ("avisc", "vcd"):
        config = results(tmp_path / "out", f"{method}_coco_pope_random")["config"]
        assert config["preset"] == "scripts"
        assert config["method_params"] == get_method(method).resolve("scripts", family="llava", benchmark="pope").params
        assert not [k for k, v in config["sources"].items() if v == "flag" and k not in ("max_new_tokens",)]
    assert results(tmp_path / "out", "avisc_coco_pope_random")["config"]["method_params"]["lamb"] == 0.99
    # the same through the runner directly
    assert vqa.main(["--benchmark", "pope", "--pope-split", "coco/random", "--image-folder", str(images), "--model-path",
                     str(golden_dir / "tiny-llava-v1.5"), "--preset", "scripts", "--limit", "1", "--max-new-tokens", "2",
                     "--save-path", str(tmp_path / "direct"), "--experiment-name", "avisc"]) == 0
    assert results(tmp_path / "direct", "avisc")["config"]["method_params"] == \
        results(tmp_path / "out", "avisc_coco_pope_random")["config"]["method_params"]


def test_script_variables_override_one_value_each(golden_dir, tmp_path):
    """A script variable the user sets reaches the run as a flag; the others stay the preset's."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "imgs" / "COCO_val2014_000000000139.jpg")
    env = {**os.environ, "MODEL_PATH": str(golden_dir / "tiny-llava-v1.5"), "COCO_IMAGES": str(tmp_path / "imgs"),
           "SAVE_PATH": str(tmp_path / "out"), "METHODS": "sparc", "TAU": "2.5", "VCD_ARGS": "cd_alpha=3",
           "LIMIT": "1", "MAX_NEW_TOKENS": "2"}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts/llava/captioning_coco.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    config = results(tmp_path / "out", "sparc")["config"]
    assert config["method_params"]["tau"] == 2.5 and config["sources"]["tau"] == "flag"
    assert config["method_params"]["alpha"] == 1.1 and config["sources"]["alpha"] != "flag"


@pytest.mark.parametrize("runner, bench, method", [
    ("vqa", "pope", "sparc"), ("caption", "folder", "avisc"), ("caption", "folder", "vcd"), ("caption", "folder", "m3id"),
])
def test_any_method_on_any_benchmark(golden_dir, tmp_path, runner, bench, method):
    images = golden_dir / "images"
    common = ["--model-path", str(golden_dir / "tiny-llava-v1.5"), "--image-folder", str(images), "--method", method,
              "--limit", "2", "--max-new-tokens", "3", "--save-path", str(tmp_path), "--experiment-name", "run"]
    if runner == "vqa":
        code = vqa.main(["--benchmark", bench, "--question-file", str(golden_pope_file(golden_dir, tmp_path)), *common])
    else:
        code = caption.main(["--dataset-type", bench, *common])
    assert code == 0
    answers = lines(tmp_path / "run.jsonl")
    assert len(answers) == 2 and all(("text" if runner == "vqa" else "caption") in a for a in answers)
    config = results(tmp_path, "run")["config"]
    assert config["method"] == method
    assert config["method_params"] == resolve_run(bench, "llava", method).params
    assert config["protocol"]["decoding"] == ("sample" if runner == "vqa" else "greedy")


@pytest.mark.parametrize("argv, message", [
    (["--method", "avisc", "--tau", "2"], "--tau: method avisc has no parameter 'tau'"),
    (["--method", "sparc", "--method-args", "cd_alpha=2"], "method sparc has no parameter 'cd_alpha'"),
    (["--method", "sparc", "--method-args", "tau"], "'tau' is not NAME=VALUE"),
    (["--method", "sparc", "--method-args", "tau=abc"], "tau: could not convert"),
    (["--method", "sparc", "--tau", "2", "--method-args", "tau=3"], "tau is set twice"),
    (["--method", "sparc", "--alpha", "-1"], "alpha must be a finite number > 0"),
    (["--method", "sparc", "--selected-layer", "40"], "selected_layer=40 is outside the model's 32 layers"),
    (["--method", "avisc", "--masking-scheme", "blur"], "unknown masking_scheme 'blur'"),
    (["--method", "avisc", "--preset", "best"], "avisc has no preset 'best'"),
    (["--conv-mode", "vicuna"], "unknown conv mode 'vicuna'"),
    (["--num-beams", "2", "--decoding", "sample"], "beam search (num_beams > 1) needs greedy decoding"),
    (["--temperature", "0", "--decoding", "sample"], "--temperature 0 means greedy decoding"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--method", "sparc", "--num-beams", "3"], "method sparc decodes in the greedy / sampling loop: it has no beam search"),
    (["--method", "opera", "--num-beams", "3"], "method opera searches with 5 beams (its own parameter), not --num-beams 3"),
    (["--method", "opera", "--decoding", "sample"], "method opera is a beam search: it cannot sample"),
    (["--num-samples", "-3"], "--num-samples must be at least 1, got -3"),
    (["--device", "gpu"], "unknown device 'gpu' (cpu, cuda or cuda:N)"),
    (["--image-aspect", "anyres"], "--image-aspect anyres: a llava model has pad, crop"),
    (["--temperature", "-1"], "--temperature must be >= 0 (0 = greedy), got -1.0"),
    (["--experiment-name", ""], "--experiment-name '': a file stem"),
    (["--experiment-name", "a/b"], "--experiment-name 'a/b': a file stem"),
    (["--method", "sparc", "--method-args", "alpha=inf"], "alpha must be a finite number, got inf"),
    (["--method", "sparc", "--method-args", "tau=nan"], "tau must be a finite number, got nan"),
    (["--method", "avisc", "--lamb=-inf"], "lamb must be a finite number, got -inf"),
    (["--method", "sparc", "--method-args", "alpha=0,alpha=2"], "--method-args: alpha is set twice"),
    (["--temperature", "inf"], "temperature must be a finite number, got inf"),
    (["--temperature", "1e-45"], "temperature must be at least 0.01"),
    (["--decoding", "sample", "--temperature", "0.001"], "temperature must be at least 0.01"),
    (["--decoding", "greedy", "--temperature", "0.5"], "--temperature 0.5 has no effect with greedy decoding"),
    (["--decoding", "greedy", "--top-k", "5"], "--top-k 5 has no effect with greedy decoding"),
    (["--decoding", "greedy", "--top-p", "0.9"], "--top-p 0.9 has no effect with greedy decoding"),
    (["--top-p", "0.9"], "--top-p 0.9 has no effect with greedy decoding (decoding from benchmark:folder)"),
    (["--method", "opera", "--top-k", "3"], "--top-k 3 has no effect with greedy decoding (decoding from preset:paper)"),
    (["--method", "pai", "--preset", "official", "--top-p", "0.3"], "(decoding from preset:official)"),
])
def test_settings_are_checked_before_the_model_loads(golden_dir, tmp_path, monkeypatch, argv, message):
    import llava.model.builder as builder

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not be loaded before the settings are checked")

    monkeypatch.setattr(builder, "load_model", no_loading)
    name = [] if "--experiment-name" in argv else ["--experiment-name", "run"]
    with pytest.raises(InputError, match=re.escape(message)):
        caption.main(["--dataset-type", "folder", "--model-path", str(golden_dir / "tiny-llava-v1.5"),
                      "--image-folder", str(golden_dir / "images"), "--save-path", str(tmp_path), *name, *argv])


@pytest.mark.parametrize("argv", [
    ["--method", "avisc", "--cd-alpha", "1", "--cd_alpha", "2"],
    ["--method", "avisc", "--method-args", "cd_alpha=1.7", "--method-args", "lamb=2"],
    ["--method", "sparc", "--tau", "1", "--tau", "2"],
    ["--limit", "2", "--limit", "3"],
    ["--seed", "1", "--seed", "1"],
])
def test_a_setting_given_twice_is_an_error(golden_dir, tmp_path, capsys, argv):
    """argparse keeps the last value silently; a run must not depend on which of two values was meant."""
    with pytest.raises(SystemExit) as exit_info:
        caption.main(["--dataset-type", "folder", "--model-path", "tiny", "--image-folder", str(golden_dir / "images"),
                      "--save-path", str(tmp_path), "--experiment-name", "run", *argv])
    assert exit_info.value.code == 2
    assert f"{argv[-2]} is given twice" in capsys.readouterr().err


@pytest.mark.parametrize("model, argv, message", [
    ("tiny-instructblip", ["--image-aspect", "pad"], "--image-aspect pad: an instructblip model has only its own fixed"),
    ("tiny-instructblip", ["--conv-mode", "vicuna_v1"], "InstructBLIP takes the raw question"),
    ("tiny", ["--pope-split", "coco/random", "--question-file", "q.json"], "--pope-split and --question-file"),
])
def test_family_and_data_settings_are_checked_before_the_model_loads(golden_dir, tmp_path, monkeypatch, model, argv,
                                                                      message):
    import llava.model.builder as builder

    monkeypatch.setattr(builder, "load_model", lambda *a, **k: pytest.fail("the model must not be loaded"))
    with pytest.raises(InputError, match=re.escape(message)):
        vqa.main(["--benchmark", "pope", "--model-path", model, "--image-folder", str(golden_dir / "images"),
                  "--save-path", str(tmp_path), "--experiment-name", "run",
                  *(argv if "--pope-split" in argv else ["--pope-split", "coco/random", *argv])])


def test_an_interrupted_run_is_one_line(golden_dir, tmp_path):
    """Ctrl-C (SIGINT) in the middle of a run: one line saying the answers are kept, exit 130, no traceback."""
    import signal

    process = subprocess.Popen([PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--model-path", "tiny",
                                "--image-folder", str(golden_dir / "images"), "--max-new-tokens", "400",
                                "--save-path", str(tmp_path), "--experiment-name", "run"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PROGRESS_EVERY": "0"})
    err = signal_when_running(process, tmp_path / "run_config.json", signal.SIGINT)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted: the answers written so far are kept; rerun the same command to resume" in err
    assert "Traceback" not in err


def test_a_terminated_run_is_one_line(golden_dir, tmp_path):
    """SIGTERM (what schedulers send) in the middle of a run: one line with the resume hint, exit 143, no traceback
    (as Ctrl-C above)."""
    import signal

    command = [PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--model-path", "tiny", "--image-folder",
               str(golden_dir / "images"), "--max-new-tokens", "400", "--save-path", str(tmp_path),
               "--experiment-name", "run"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PROGRESS_EVERY": "0"})
    err = signal_when_running(process, tmp_path / "run_config.json", signal.SIGTERM)
    assert process.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM): the answers written so far are kept; rerun the same command to resume" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("model_path, message", [
    ("/no/such/dir", "/no/such/dir: no such checkpoint folder, and not a hub id"),
    ("./relative/missing", "no such checkpoint folder, and not a hub id"),
    ("someone/some-model", "someone/some-model: no such checkpoint folder, and the hub could not provide it"),
])
def test_a_missing_model_is_one_line(tmp_path, model_path, message):
    """One line on stderr, exit 2, no traceback (offline, so the hub id cannot be fetched)."""
    (tmp_path / "images").mkdir()
    result = subprocess.run([PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--model-path", model_path,
                             "--image-folder", str(tmp_path / "images"), "--save-path", str(tmp_path / "out"),
                             "--experiment-name", "x"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["eval.caption", "eval.vqa", "eval.methods", "eval.bench"])
def test_help_is_fast_and_shows_the_resolved_defaults(module):
    start = time.perf_counter()
    result = subprocess.run([PYTHON, "-X", "importtime", "-m", module, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {"torch", "transformers"} & imported, "--help must not import torch or transformers"
    assert time.perf_counter() - start < 10
    if module == "eval.caption":
        assert "coco: COCO val2014 captions (CHAIR); 500 samples" in result.stdout
        assert "conv_mode='vicuna_v1'" in result.stdout and "sparc: alpha=1.1" in result.stdout
    if module == "eval.vqa":
        assert "instructblip: decoding='sample', temperature=1.0, top_k=50, max_new_tokens=63" in result.stdout


def test_methods_command_lists_every_method_with_parameters_and_presets():
    result = subprocess.run([PYTHON, "-m", "eval.methods", "--resolve", "scripts", "--benchmark", "pope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in list_methods():
        assert f"\n{name}: " in "\n" + result.stdout
    assert "scripts on instructblip: cd_beta=0.1, layer_gamma=0.5, lamb=0.95, cd_alpha=1.0" in result.stdout


def test_every_method_has_the_standard_presets_and_valid_defaults():
    for name in list_methods():
        spec = get_method(name)
        assert {"paper", "scripts", "official"} <= set(spec.presets), name
        for preset in spec.presets:
            for family in list_families():
                depth = family.synthetic_num_layers("tiny")
                for benchmark in BENCHMARKS:  # every combination resolves and validates
                    resolve_run(benchmark, family.name, name, preset, num_layers=depth)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_no_method_takes_a_non_finite_number(value):
    """NaN or infinity is no setting of any method (and NaN would never compare equal when a run is resumed)."""
    checked = 0
    for name in list_methods():
        for field in get_method(name).param_fields():
            if isinstance(field.default, float):
                with pytest.raises(ValueError, match=f"{field.name} must be a finite number"):
                    resolve_run("coco", "llava", name, method_overrides={field.name: value})
                checked += 1
    assert checked >= 15


def test_a_beam_search_method_records_its_width():
    run = resolve_run("pope", "llava", "opera", "official", method_overrides={"beam": 3})
    assert run.protocol.num_beams == 3 and run.sources["num_beams"] == "method:opera"
    assert resolve_run("coco", "llava", "baseline").protocol.num_beams == 1


def test_the_scripts_restate_no_preset_value_and_their_variables_name_real_parameters():
    """Preset values have one home, the method registry (``python -m eval.methods --resolve PRESET --benchmark B``
    prints them): no script restates one in a comment or a variable block. The parameter variables the shared library
    reads (``METHOD_VARIABLES`` in scripts/lib/run.sh) name real parameters of their methods."""
    mapping_text = (PROJECT_ROOT / "scripts/lib/run.sh").read_text()
    variables = {m: dict(pair.split("=") for pair in pairs.split())
                 for m, pairs in re.findall(r'\[(\w+)\]="([^"]+)"', mapping_text)}
    assert set(variables) == {"sparc", "avisc", "vcd", "m3id"}
    for method, pairs in variables.items():
        assert set(pairs.values()) <= {field.name for field in get_method(method).param_fields()}, method
    names = {variable for pairs in variables.values() for variable in pairs}
    for script in sorted((PROJECT_ROOT / "scripts").glob("**/*.sh")):
        text = script.read_text()
        assert not re.search(r"\((paper|scripts|official) preset\)", text), script
        assert not re.search(r"MAX_NEW_TOKENS \(\d+\)|SEED=\S* *# *\d", text), script
        if script.parent.name != "lib":
            assert not [name for name in names if re.search(rf"^{name}=|[ ;]{name}=\$", text, re.M)], script
