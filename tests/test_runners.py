"""The benchmark runners end to end on the golden tiny LLaVA-1.5 and a tiny InstructBLIP: outputs, faithfulness to
the official captions, resume after kill -9, sharding with accelerate, bad inputs, out-of-memory halving."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MME_GT
from eval import caption, vqa
from eval.benchmarks import DataSettings, get_benchmark
from eval.benchmarks.samples import Sample
from llava.settings import Protocol
from eval.runner import ConfigMismatch, Runner, RunPaths

PYTHON = sys.executable


def tiny_llava(golden_dir: Path) -> str:
    return str(golden_dir / "tiny-llava-v1.5")


def noise_images(folder: Path, count: int, size: tuple[int, int] = (64, 48)) -> list[str]:
    """``count`` different random JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for index in range(count):
        name = f"img{index:02d}.jpg"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def caption_args(model: str, images: Path, out: Path, name: str, *extra: str) -> list[str]:
    """A folder-captioning run, 6 new tokens unless ``extra`` says otherwise."""
    tokens = [] if "--max-new-tokens" in extra else ["--max-new-tokens", "6"]
    return ["--model-path", model, "--dataset-type", "folder", "--image-folder", str(images), "--save-path", str(out),
            "--experiment-name", name, *tokens, *extra]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_caption_runner_reproduces_the_official_captions(golden_dir, tmp_path):
    """eval.caption with the paper's SPARC parameters writes the official captions (golden), in sorted order."""
    golden = json.loads((golden_dir / "sparc_golden.json").read_text())
    case = next(c for c in golden["cases"] if c["name"] == "paper")
    code = caption.main(caption_args(
        tiny_llava(golden_dir), golden_dir / "images", tmp_path, "paper", "--max-new-tokens", str(golden["max_new_tokens"]),
        *[f"--{k.replace('_', '-')}={v}" for k, v in case["params"].items()], "--batch-size", "2",
    ))
    assert code == 0
    records = lines(tmp_path / "paper.jsonl")
    expected = {Path(o["image"]).stem: o["caption"] for o in case["outputs"]}
    assert [r["image_id"] for r in records] == sorted(expected)
    assert {r["image_id"]: r["caption"] for r in records} == expected
    results = json.loads((tmp_path / "paper_results.json").read_text())
    assert results["config"]["method_params"] == {**case["params"]}
    assert results["config"]["method"] == "sparc" and results["config"]["preset"] == "paper"
    assert results["seed"] == 42 and results["counts"]["answered"] == len(expected)
    assert {"torch", "transformers", "commit"} <= set(results["environment"])
    manifest = json.loads((tmp_path / "paper_manifest.json").read_text())
    assert manifest["ids"] == sorted(expected) and results["manifest_sha256"] == manifest["sha256"]


def test_resume_after_kill_gives_the_same_file(golden_dir, tmp_path):
    """kill -9 in the middle of a real run, plus a torn last line: the rerun's final file equals an uninterrupted one."""
    images = tmp_path / "images"
    noise_images(images, 8)
    model = tiny_llava(golden_dir)
    assert caption.main(caption_args(model, images, tmp_path / "whole", "run", "--batch-size", "2")) == 0

    args = [PYTHON, "-m", "eval.caption", *caption_args(model, images, tmp_path / "killed", "run", "--batch-size", "1")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers = tmp_path / "killed" / "run.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not answers.is_file() or len(answers.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(answers.read_text().splitlines())
    assert 3 <= done_before < 8, "the kill must land in the middle of the run"
    with answers.open("a") as f:
        f.write('{"image_id": "img07", "capt')  # a torn write
    assert caption.main(caption_args(model, images, tmp_path / "killed", "run", "--batch-size", "3")) == 0
    assert answers.read_bytes() == (tmp_path / "whole" / "run.jsonl").read_bytes()
    assert json.loads((tmp_path / "killed" / "run_results.json").read_text())["counts"]["answered_this_run"] == 8 - done_before


def test_changed_settings_are_refused_unless_overwrite(golden_dir, tmp_path):
    images = tmp_path / "images"
    noise_images(images, 2)
    model = tiny_llava(golden_dir)
    assert caption.main(caption_args(model, images, tmp_path, "run")) == 0
    with pytest.raises(ConfigMismatch, match=r"method_params\.tau: 1\.5 -> 2\.0.*--overwrite \(scripts: OVERWRITE=1\) "
                                             r"or another --save-path \(scripts: SAVE_PATH\)"):
        caption.main(caption_args(model, images, tmp_path, "run", "--tau", "2.0"))
    assert caption.main(caption_args(model, images, tmp_path, "run", "--tau", "2.0", "--overwrite")) == 0
    assert json.loads((tmp_path / "run_config.json").read_text())["method_params"]["tau"] == 2.0


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_really_split_the_work(golden_dir, tmp_path, launcher):
    """Two real CPU processes (``torch.distributed.run``, or ``accelerate launch`` with two processes): each rank
    answers about half of the samples into its shard, rank 0 merges; the file equals a one-process run, and
    ``_results.json`` records the world size and each rank's count."""
    images = tmp_path / "images"
    noise_images(images, 5)
    model = tiny_llava(golden_dir)
    assert caption.main(caption_args(model, images, tmp_path / "one", "run")) == 0
    if launcher == "torchrun":
        launch = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000)]
    else:
        launch = [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--main_process_port", str(29500 + os.getpid() % 1000 + 1), "--mixed_precision", "no",
                  "--dynamo_backend", "no"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([*launch, "-m", "eval.caption", *caption_args(model, images, tmp_path / "two", "run")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "two" / "run.jsonl").read_bytes() == (tmp_path / "one" / "run.jsonl").read_bytes()
    assert not list((tmp_path / "two").glob(".run.*.rank*.jsonl")), "shard files are merged and removed"
    distributed = json.loads((tmp_path / "two" / "run_results.json").read_text())["distributed"]
    assert distributed["world_size"] == 2 and sorted(distributed["answered_per_rank"]) == [2, 3]


def test_bad_images_are_skipped_recorded_and_retried(golden_dir, tmp_path):
    images = tmp_path / "images"
    noise_images(images, 2)
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("not an image")
    good = (images / "img00.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(good[: len(good) // 3])
    Image.new("RGB", (1, 1)).save(images / "tiny.png")
    Image.new("RGB", (30000, 20), (40, 90, 160)).save(images / "huge.png")  # pad-to-square: 900M pixels
    model = tiny_llava(golden_dir)
    assert caption.main(caption_args(model, images, tmp_path / "out", "run")) == 0
    out = tmp_path / "out"
    answered = {r["image_id"] for r in lines(out / "run.jsonl")}
    errors = {e["key"]: e["reason"] for e in lines(out / "run_errors.jsonl")}
    assert answered == {"img00", "img01"}
    assert set(errors) == {"empty", "text", "truncated", "tiny", "huge"}
    assert all(str(images) in reason for reason in errors.values())
    assert "30000x20" in errors["huge"] and "89,478,485" in errors["huge"]
    counts = json.loads((out / "run_results.json").read_text())["counts"]
    assert counts["skipped"] == 5 and counts["answered"] == 2
    assert caption.main(caption_args(model, images, out, "run", "--strict")) == 1, "--strict: non-zero with skips"
    Image.new("RGB", (40, 40), (0, 0, 0)).save(images / "tiny.png")  # fixed: the rerun retries it
    assert caption.main(caption_args(model, images, out, "run")) == 0
    assert "tiny" in {r["image_id"] for r in lines(out / "run.jsonl")}
    assert "tiny" not in {e["key"] for e in lines(out / "run_errors.jsonl")}


def test_every_sample_failing_exits_non_zero(golden_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_text("no")
    assert caption.main(caption_args(tiny_llava(golden_dir), images, tmp_path / "out", "run")) == 1


def test_out_of_memory_halves_the_batch(tmp_path, capsys):
    """An injected CUDA out-of-memory error on batches larger than 2: the runner halves them and says so once."""
    folder = tmp_path / "images"
    names = noise_images(folder, 7, (8, 8))
    samples = [Sample(Path(n).stem, folder / n, "q", {"image_id": Path(n).stem}) for n in names]
    seen = []

    def generate(batch, images):
        seen.append(len(batch))
        if len(batch) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return [{"caption": f"caption of {s.key}"} for s in batch]

    runner = Runner(samples, generate, RunPaths(tmp_path, "run"), {"x": 1}, "image_id", batch_size=7)
    runner.prepare({})
    report = runner.run()
    assert [r["image_id"] for r in lines(tmp_path / "run.jsonl")] == [s.key for s in samples]
    assert report.errors == [] and report.oom_halvings == 3  # 7 -> 3 + 4, 3 -> 1 + 2, 4 -> 2 + 2
    assert seen == [7, 3, 1, 2, 4, 2, 2]
    assert capsys.readouterr().err.count("out of GPU memory") == 1


def test_a_failing_sample_is_isolated_from_its_batch(tmp_path):
    folder = tmp_path / "images"
    names = noise_images(folder, 4, (8, 8))
    samples = [Sample(Path(n).stem, folder / n, "q", {"image_id": Path(n).stem}) for n in names]

    def generate(batch, images):
        if any(s.key == "img02" for s in batch):
            raise ValueError("prompt too long")
        return [{"caption": "ok"} for _ in batch]

    runner = Runner(samples, generate, RunPaths(tmp_path, "run"), {}, "image_id", batch_size=4)
    runner.prepare({})
    report = runner.run()
    assert [r["image_id"] for r in lines(tmp_path / "run.jsonl")] == ["img00", "img01", "img03"]
    assert [e["key"] for e in report.errors] == ["img02"] and "prompt too long" in report.errors[0]["reason"]


def test_coco_subset_manifest_round_trip(golden_dir, tmp_path):
    """COCO ids from file names, the seeded draw from the sorted folder, and --subset-manifest replays it."""
    images = tmp_path / "val2014"
    images.mkdir()
    rng = np.random.default_rng(1)
    for image_id in (9, 25, 42, 73, 74, 133):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(images / f"COCO_val2014_{image_id:012d}.jpg")
    model = tiny_llava(golden_dir)
    base = ["--model-path", model, "--dataset-type", "coco", "--image-folder", str(images), "--save-path", str(tmp_path),
            "--max-new-tokens", "2", "--alpha", "1.0"]
    assert caption.main([*base, "--num-samples", "3", "--experiment-name", "first"]) == 0
    import random
    expected = random.Random(42).sample(sorted(p.name for p in images.iterdir()), 3)
    assert [r["image_id"] for r in lines(tmp_path / "first.jsonl")] == [int(n[-10:-4]) for n in expected]
    assert caption.main([*base, "--experiment-name", "again", "--seed", "7",
                         "--subset-manifest", str(tmp_path / "first_manifest.json")]) == 0
    assert [r["image_id"] for r in lines(tmp_path / "again.jsonl")] == [r["image_id"] for r in lines(tmp_path / "first.jsonl")]


def read(benchmark: str, problems: list | None = None, protocol: Protocol = Protocol(prompt="q"), **data):
    """The samples a benchmark's reader gives for these data settings."""
    return get_benchmark(benchmark).read(DataSettings(**data), protocol, [] if problems is None else problems)


def test_iiw_and_docci_readers(tmp_path):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"image/key": f"aar_{i}", "IIW": "x"}) + "\n" for i in range(4))
                                         + "{broken\n" + json.dumps({"other": 1}) + "\n")
    problems = []
    iiw_set = read("iiw", problems, image_folder=tmp_path, annotation_file=tmp_path / "data.jsonl")
    assert (iiw_set.requested, iiw_set.available, iiw_set.short) == (400, 4, True)  # IIW-400 is 400 images
    iiw = iiw_set.samples
    assert [s.key for s in iiw] == [f"aar_{i}" for i in range(4)] and iiw[0].image_path == tmp_path / "aar_0.jpg"
    assert [p.line for p in problems] == [5, 6]
    assert [s.origin for s in iiw] == [f"{tmp_path / 'data.jsonl'}:{n}" for n in range(1, 5)]
    docci_lines = [{"image_file": f"test_{i:05d}.jpg", "description": "d"} for i in range(30)]
    (tmp_path / "docci.jsonl").write_text("".join(json.dumps(r) + "\n" for r in docci_lines))
    docci = read("docci", image_folder=tmp_path, annotation_file=tmp_path / "docci.jsonl", num_samples=5)
    import random
    assert [s.key for s in docci.samples] == [r["image_file"] for r in random.Random(42).sample(docci_lines, 5)]
    assert (docci.requested, docci.available, docci.short) == (5, 30, False)
    assert read("docci", image_folder=tmp_path, annotation_file=tmp_path / "docci.jsonl", num_samples=500).short


def test_a_coco_folder_without_coco_names_names_the_pattern_the_alternatives_and_a_subfolder(tmp_path):
    """Photos of one's own, or the folder above val2014: one error naming the folder, the COCO file-name pattern and
    what to do (--dataset-type folder; the val2014 subfolder), not "no samples"."""
    from eval.files import InputError

    noise_images(tmp_path / "photos", 2)
    with pytest.raises(InputError) as error:
        read("coco", image_folder=tmp_path / "photos")
    assert str(error.value) == (f"{tmp_path / 'photos'}: none of its 2 images has a COCO file name (like "
                                "COCO_val2014_000000000139.jpg); for images of your own use --dataset-type folder "
                                "(the scripts: scripts/sparc_demo.sh)")
    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    (tmp_path / "photos" / "img00.jpg").rename(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000139.jpg")
    with pytest.raises(InputError, match=f"^{tmp_path / 'coco'}: no COCO images .* in this folder; its subfolder "
                                         f"val2014 holds them: use {tmp_path / 'coco' / 'val2014'}$"):
        read("coco", image_folder=tmp_path / "coco")
    (tmp_path / "photos" / "img01.jpg").rename(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000285.jpg")
    (tmp_path / "coco" / "val2014" / "notes.png").write_bytes(b"")
    problems = []  # some COCO names: the others are recorded problems, as before
    found = read("coco", problems, image_folder=tmp_path / "coco" / "val2014")
    assert [s.key for s in found.samples] == ["139", "285"] and len(problems) == 1


def test_vqa_pope_with_llava_and_instructblip_feeds_the_pope_scorer(golden_dir, tiny_instructblip, tmp_path):
    from eval import pope

    images = tmp_path / "images"
    noise_images(images, 2)
    questions = tmp_path / "q.jsonl"
    rows = [{"question_id": i + 1, "image": f"img0{i % 2}.jpg", "text": f"Is there a {w} in the image?",
             "label": "yes" if i % 2 else "no"} for i, w in enumerate(["dog", "cat", "car", "tree"])]
    questions.write_text("{broken\n" + "".join(json.dumps(r) + "\n" for r in rows))
    for model, name in ((tiny_llava(golden_dir), "llava"), (tiny_instructblip, "blip")):
        for method in ("baseline", "avisc"):
            code = vqa.main(["--benchmark", "pope", "--method", method, "--model-path", model, "--image-folder", str(images),
                             "--question-file", str(questions), "--save-path", str(tmp_path), "--experiment-name",
                             f"{name}_{method}", "--max-new-tokens", "4", "--batch-size", "2"])
            assert code == 0
            answers = lines(tmp_path / f"{name}_{method}.jsonl")
            assert [a["question_id"] for a in answers] == [1, 2, 3, 4]
            assert all({"prompt", "text", "model_id"} <= set(a) for a in answers)
            assert pope.main(["--answers", str(tmp_path / f"{name}_{method}.jsonl"), "--question_file", str(questions),
                              "--save_path", str(tmp_path / f"{name}_{method}_pope.json")]) == 0
            metrics = json.loads((tmp_path / f"{name}_{method}_pope.json").read_text())
            assert metrics["counts"]["scored"] == 4 if "scored" in metrics["counts"] else True
    config = json.loads((tmp_path / "blip_avisc_config.json").read_text())
    assert config["protocol"]["top_k"] == 50 and config["protocol"]["max_new_tokens"] == 4
    assert config["method_params"]["cd_alpha"] == 3.0  # the paper's InstructBLIP alpha


def test_vqa_mme_and_amber_readers(tmp_path):
    (tmp_path / "existence").mkdir()
    (tmp_path / "artwork" / "images").mkdir(parents=True)
    (tmp_path / "artwork" / "images" / "10.jpg").write_bytes(b"x")
    qs = [{"question_id": "existence/1.jpg", "image": "existence/1.jpg", "text": "Is there a dog?\nAnswer the question using a single word or phrase.", "category": "existence"},
          {"question_id": "existence/1.jpg", "image": "existence/1.jpg", "text": "Is there a cat?", "category": "existence"},
          {"question_id": "artwork/10.jpg", "image": "artwork/10.jpg", "text": "Is it a painting?"}]
    (tmp_path / "mme.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    samples = read("mme", image_folder=tmp_path, question_file=tmp_path / "mme.jsonl").samples
    assert [s.key for s in samples] == ["existence/1.jpg#0", "existence/1.jpg#1", "artwork/10.jpg#0"]
    assert samples[0].question == "Is there a dog?" and samples[0].fields["category"] == "existence"
    assert samples[2].image_path == tmp_path / "artwork" / "images" / "10.jpg"
    assert samples[2].fields["category"] == "artwork"
    (tmp_path / "q.json").write_text(json.dumps([{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
                                                 {"id": 2, "image": "AMBER_2.jpg"}]))
    problems = []
    amber = read("amber", problems, image_folder=tmp_path, question_file=tmp_path / "q.json").samples
    assert [s.key for s in amber] == ["1"] and len(problems) == 1


def test_mme_questions_from_the_ground_truth_folder_score_back(tmp_path):
    """Every MME ground-truth question becomes a sample (without "Please answer yes or no.", as LLaVA's MME
    questions), and answers written with the runner's fields are matched back to all of them by the MME scorer."""
    from eval import mme

    problems = []
    samples = read("mme", problems, image_folder=tmp_path, question_file=MME_GT).samples
    assert len(samples) == 2374 and not problems
    assert not any("Please answer" in s.question for s in samples)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({**s.fields, "text": "Yes"}) + "\n" for s in samples))
    assert mme.main(["--answers", str(answers), "--gt_dir", str(MME_GT),
                     "--save_path", str(tmp_path / "mme.json")]) == 0
    result = json.loads((tmp_path / "mme.json").read_text())
    assert result["problems"] == []


@pytest.mark.parametrize("ids", [[1.0, 2.0, 3.0], [1, "2", " 3 ", "4.0"]])
def test_pope_ids_written_in_any_form_are_answered_kept_and_scored(golden_dir, tmp_path, ids):
    """The runner files each answer under the same key as its sample (``eval.files.record_key``), so ids like 2.0 or
    " 3 " are neither dropped nor redone on a rerun, and the scorer pairs them with the question file."""
    from eval import pope

    images = tmp_path / "images"
    noise_images(images, 1)
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question_id": qid, "image": "img00.jpg", "text": "Is there a dog?",
                                             "label": "yes"}) + "\n" for qid in ids))
    argv = ["--benchmark", "pope", "--model-path", tiny_llava(golden_dir), "--image-folder", str(images),
            "--question-file", str(questions), "--save-path", str(tmp_path), "--experiment-name", "run",
            "--max-new-tokens", "2", "--batch-size", "2"]
    assert vqa.main(argv) == 0
    assert len(lines(tmp_path / "run.jsonl")) == len(ids)
    assert vqa.main(argv) == 0  # resumed: nothing redone, nothing lost
    assert json.loads((tmp_path / "run_results.json").read_text())["counts"]["answered_this_run"] == 0
    assert pope.main(["--answers", str(tmp_path / "run.jsonl"), "--question_file", str(questions)]) == 0
    assert json.loads((tmp_path / "run_pope.json").read_text())["counts"]["scored"] == len(ids)


@pytest.mark.parametrize("decoding", [["--decoding", "greedy"], ["--decoding", "sample"], ["--num-beams", "2"]])
def test_a_sample_whose_logits_overflow_fails_with_its_step_and_the_run_goes_on(golden_dir, tmp_path, monkeypatch,
                                                                                   decoding):
    """The float16-overflow reports (VCD, Qwen): one image's features become NaN, so its logits are NaN from the first
    step. Greedy, sampling and beam search alike: that sample is a failed sample (id, step), the others are answered."""
    from llava.model.families.llava.model import LlavaFamily

    features = LlavaFamily.image_features

    def overflowing(self, model, images):
        blocks = features(self, model, images)
        return [torch.full_like(b, float("nan")) if float(p.mean()) > 1.5 else b  # the white image
                for b, p in zip(blocks, images.pixel_values)]

    monkeypatch.setattr(LlavaFamily, "image_features", overflowing)
    images = tmp_path / "images"
    noise_images(images, 2)
    Image.new("RGB", (64, 48), (255, 255, 255)).save(images / "img99.jpg")
    code = caption.main(caption_args(tiny_llava(golden_dir), images, tmp_path / "out", "run", "--method", "baseline",
                                     "--batch-size", "3", *decoding))
    assert code == 0
    answered = [r["image_id"] for r in lines(tmp_path / "out" / "run.jsonl")]
    assert answered == ["img00", "img01"]
    (failed,) = lines(tmp_path / "out" / "run_errors.jsonl")
    assert failed["key"] == "img99" and "NonFiniteLogits" in failed["reason"] and "decode step 1" in failed["reason"]
