"""Faults found by replaying bug reports and by fault injection, each tested over its family: stale resumes after an
input changed in place, two runs on one output, hostile question lines and image names, images outside the image
folder, files that are not strict JSON, questions longer than the model's context, unreadable checkpoints, a rank
that does not come."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval import caption, vqa
from eval.files import parse_json, write_json_atomic

PYTHON = sys.executable


def image(path: Path, seed: int = 0, size: tuple[int, int] = (32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def lines(path: Path) -> list[dict]:
    return [parse_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


def strict(path: Path) -> None:
    """Every file a run wrote parses as strict JSON (no NaN / Infinity, no unpaired surrogate)."""
    for file in path.iterdir():
        if file.suffix == ".jsonl":
            lines(file)
        elif file.suffix == ".json":
            parse_json(file.read_bytes())


def pope(golden_dir: Path, tmp_path: Path, questions: Path, *extra: str, name: str = "run") -> int:
    return vqa.main(["--benchmark", "pope", "--method", "baseline", "--model-path", str(golden_dir / "tiny-llava-v1.5"),
                     "--image-folder", str(tmp_path / "images"), "--question-file", str(questions),
                     "--max-new-tokens", "2", "--save-path", str(tmp_path / "out"), "--experiment-name", name, *extra])


def rows(texts: dict[int, tuple[str, str]], label: str = "no") -> str:
    return "".join(json.dumps({"question_id": i, "image": im, "text": t, "label": label}) + "\n"
                   for i, (im, t) in texts.items())


# ---------------------------------------------------------------------------------------------------------------
# 1. a resume never keeps answers of inputs that changed


@pytest.mark.parametrize("change", ["question text", "image bytes", "label field", "image path"])
def test_a_sample_changed_in_place_is_answered_again_and_nothing_else(golden_dir, tmp_path, capsys, change):
    for index in range(3):
        image(tmp_path / "images" / f"img{index}.jpg", index)
    questions = tmp_path / "q.jsonl"
    original = {i: (f"img{i % 3}.jpg", f"Is there a dog number {i}?") for i in range(6)}
    questions.write_text(rows(original))
    assert pope(golden_dir, tmp_path, questions) == 0
    before = {r["question_id"]: r for r in lines(tmp_path / "out" / "run.jsonl")}
    edited = dict(original)
    if change == "question text":
        edited[2], edited[3] = ("img2.jpg", "Is there a cat?"), ("img0.jpg", "Is there a car?")
        questions.write_text(rows(edited))
        expect = {2, 3}
    elif change == "image bytes":  # img1 is the image of questions 1 and 4
        image(tmp_path / "images" / "img1.jpg", 99)
        expect = {1, 4}
    elif change == "label field":  # copied into the answer lines
        questions.write_text(rows({i: q for i, q in edited.items() if i != 5}) + rows({5: edited[5]}, label="yes"))
        expect = {5}
    else:
        image(tmp_path / "images" / "other.jpg", 2)
        edited[0] = ("other.jpg", original[0][1])
        questions.write_text(rows(edited))
        expect = {0}
    capsys.readouterr()
    assert pope(golden_dir, tmp_path, questions) == 0
    out = capsys.readouterr()
    assert f"{len(expect)} new this run" in out.out
    assert f"{len(expect)} sample(s) changed since they were answered" in out.err
    after = {r["question_id"]: r for r in lines(tmp_path / "out" / "run.jsonl")}
    for qid in range(6):
        if qid in expect:
            assert after[qid]["input_sha256"] != before[qid]["input_sha256"]
            assert (after[qid]["image"], after[qid]["prompt"]) == edited[qid] and after[qid]["label"] in ("yes", "no")
        else:
            assert after[qid] == before[qid]
    capsys.readouterr()
    assert pope(golden_dir, tmp_path, questions) == 0  # and a third run recomputes nothing
    assert "0 new this run" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# 2. one run at a time on one output


HOLD = """
import sys, time
from eval.files import ExclusiveLock
lock = ExclusiveLock(sys.argv[1], "the run").acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder_and_a_killed_holder_never_blocks(golden_dir,
                                                                                                          tmp_path):
    image(tmp_path / "images" / "a.jpg")
    args = ["--dataset-type", "folder", "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--method", "baseline",
            "--image-folder", str(tmp_path / "images"), "--max-new-tokens", "2", "--save-path", str(tmp_path / "out"),
            "--experiment-name", "run"]
    holder = subprocess.Popen([PYTHON, "-c", HOLD, str(tmp_path / "out" / "run.jsonl")], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        result = subprocess.run([PYTHON, "-m", "eval.caption", *args], capture_output=True, text=True, timeout=120,
                                cwd=Path(__file__).resolve().parents[1])
        assert result.returncode == 2 and time.perf_counter() - started < 60
        assert len(result.stderr.strip().splitlines()) == 1 and f"pid {holder.pid}" in result.stderr
        assert not (tmp_path / "out" / "run.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert caption.main(args) == 0  # the dead holder's lock file is taken over
    assert len(lines(tmp_path / "out" / "run.jsonl")) == 1
    assert not (tmp_path / "out" / "run.jsonl.lock").exists()


def test_two_real_runs_at_once_never_mix_their_answers(golden_dir, tmp_path):
    """Two runner processes started together on one experiment: one runs, the other is refused at once; the answers
    file holds exactly the running one's answers."""
    for index in range(12):
        image(tmp_path / "images" / f"img{index:02d}.jpg", index)
    cwd = Path(__file__).resolve().parents[1]

    def start(tokens: str) -> subprocess.Popen:
        return subprocess.Popen([PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--model-path",
                                 str(golden_dir / "tiny-llava-v1.5"), "--method", "baseline", "--image-folder",
                                 str(tmp_path / "images"), "--max-new-tokens", tokens, "--save-path",
                                 str(tmp_path / "out"), "--experiment-name", "run"], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first, second = start("24"), start("3")
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], outputs
    refused = outputs[[first.returncode, second.returncode].index(2)][1]
    assert "is in use by pid" in refused
    ran = "24" if first.returncode == 0 else "3"
    assert json.loads((tmp_path / "out" / "run_config.json").read_text())["protocol"]["max_new_tokens"] == int(ran)
    assert len(lines(tmp_path / "out" / "run.jsonl")) == 12


# ---------------------------------------------------------------------------------------------------------------
# 6-8. hostile lines and names: recorded, the run goes on; everything written is strict JSON


HOSTILE = {
    "non-UTF-8 byte": b'{"question_id": 9, "image": "img0.jpg", "text": "Is there a \xff dog?", "label": "no"}\n',
    "deep nesting": b'{"question_id": 9, "image": "img0.jpg", "text": "q", "label": "no", "x": ' + b"[" * 100000
                    + b"]" * 100000 + b"}\n",
    "surrogate in the id": b'{"question_id": "\\ud800", "image": "img0.jpg", "text": "q", "label": "no"}\n',
    "surrogate in the image name": b'{"question_id": 9, "image": "img\\udc80.jpg", "text": "q", "label": "no"}\n',
    "surrogate in the text": b'{"question_id": 9, "image": "img0.jpg", "text": "is it \\ud83d?", "label": "no"}\n',
    "NaN value": b'{"question_id": 9, "image": "img0.jpg", "text": "q", "label": "no", "score": NaN}\n',
    "Infinity value": b'{"question_id": 9, "image": "img0.jpg", "text": "q", "label": "no", "score": -Infinity}\n',
    "image name over 255 bytes": json.dumps({"question_id": 9, "image": "x" * 300 + ".jpg", "text": "q",
                                             "label": "no"}).encode() + b"\n",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_line_is_a_recorded_bad_line_and_the_run_goes_on(golden_dir, tmp_path, kind):
    image(tmp_path / "images" / "img0.jpg")
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(rows({1: ("img0.jpg", "Is there a dog?")}).encode() + HOSTILE[kind]
                          + rows({2: ("img0.jpg", "Is there a cat?")}).encode())
    for attempt in range(2):  # and every rerun, at the same line
        assert pope(golden_dir, tmp_path, questions) == 0
        assert [r["question_id"] for r in lines(tmp_path / "out" / "run.jsonl")] == [1, 2]
        (problem,) = lines(tmp_path / "out" / "run_errors.jsonl")
        if kind == "image name over 255 bytes":  # a valid line whose image cannot be opened: a failed sample
            assert problem["key"] == "9" and "cannot be opened (File name too long)" in problem["reason"]
        else:
            assert (problem["kind"], problem["file"], problem["line"]) == ("input", str(questions), 2)
        strict(tmp_path / "out")


def test_a_folder_image_name_that_is_not_utf8_is_a_recorded_problem(golden_dir, tmp_path):
    folder = tmp_path / "images"
    image(folder / "good.jpg")
    image(Path(os.fsdecode(bytes(folder) + b"/bad\xff.jpg")))
    assert caption.main(["--dataset-type", "folder", "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--method",
                         "baseline", "--image-folder", str(folder), "--max-new-tokens", "2", "--save-path",
                         str(tmp_path / "out"), "--experiment-name", "run"]) == 0
    assert [r["image_id"] for r in lines(tmp_path / "out" / "run.jsonl")] == ["good"]
    (problem,) = lines(tmp_path / "out" / "run_errors.jsonl")
    assert "not UTF-8" in problem["reason"] and "bad\\xff.jpg" in problem["reason"]
    strict(tmp_path / "out")


def test_writers_refuse_what_strict_json_cannot_hold(tmp_path):
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            write_json_atomic(tmp_path / "x.json", {"score": value})
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# 7. images outside the image folder


@pytest.mark.parametrize("how", ["absolute path", "parent path", "symbolic link"])
def test_an_image_outside_the_image_folder_is_recorded_and_refused_under_strict(golden_dir, tmp_path, how):
    image(tmp_path / "images" / "img0.jpg")
    outside = tmp_path / "secret" / "x.jpg"
    image(outside, 5)
    if how == "absolute path":
        name = str(outside)
    elif how == "parent path":
        name = "../secret/x.jpg"
    else:
        (tmp_path / "images" / "link.jpg").symlink_to(outside)
        name = "link.jpg"
    questions = tmp_path / "q.jsonl"
    questions.write_text(rows({1: ("img0.jpg", "Is there a dog?"), 2: (name, "Is there a cat?")}))
    assert pope(golden_dir, tmp_path, questions) == 0
    assert [r["question_id"] for r in lines(tmp_path / "out" / "run.jsonl")] == [1, 2]  # run, with a notice
    (notice,) = lines(tmp_path / "out" / "run_errors.jsonl")
    assert notice["kind"] == "input" and "outside the image folder" in notice["reason"] and notice["skipped"] is False
    assert json.loads((tmp_path / "out" / "run_results.json").read_text())["counts"]["input_notices"] == 1
    assert pope(golden_dir, tmp_path, questions, "--strict", name="strict") == 1
    assert [r["question_id"] for r in lines(tmp_path / "out" / "strict.jsonl")] == [1]
    (refused,) = lines(tmp_path / "out" / "strict_errors.jsonl")
    assert "refused (--strict)" in refused["reason"] and "skipped" not in refused


# ---------------------------------------------------------------------------------------------------------------
# 9. a question longer than the context


@pytest.mark.parametrize("size", [20_000, 5_000_000])
def test_a_question_longer_than_the_context_fails_without_tokenising_all_of_it(golden_dir, tmp_path, size,
                                                                               monkeypatch):
    from eval import generation_setup

    seen: list[int] = []
    check = generation_setup.check_question_length

    def watched(question, tokenizer, context):
        class Counting:
            def __call__(self, text, **kwargs):
                seen.append(len(text))
                return tokenizer(text, **kwargs)
        return check(question, Counting(), context)

    monkeypatch.setattr(generation_setup, "check_question_length", watched)
    image(tmp_path / "images" / "img0.jpg")
    questions = tmp_path / "q.jsonl"
    questions.write_text(rows({1: ("img0.jpg", "Is there a dog?"), 2: ("img0.jpg", "is it a dog ? " * (size // 14))}))
    started = time.perf_counter()
    assert pope(golden_dir, tmp_path, questions) == 0
    assert time.perf_counter() - started < 60
    assert [r["question_id"] for r in lines(tmp_path / "out" / "run.jsonl")] == [1]
    (failed,) = lines(tmp_path / "out" / "run_errors.jsonl")
    assert "longer than the model's context" in failed["reason"] and "shorten it" in failed["reason"]
    assert max(seen) <= 4 * 4096 * 2  # a prefix of the question, never all of it


# ---------------------------------------------------------------------------------------------------------------
# small ones


def test_a_checkpoint_transformers_refuses_is_one_line(tmp_path):
    """A checkpoint whose weights transformers will not load (here: a pickle file that is not a state dict) is one
    line naming the folder, exit 2, no traceback."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": {"num_hidden_layers": 2},
                                                    "vision_config": {}}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95not a state dict")
    image(tmp_path / "images" / "a.jpg")
    result = subprocess.run([PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--model-path", str(folder),
                             "--method", "baseline", "--image-folder", str(tmp_path / "images"), "--save-path",
                             str(tmp_path / "out"), "--experiment-name", "x"], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and str(folder) in result.stderr


RANKS = """
import os, sys, time
from eval.runner import Distributed
dist = Distributed.current()
dist.barrier("the start")
if dist.rank == 1:
    time.sleep(60)
try:
    dist.barrier("the end of its share of the samples")
except Exception as e:
    print(f"rank {dist.rank}: {type(e).__name__}: {e}", flush=True)
    os._exit(3)
"""


def test_a_rank_that_does_not_come_is_named_within_the_bounded_wait(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    started = time.perf_counter()
    result = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                             str(31500 + os.getpid() % 1000), str(script)], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "RANK_WAIT_SECONDS": "5"})
    assert time.perf_counter() - started < 60
    assert "rank 0: InputError: rank 0: rank(s) 1 did not reach the end of its share of the samples within" in result.stdout
