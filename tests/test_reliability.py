"""Runs under faults and bad input: duplicate ids and bad lines recorded and skipped, an answers file deleted in the
middle of a run, unwritable or full output folders found early and said in one line, a sample that runs out of
memory, progress in logs."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval import caption, vqa
from eval.benchmarks.samples import Sample
from eval.files import InputError
from eval.runner import AppendLog, Runner, RunPaths

PYTHON = sys.executable


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def images(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"img{index}.jpg")
        names.append(f"img{index}.jpg")
    return names


def pope_run(golden_dir: Path, tmp_path: Path, rows: list[str], *extra: str) -> int:
    images(tmp_path / "images", 2)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(row + "\n" for row in rows))
    return vqa.main(["--benchmark", "pope", "--method", "baseline", "--model-path", str(golden_dir / "tiny-llava-v1.5"),
                     "--image-folder", str(tmp_path / "images"), "--question-file", str(questions), "--max-new-tokens",
                     "2", "--save-path", str(tmp_path / "out"), "--experiment-name", "run", *extra])


def q(question_id, image="img0.jpg", text="Is there a dog?") -> str:
    return json.dumps({"question_id": question_id, "image": image, "text": text, "label": "no"})


def test_bad_question_lines_duplicates_and_empty_questions_are_recorded_and_skipped(golden_dir, tmp_path):
    """Each bad record is written to _errors.jsonl with its file, line and id, and counted; the first occurrence of
    a repeated id is kept; the run goes on and exits 0."""
    rows = [q(1), "{not json", json.dumps({"question_id": 2, "image": "img1.jpg"}), q(3, "img1.jpg"), q(1, "img1.jpg"),
            q(4, text="   "), q(5), q(6, text=None), q(7, image=5)]
    assert pope_run(golden_dir, tmp_path, rows) == 0
    out = tmp_path / "out"
    assert [a["question_id"] for a in lines(out / "run.jsonl")] == [1, 3, 5]
    errors = lines(out / "run_errors.jsonl")
    questions = str(tmp_path / "questions.jsonl")
    assert [(e["kind"], e["file"], e["line"], e["id"]) for e in errors] == [
        ("input", questions, 2, None), ("input", questions, 3, "2"), ("input", questions, 8, "6"),
        ("input", questions, 9, "7"), ("input", questions, 5, "1"), ("input", questions, 6, "4")]
    assert "not valid JSON" in errors[0]["reason"] and errors[1]["reason"] == "missing field(s) text"
    assert errors[2]["reason"] == "'text' is not a string (got null)"
    assert errors[3]["reason"] == "'image' is not a string (got 5)"
    assert errors[4]["reason"] == f"duplicate id (first at {questions}:1): skipped"
    assert errors[5]["reason"] == "empty question text: skipped"
    counts = json.loads((out / "run_results.json").read_text())["counts"]
    assert counts["input_problems"] == 6 and counts["skipped"] == 6 and counts["answered"] == 3
    assert pope_run(golden_dir, tmp_path, rows, "--strict") == 1  # --strict: bad input is a non-zero exit


def test_a_short_subset_is_warned_and_recorded(golden_dir, tmp_path, capsys):
    folder = tmp_path / "val2014"
    folder.mkdir()
    for image_id in (1, 2, 3, 4):
        Image.new("RGB", (20, 20), (image_id * 40, 0, 0)).save(folder / f"COCO_val2014_{image_id:012d}.jpg")
    assert caption.main(["--dataset-type", "coco", "--image-folder", str(folder), "--model-path",
                         str(golden_dir / "tiny-llava-v1.5"), "--method", "baseline", "--max-new-tokens", "2",
                         "--save-path", str(tmp_path), "--experiment-name", "run"]) == 0
    assert "4 samples available, fewer than the 500 the benchmark asks for" in capsys.readouterr().err
    subset = json.loads((tmp_path / "run_results.json").read_text())["subset"]
    assert subset == {"requested": 500, "available": 4, "used": 4, "short": True}


def _samples(folder: Path, count: int) -> list[Sample]:
    return [Sample(Path(n).stem, folder / n, "q", {"image_id": Path(n).stem}) for n in images(folder, count)]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_an_answers_file_deleted_mid_run_is_recreated(tmp_path, capsys, what):
    """The answers file (or its whole folder) is deleted after the second batch: the log notices that its path no
    longer names the open file, recreates it with everything it held and wrote, and the final file has every
    answer; the reported count is what is on disk."""
    samples = _samples(tmp_path / "images", 6)
    out = tmp_path / "out"
    paths = RunPaths(out, "run")
    calls = []

    def generate(batch, loaded_images):
        calls.append(len(batch))
        if len(calls) == 3:
            if what == "file":
                paths.answers.unlink()
            else:
                for path in out.iterdir():
                    path.unlink()
                out.rmdir()
        return [{"caption": f"caption of {s.key}"} for s in batch]

    runner = Runner(samples, generate, paths, {"x": 1}, "image_id", batch_size=2)
    runner.prepare({})
    report = runner.run()
    assert [r["image_id"] for r in lines(paths.answers)] == [s.key for s in samples]
    assert report.answered == 6 and report.answered_now == 6
    assert "was deleted or replaced during the run: recreated" in capsys.readouterr().err
    assert paths.manifest.is_file() and paths.config.is_file()


def test_append_log_recreates_a_replaced_file_with_its_earlier_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b"')  # a torn tail from a crash
    log = AppendLog(path)
    log.write([{"key": "c"}])
    path.unlink()
    path.write_text("something else\n")  # replaced by another file
    log.write([{"key": "d"}])
    log.close()
    assert path.read_text().splitlines() == ['{"key": "a"}', '{"key": "c"}', '{"key": "d"}']


def test_an_unwritable_output_folder_is_found_before_the_model_loads(golden_dir, tmp_path, monkeypatch):
    import llava.model.builder as builder

    monkeypatch.setattr(builder, "load_model", lambda *a, **k: pytest.fail("the model must not be loaded"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"cannot write to .*a-file/out: .*a-file is a file, not a folder; choose another --save-path"):
        caption.main(["--dataset-type", "folder", "--image-folder", str(golden_dir / "images"), "--model-path",
                      str(golden_dir / "tiny-llava-v1.5"), "--save-path", str(blocker / "out"), "--experiment-name", "x"])


def test_a_full_disk_is_one_line_that_says_what_to_do(golden_dir, tmp_path, monkeypatch):
    """ENOSPC while appending answers: one line, exit 2 through the CLI, nothing but what was written is lost."""

    def full(self, records):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(AppendLog, "write", full)
    with pytest.raises(InputError, match=r"^disk full writing .*run\.jsonl: the answers written so far are kept; free "
                                         r"space and rerun the same command to resume$"):
        caption.main(["--dataset-type", "folder", "--image-folder", str(golden_dir / "images"), "--model-path",
                      str(golden_dir / "tiny-llava-v1.5"), "--save-path", str(tmp_path), "--experiment-name", "run",
                      "--max-new-tokens", "2"])


def test_a_sample_out_of_memory_is_a_failed_sample(tmp_path):
    """A MemoryError (host memory) on one sample is recorded like any failure; the others are answered."""
    samples = _samples(tmp_path / "images", 4)

    def generate(batch, loaded_images):
        if any(s.key == "img2" for s in batch):
            raise MemoryError()
        return [{"caption": "ok"} for _ in batch]

    runner = Runner(samples, generate, RunPaths(tmp_path, "run"), {}, "image_id", batch_size=4)
    runner.prepare({})
    report = runner.run()
    assert [r["image_id"] for r in lines(tmp_path / "run.jsonl")] == ["img0", "img1", "img3"]
    assert [(e["key"], e["reason"]) for e in report.errors] == [("img2", "out of memory")]


def test_progress_lines_in_a_log(golden_dir, tmp_path):
    """stderr is not a terminal (a cluster job's log): periodic progress lines instead of a bar."""
    result = subprocess.run(
        [PYTHON, "-m", "eval.caption", "--dataset-type", "folder", "--image-folder", str(golden_dir / "images"),
         "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--max-new-tokens", "2", "--save-path", str(tmp_path),
         "--experiment-name", "run"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PROGRESS_EVERY": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    progress = [line for line in result.stderr.splitlines() if line.startswith("folder (sparc): ")]
    assert [line.split(",")[0] for line in progress] == ["folder (sparc): 1/3 (33%)", "folder (sparc): 2/3 (67%)",
                                                         "folder (sparc): 3/3 (100%)", "folder (sparc): 3/3 (100%)"]
    assert "min left" in progress[0]


def test_a_tiny_instructblip_runs_by_name(tmp_path):
    """The trial models are names every entry point accepts (here the runner, for InstructBLIP)."""
    images(tmp_path / "images", 1)
    assert caption.main(["--dataset-type", "folder", "--image-folder", str(tmp_path / "images"), "--model-path",
                         "tiny-instructblip", "--method", "avisc", "--max-new-tokens", "2", "--save-path",
                         str(tmp_path / "out"), "--experiment-name", "run"]) == 0
    config = json.loads((tmp_path / "out" / "run_results.json").read_text())["config"]
    assert config["family"] == "instructblip" and config["method_params"]["cd_alpha"] == 3.0


def test_a_smaller_limit_keeps_the_answers_file_equal_to_the_run(golden_dir, tmp_path):
    """A finished run of 3, then the same run with --limit 1: the answers file holds exactly the run's sample (as
    its manifest says); the other answers are kept aside and reused when a later run includes them again."""
    args = ["--dataset-type", "folder", "--image-folder", str(golden_dir / "images"), "--model-path",
            str(golden_dir / "tiny-llava-v1.5"), "--method", "baseline", "--max-new-tokens", "2", "--save-path",
            str(tmp_path), "--experiment-name", "run"]
    assert caption.main(args) == 0
    full = lines(tmp_path / "run.jsonl")
    assert caption.main([*args, "--limit", "1"]) == 0
    assert lines(tmp_path / "run.jsonl") == full[:1]
    assert json.loads((tmp_path / "run_manifest.json").read_text())["ids"] == [full[0]["image_id"]]
    assert caption.main(args) == 0
    assert lines(tmp_path / "run.jsonl") == full
    results = json.loads((tmp_path / "run_results.json").read_text())
    assert results["counts"]["answered_this_run"] == 0  # the two kept answers were reused, nothing recomputed


def test_another_image_folder_is_a_changed_setting(golden_dir, tmp_path):
    """Same file names in another folder are other images: resuming would reuse captions of the old ones."""
    other = tmp_path / "other"
    other.mkdir()
    for path in (golden_dir / "images").iterdir():
        Image.new("RGB", (30, 20), (10, 20, 30)).save(other / path.name)
    args = ["--dataset-type", "folder", "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--method", "baseline",
            "--max-new-tokens", "2", "--save-path", str(tmp_path / "out"), "--experiment-name", "run"]
    assert caption.main([*args, "--image-folder", str(golden_dir / "images")]) == 0
    with pytest.raises(InputError, match=r"data\.image_folder: .*images' -> .*other'"):
        caption.main([*args, "--image-folder", str(other)])


def test_pope_scores_against_the_question_file_the_run_used(golden_dir, tmp_path):
    """A run on its own question file, named like a shipped split: the scorer takes the labels of the file the run
    recorded, not of the shipped file its name points to."""
    from eval import pope

    images(tmp_path / "images", 2)
    rows = [{"question_id": i, "image": f"img{i % 2}.jpg", "text": "Is there a dog?", "label": "yes" if i else "no"}
            for i in range(3)]
    questions = tmp_path / "mine.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert vqa.main(["--benchmark", "pope", "--method", "baseline", "--model-path", str(golden_dir / "tiny-llava-v1.5"),
                     "--image-folder", str(tmp_path / "images"), "--question-file", str(questions),
                     "--max-new-tokens", "2", "--save-path", str(tmp_path), "--experiment-name",
                     "baseline_coco_pope_random"]) == 0
    answers = tmp_path / "baseline_coco_pope_random.jsonl"
    assert pope.main(["--answers", str(answers), "--save_path", str(tmp_path / "m.json")]) == 0
    setting = json.loads((tmp_path / "m.json").read_text())["settings"]["coco/random"]
    assert setting["question_file"] == str(questions.resolve())
    assert setting["counts"]["questions"] == 3 and setting["counts"]["scored"] == 3
