"""CLAIR scorer against a local server that speaks the OpenAI chat-completions protocol, through the real client."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT
from eval import clair
from judge_server import FakeJudge, serve, strict_json

KEY_ENV = "CLAIR_TEST_KEY"
SENTINEL = "sk-SENTINEL-7f3a9c0e1b2d4c6a8e0f"
_CANDIDATE = re.compile(r"Candidate set:\n- (.*)\n")
_REFERENCE = re.compile(r"Reference set:\n- (.*)\n")


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudge]:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    with serve(FakeJudge(lambda prompt: _CANDIDATE.search(prompt).group(1))) as fake:
        yield fake


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def iiw_annotations(tmp_path: Path, refs: dict[str, str]) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", [{"image/key": k, "IIW": v} for k, v in refs.items()])


def clair_args(judge: FakeJudge, tmp_path: Path, annotations: Path, answers: Path, *extra: str) -> list[str]:
    return ["--annotation_file", str(annotations), "--answer_file", str(answers), "--data_type", "iiw",
            "--save_path", str(tmp_path / "out" / "run_clair.json"), "--base_url", judge.base_url,
            "--api_key_env", KEY_ENV, "--backoff_base", "0.01", "--backoff_max", "0.05", "--timeout", "5", *extra]


def outputs(tmp_path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    metrics = json.loads((tmp_path / "out" / "run_clair.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "out" / "run_clair.jsonl").read_text().splitlines()]
    return metrics, {row["image_id"]: row for row in rows}


# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 85, "reason": "same dog"}', (85.0, "same dog")),
    ('Here: {"score": 0.5}', (0.5, "Unknown")),            # JSON path: no x100
    ("Score: 0.85\nReason: close match", (85.0, "close match")),  # regex path: x100 below 1
    ('{"score": 7', (7.0, "Unknown")),                       # no closing brace: JSON fails, first number
    # float() fails: the fallback (official: a crash) takes the first number and the official reason regex
    ('{"score": "80/100", "reason": "ok"}', (80.0, '" "ok"}')),
    ("no number at all", None),
])
def test_parse_response_official_rules(reply: str, expected: tuple[float, str] | None) -> None:
    assert clair.parse_response(reply) == expected


def test_prompt_and_request_settings(judge: FakeJudge, tmp_path: Path) -> None:
    judge.default = lambda prompt: '{"score": 72, "reason": "close"}'
    annotations = iiw_annotations(tmp_path, {"img1": "A brown dog running."})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "img1", "caption": "A dog runs."}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    expected_prompt = (
        "You are trying to tell if a candidate set of captions is describing the same image as a reference set of "
        "captions.\nCandidate set:\n- A dog runs.\n\nReference set:\n- A brown dog running.\n\n"
        "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same image as "
        "the reference set? (JSON format, with a key \"score\", value between 0 and 100, and a key \"reason\" with "
        "a string value.)\n")
    (request,) = judge.requests
    assert request["messages"] == [{"role": "user", "content": expected_prompt}]
    assert (request["model"], request["temperature"], request["max_tokens"], request["n"]) == ("gpt-4o", 0.0, 1024, 1)
    assert judge.auth == [f"Bearer {SENTINEL}"]
    metrics, rows = outputs(tmp_path)
    assert metrics["scorer"] == "clair" and metrics["metrics"]["clair"] == 72.0
    assert rows["img1"]["reason"] == "close" and rows["img1"]["responses"] == ['{"score": 72, "reason": "close"}']


def test_replies_without_a_number_are_asked_again_then_unparsable_and_not_in_the_mean(judge: FakeJudge,
                                                                                      tmp_path: Path) -> None:
    judge.plans = {"cap-retry": ["I cannot tell.", "85"],
                   "cap-garbage": ["garbage", "???", "nothing here"],
                   "cap-fraction": ["Score: 0.7\nReason: close match"]}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-retry"},
                                                       {"image_id": "b", "caption": "cap-garbage"},
                                                       {"image_id": "c", "caption": "cap-fraction"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    assert (judge.count("cap-retry"), judge.count("cap-garbage"), judge.count("cap-fraction")) == (2, 3, 1)
    metrics, rows = outputs(tmp_path)
    assert (rows["a"]["score"], rows["a"]["tries"], rows["a"]["status"]) == (85.0, 2, "judged")
    assert (rows["b"]["score"], rows["b"]["tries"], rows["b"]["status"]) == (None, 3, "unparsable")
    assert rows["b"]["responses"] == ["garbage", "???", "nothing here"]
    assert (rows["c"]["score"], rows["c"]["reason"]) == (70.0, "close match")
    assert metrics["metrics"] == {"clair": pytest.approx((85 + 70) / 2), "judged": 2, "unparsable": 1, "failed": 0}
    assert any(p["id"] == "b" and "no score in 3 judge replies" in p["reason"] for p in metrics["problems"])
    judge.plans = {"cap-garbage": ["Score: 40"]}  # not cached: a rerun asks for it again, and only for it
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    assert (judge.count("cap-retry"), judge.count("cap-garbage"), judge.count("cap-fraction")) == (2, 4, 1)
    metrics, rows = outputs(tmp_path)
    assert metrics["metrics"] == {"clair": pytest.approx((85 + 40 + 70) / 3), "judged": 3, "unparsable": 0,
                                  "failed": 0}


def test_transient_errors_are_retried(judge: FakeJudge, tmp_path: Path) -> None:
    judge.plans = {"cap-429": [("status", 429), '{"score": 60}'],
                   "cap-500": [("status", 500), '{"score": 40}'],
                   "cap-timeout": [("sleep", 2.0, '{"score": 99}'), '{"score": 20}']}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-429"},
                                                       {"image_id": "b", "caption": "cap-500"},
                                                       {"image_id": "c", "caption": "cap-timeout"}])
    args = clair_args(judge, tmp_path, annotations, answers)
    args[args.index("--timeout") + 1] = "0.5"
    assert clair.main(args) == 0
    _, rows = outputs(tmp_path)
    assert {k: (r["score"], r["api_retries"], r["tries"]) for k, r in rows.items()} == {
        "a": (60.0, 1, 1), "b": (40.0, 1, 1), "c": (20.0, 1, 1)}
    assert [judge.count(c) for c in ("cap-429", "cap-500", "cap-timeout")] == [2, 2, 2]


def test_exhausted_retries_fail_the_sample_and_are_not_cached(judge: FakeJudge, tmp_path: Path) -> None:
    judge.plans = {"cap-down": [("status", 503)] * 3}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-down"},
                                                       {"image_id": "b", "caption": "cap-ok"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers, "--max_retries", "2")) == 1
    assert judge.count("cap-down") == 3
    metrics, rows = outputs(tmp_path)
    assert metrics["metrics"]["failed"] == 1 and rows["a"]["status"] == "failed" and rows["b"]["score"] == 50.0
    assert any(p["id"] == "a" and "judge call failed" in p["reason"] for p in metrics["problems"])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0  # the server is back
    assert judge.count("cap-down") == 4 and judge.count("cap-ok") == 1


# A reply the client cannot read: each is a failed call (retried), never a crash and never a score.
UNREADABLE = {
    "html page": ("body", "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "html labelled json": ("body", "application/json", "<!DOCTYPE html><html>proxy login</html>"),
    "truncated json": ("body", "application/json", '{"id": "chatcmpl-1", "choices": [{"message": {"con'),
    "body cut short": ("cut",),
    "empty body": ("body", "application/json", ""),
    "error object": ("body", "application/json", '{"error": {"message": "overloaded", "type": "server_error"}}'),
    "no choices": ("body", "application/json", '{"id": "chatcmpl-1", "object": "chat.completion"}'),
    "empty choices": ("body", "application/json", '{"choices": []}'),
    "choice not an object": ("body", "application/json", '{"choices": ["85"]}'),
    "message null": ("body", "application/json", '{"choices": [{"index": 0, "message": null}]}'),
    "content null": ("body", "application/json", '{"choices": [{"message": {"role": "assistant", "content": null}}]}'),
    "content a number": ("body", "application/json", '{"choices": [{"message": {"content": 85}}]}'),
    "a list": ("body", "application/json", '[{"score": 85}]'),
    "a string": ("body", "application/json", '"85"'),
}


@pytest.mark.parametrize("bad", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_replies_are_failed_calls_retried_then_recorded(judge: FakeJudge, tmp_path: Path,
                                                                   bad: tuple[str, ...]) -> None:
    judge.plans = {"cap-bad": [bad, bad], "cap-flaky": [bad, '{"score": 80}']}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-bad"},
                                                       {"image_id": "b", "caption": "cap-flaky"},
                                                       {"image_id": "c", "caption": "cap-ok"}])
    args = clair_args(judge, tmp_path, annotations, answers, "--max_retries", "1")
    assert clair.main(args) == 1  # finished, with one sample failed
    metrics, rows = outputs(tmp_path)
    assert (rows["a"]["status"], rows["a"]["score"]) == ("failed", None)
    assert (rows["b"]["status"], rows["b"]["score"], rows["b"]["api_retries"]) == ("judged", 80.0, 1)
    assert (rows["c"]["status"], rows["c"]["score"]) == ("judged", 50.0)
    assert metrics["metrics"] == {"clair": (80 + 50) / 2, "judged": 2, "unparsable": 0, "failed": 1}
    assert [p["line"] for p in metrics["problems"] if p["id"] == "a"] == [1]
    assert (judge.count("cap-bad"), judge.count("cap-flaky"), judge.count("cap-ok")) == (2, 2, 1)
    assert clair.main(args) == 0  # the failure was not cached: the healthy judge scores it now, the others are reused
    assert (judge.count("cap-bad"), judge.count("cap-flaky"), judge.count("cap-ok")) == (3, 2, 1)
    metrics, rows = outputs(tmp_path)
    assert metrics["metrics"] == {"clair": (50 + 80 + 50) / 3, "judged": 3, "unparsable": 0, "failed": 0}


def test_judge_errors_are_left_out_of_the_mean_not_scored_0_and_not_cached(judge: FakeJudge, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16.2: ``200 {"error": ...}`` for one of three samples gave 43.33 = (60 + 70 + 0) / 3, exit 0."""
    error_body = ("body", "application/json", '{"error": {"message": "upstream overloaded", "type": "server_error"}}')
    judge.plans = {"cap-60": ['{"score": 60}'], "cap-70": ['{"score": 70}'], "cap-err": [error_body] * 3}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-60"},
                                                       {"image_id": "b", "caption": "cap-70"},
                                                       {"image_id": "c", "caption": "cap-err"}])
    args = clair_args(judge, tmp_path, annotations, answers, "--max_retries", "2")
    assert clair.main(args) == 1
    metrics, rows = outputs(tmp_path)
    assert round(metrics["metrics"]["clair"], 2) == 65.00
    assert (metrics["metrics"]["failed"], rows["c"]["status"]) == (1, "failed")
    assert "upstream overloaded" in rows["c"]["error"]
    assert any(p["id"] == "c" and "upstream overloaded" in p["reason"] for p in metrics["problems"])
    out = capsys.readouterr()
    assert "| 65.00 |" in out.out and "1 sample(s) failed" in out.err
    judge.plans = {"cap-err": ['{"score": 80}']}  # the judge is healthy again
    assert clair.main(args) == 0
    metrics, rows = outputs(tmp_path)
    assert metrics["metrics"] == {"clair": pytest.approx((60 + 70 + 80) / 3), "judged": 3, "unparsable": 0,
                                  "failed": 0}
    assert metrics["counts"]["cached"] == 2 and judge.count("cap-err") == 4


def test_unscored_entries_of_an_older_cache_are_asked_again(judge: FakeJudge, tmp_path: Path) -> None:
    """Earlier versions cached an error reply as an unparsable 0; such an entry is not a result."""
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-a"},
                                                       {"image_id": "b", "caption": "cap-b"}])
    template = clair.PROMPT_FILE.read_text(encoding="utf-8")
    old = [{"key": clair.cache_key("gpt-4o", clair.build_prompt(template, [caption], [ref])), "score": score,
            "reason": None, "parsed": parsed, "responses": [""] * 3 if not parsed else ["90"], "tries": 3,
            "api_retries": 0} for caption, ref, score, parsed in (("cap-a", "ref a", None, False),
                                                                  ("cap-b", "ref b", 90.0, True))]
    (tmp_path / "out" / "clair_cache").mkdir(parents=True)
    write_jsonl(tmp_path / "out" / "clair_cache" / "clair_cache.jsonl", old)
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    assert (judge.count("cap-a"), judge.count("cap-b")) == (1, 0)
    metrics, _ = outputs(tmp_path)
    assert metrics["metrics"]["clair"] == (50 + 90) / 2 and metrics["counts"]["cached"] == 1


def test_cache_second_run_makes_no_requests(judge: FakeJudge, tmp_path: Path) -> None:
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"},
                                                       {"image_id": "b", "caption": "y"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    first, _ = outputs(tmp_path)
    assert len(judge.requests) == 2
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    second, _ = outputs(tmp_path)
    assert len(judge.requests) == 2
    assert second["metrics"] == first["metrics"] and second["counts"]["cached"] == 2


def test_resume_after_interrupted_run(judge: FakeJudge, tmp_path: Path) -> None:
    refs = {f"img{i}": f"ref {i}" for i in range(4)}
    annotations = iiw_annotations(tmp_path, refs)
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": k, "caption": f"cap{i}"}
                                                       for i, k in enumerate(refs)])
    judge.plans = {"cap2": [("hang",)]}
    args = clair_args(judge, tmp_path, annotations, answers, "--concurrency", "1")
    process = subprocess.Popen([sys.executable, "-m", "eval.clair", *args], cwd=PROJECT_ROOT,
                               env={**os.environ, KEY_ENV: SENTINEL},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache_file = tmp_path / "out" / "clair_cache" / "clair_cache.jsonl"
    deadline = time.monotonic() + 30
    while not (cache_file.is_file() and len(cache_file.read_text().splitlines()) == 2 and judge.count("cap2")):
        assert time.monotonic() < deadline and process.poll() is None, "the first run did not reach the hang"
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "out" / "run_clair.json").exists()
    with cache_file.open("a") as f:
        f.write('{"key": "torn-by-the-crash", "score": 9')  # a torn last line
    before = len(judge.requests)
    assert clair.main(args) == 0
    new = [_CANDIDATE.search(r["messages"][0]["content"]).group(1) for r in judge.requests[before:]]
    assert sorted(new) == ["cap2", "cap3"]
    metrics, rows = outputs(tmp_path)
    assert metrics["counts"]["cached"] == 2 and sorted(rows) == sorted(refs)
    assert all(row["score"] == 50.0 for row in rows.values())
    assert clair.Cache(cache_file.parent).ignored_lines == 1  # the torn line; the appended ones are intact


def test_pairs_by_image_id_and_reports_bad_answers(judge: FakeJudge, tmp_path: Path) -> None:
    score_by_ref = {"ref-A": 10, "ref-B": 20, "ref-C": 30}
    judge.default = lambda prompt: json.dumps({"score": score_by_ref[_REFERENCE.search(prompt).group(1)]})
    annotations = iiw_annotations(tmp_path, {"A": "ref-A", "B": "ref-B", "C": "ref-C"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "C", "caption": "c"},
                                                       {"image_id": "A", "caption": "a"},
                                                       {"image_id": "Z", "caption": "z"},
                                                       {"image_id": "B"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    metrics, rows = outputs(tmp_path)
    assert {k: r["score"] for k, r in rows.items()} == {"A": 10.0, "C": 30.0}
    assert metrics["metrics"]["clair"] == 20.0
    counts = metrics["counts"]
    assert (counts["answers"], metrics["metrics"]["judged"], counts["unknown_id"], counts["missing_caption"],
            counts["not_answered"]) == (4, 2, 1, 1, 1)
    where = {(p["line"], p["id"]) for p in metrics["problems"]}
    assert {(3, "Z"), (4, "B"), (None, "B")} <= where
    assert all(p["file"] == str(answers) for p in metrics["problems"])


def test_docci_subset_is_the_official_seeded_draw(judge: FakeJudge, tmp_path: Path) -> None:
    ids = [f"test_{i:05d}.jpg" for i in range(6)]
    annotations = write_jsonl(tmp_path / "docci.jsonl", [{"image_file": i, "description": f"d{i}"} for i in ids])
    drawn = random.Random(7).sample(ids, 3)
    outside = next(i for i in ids if i not in drawn)
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": i, "caption": "c"} for i in drawn[:2] + [outside]])
    args = clair_args(judge, tmp_path, annotations, answers, "--seed", "7", "--docci_subset", "3")
    args[args.index("iiw")] = "docci"
    assert clair.main(args) == 0
    metrics, rows = outputs(tmp_path)
    assert metrics["counts"]["outside_subset"] == 1 and metrics["counts"]["not_answered"] == 1
    assert {p["id"] for p in metrics["problems"]} == {outside, drawn[2]}
    assert sorted(rows) == sorted(drawn[:2])  # exactly the subset: the answer outside it is reported, not scored
    assert metrics["subset"] == {"source": "official draw", "manifest": None, "count": 3}


def docci_annotations(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    ids = [f"test_{i:05d}.jpg" for i in range(count)]
    return write_jsonl(tmp_path / "docci.jsonl", [{"image_file": i, "description": f"d{i}"} for i in ids]), ids


def runner_manifest(ids: list[str], **about: Any) -> dict[str, Any]:
    """A manifest as the runners write it (``eval.files.manifest``): the ordered ids, their count and sha256."""
    return {**about, "count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "ids": ids}


def test_docci_scores_the_captioned_subset_of_the_manifest_beside_the_answers(judge: FakeJudge,
                                                                               tmp_path: Path) -> None:
    """Issue 15.4: a 3-sample DOCCI run stopped with "3 annotations, fewer than the subset of 500"."""
    annotations, ids = docci_annotations(tmp_path, 8)
    drawn = random.Random(5).sample(ids, 3)  # the runner's draw: Random(seed).sample(lines, n)
    (tmp_path / "baseline_manifest.json").write_text(
        json.dumps(runner_manifest(drawn, dataset_type="docci", seed=5, num_samples=3)))
    outside = next(i for i in ids if i not in drawn)
    answers = write_jsonl(tmp_path / "baseline.jsonl", [{"image_id": i, "caption": "c"} for i in drawn[:2] + [outside]])
    args = clair_args(judge, tmp_path, annotations, answers)  # --docci_subset 500 and --seed 42 by default
    args[args.index("iiw")] = "docci"
    assert clair.main(args) == 0
    metrics, rows = outputs(tmp_path)
    assert list(rows) == drawn[:2]
    assert metrics["subset"] == {"source": "manifest", "manifest": str(tmp_path / "baseline_manifest.json"),
                                 "count": 3}
    assert [(p["id"], p["reason"].split(" (")[0]) for p in metrics["problems"]] == [
        (outside, "not in the captioned subset"), (drawn[2], "in the captioned subset")]
    assert metrics["counts"]["not_answered"] == 1 and metrics["counts"]["outside_subset"] == 1


def test_docci_script_with_num_samples_scores_its_subset(judge: FakeJudge, golden_dir: Path, tmp_path: Path) -> None:
    """``NUM_SAMPLES=3 bash scripts/llava/captioning_docci.sh`` on the tiny model, judged by the local server."""
    annotations, ids = docci_annotations(tmp_path, 6)
    for index, name in enumerate(ids):
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            tmp_path / name)
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "llava" / "captioning_docci.sh")], env={
        **os.environ, "MODEL_PATH": str(golden_dir / "tiny-llava-v1.5"), "IMAGE_FOLDER": str(tmp_path),
        "ANNOTATION_FILE": str(annotations), "SAVE_PATH": str(tmp_path / "out"), "NUM_SAMPLES": "3",
        "MAX_NEW_TOKENS": "4", "BATCH_SIZE": "3", "JUDGE_URL": judge.base_url, "API_KEY_ENV": KEY_ENV,
    }, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = random.Random(42).sample(ids, 3)  # the script's SEED 42
    for run in ("baseline", "sparc"):
        metrics = json.loads((tmp_path / "out" / f"{run}_clair.json").read_text())
        assert metrics["subset"]["count"] == 3 and metrics["metrics"] == {
            "clair": 50.0, "judged": 3, "unparsable": 0, "failed": 0}
        rows = (tmp_path / "out" / f"{run}_clair.jsonl").read_text().splitlines()
        assert [json.loads(row)["image_id"] for row in rows] == drawn


def test_iiw_trial_run_scores_its_manifest_and_a_named_manifest_wins(judge: FakeJudge, tmp_path: Path) -> None:
    annotations = iiw_annotations(tmp_path, {k: f"ref {k}" for k in "abcd"})
    answers = write_jsonl(tmp_path / "trial.jsonl", [{"image_id": k, "caption": f"cap-{k}"} for k in "ba"])
    (tmp_path / "trial_manifest.json").write_text(json.dumps(runner_manifest(["b", "a"], dataset_type="iiw")))
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    metrics, rows = outputs(tmp_path)
    assert list(rows) == ["b", "a"] and metrics["counts"]["not_answered"] == 0 and not metrics["problems"]
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"ids": ["a"]}))
    assert clair.main(clair_args(judge, tmp_path, annotations, answers, "--subset_manifest", str(other))) == 0
    metrics, rows = outputs(tmp_path)
    assert list(rows) == ["a"] and metrics["counts"]["outside_subset"] == 1
    (tmp_path / "trial_manifest.json").unlink()
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0  # no manifest: every annotation
    metrics, _ = outputs(tmp_path)
    assert metrics["subset"]["source"] == "all annotations" and metrics["counts"]["not_answered"] == 2


@pytest.mark.parametrize("text, message", [
    ('{"dataset_type": "coco", "ids": ["a"]}', "a manifest of dataset type 'coco', not 'iiw'"),
    ('{"ids": ["a", "zz"]}', "1 id(s) not in"),
    ('{"count": 1}', "not a subset manifest"),
    ('{"ids": "a"}', "not a subset manifest"),
    ('["a"]', "not a subset manifest"),
    ('{"ids": ["a"', "not a subset manifest"),
    (None, "no such manifest"),
])
def test_bad_manifest_is_a_clear_error(judge: FakeJudge, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       text: str | None, message: str) -> None:
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    path = tmp_path / "m.json"
    if text is not None:
        path.write_text(text)
    assert clair.main(clair_args(judge, tmp_path, annotations, answers, "--subset_manifest", str(path))) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and len(err.splitlines()) == 1
    assert not judge.requests and not (tmp_path / "out" / "run_clair.json").exists()


def test_api_key_is_never_written_or_printed(judge: FakeJudge, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    judge.plans = {"cap-echo": [f"Score: 40. Reason: I saw your key {SENTINEL}"],
                   "cap-bad": [("status", 400, f"bad request from key {SENTINEL}")],
                   "cap-429": [("status", 429, f"slow down, {SENTINEL}"), '{"score": 30}'],
                   "cap-html": [("body", "text/html", f"<p>proxy: your key {SENTINEL} is not allowed</p>")] * 2}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c", "d": "ref d"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-echo"},
                                                       {"image_id": "b", "caption": "cap-bad"},
                                                       {"image_id": "c", "caption": "cap-429"},
                                                       {"image_id": "d", "caption": "cap-html"}])
    args = clair_args(judge, tmp_path, annotations, answers, "--max_retries", "1")
    assert clair.main(args) == 1  # cap-bad and cap-html failed
    _, rows = outputs(tmp_path)
    assert rows["a"]["score"] == 40.0 and rows["c"]["score"] == 30.0
    assert rows["a"]["reason"] == "I saw your key ***"
    judge.plans = {"x": [("status", 401, f"Incorrect API key provided: {SENTINEL}")]}
    other = write_jsonl(tmp_path / "other.jsonl", [{"image_id": "a", "caption": "x"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, other)) == 2
    captured = capfd.readouterr()
    assert "AuthenticationError" in captured.err
    with pytest.raises(SystemExit):
        clair.main(clair_args(judge, tmp_path, annotations, other, "--openai_api_key", SENTINEL))
    captured_later = capfd.readouterr()
    assert "--api_key_env" in captured_later.err
    for text in (captured.out, captured.err, captured_later.out, captured_later.err):
        assert SENTINEL not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"run_clair.json", "run_clair.jsonl", "clair_cache.jsonl"} <= {p.name for p in files}
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), path


def test_unset_key_variable_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    code = clair.main(["--annotation_file", str(annotations), "--answer_file", str(answers), "--data_type", "iiw",
                       "--api_key_env", KEY_ENV, "--save_path", str(tmp_path / "out.json")])
    assert code == 2
    assert f"environment variable {KEY_ENV} is not set" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_official_argument_names(judge: FakeJudge, tmp_path: Path) -> None:
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    write_jsonl(tmp_path / "EXP.jsonl", [{"image_id": "a", "caption": "x"}])
    code = clair.main(["--annotation_file", str(annotations), "--answer_folder", str(tmp_path),
                       "--save-folder", str(tmp_path / "res"), "--experiment_name", "EXP", "--data_type", "iiw",
                       "--base-url", judge.base_url, "--api-key-env", KEY_ENV])
    assert code == 0
    assert json.loads((tmp_path / "res" / "EXP_clair.json").read_text())["metrics"]["clair"] == 50.0
    assert json.loads((tmp_path / "res" / "EXP_clair.jsonl").read_text())["score"] == 50.0


# ----------------------------------------------------------------------------------------------------------------
# Issue 10: a score outside 0-100 or not finite is an unparsable reply


def assert_strict_outputs(tmp_path: Path) -> None:
    for path in (tmp_path / "out").rglob("*.json*"):
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                strict_json(line)
        else:
            strict_json(path.read_text())


@pytest.mark.parametrize("reply", ['{"score": 150}', '{"score": -40, "reason": "bad"}', '{"score": NaN}',
                                   '{"score": Infinity}', '{"score": -Infinity}', '{"score": "inf"}',
                                   '{"score": "nan"}', '{"score": 1e400}', '{"score": 100.5}', "Score: 150",
                                   "Score: -40\nReason: negative", "Score: -0.5"])
def test_scores_out_of_range_or_not_finite_do_not_parse(reply: str) -> None:
    assert clair.parse_response(reply) is None


@pytest.mark.parametrize("reply, score", [('{"score": 0}', 0.0), ('{"score": 100}', 100.0), ("Score: 100", 100.0),
                                          ("0", 0.0), ('{"score": "100"}', 100.0)])
def test_the_range_ends_parse(reply: str, score: float) -> None:
    assert clair.parse_response(reply)[0] == score


def test_out_of_range_and_non_finite_scores_are_unparsable_counted_and_not_cached(judge: FakeJudge,
                                                                                  tmp_path: Path) -> None:
    """Issue 10: 150, -40, NaN and inf were judgments; the mean became NaN, written as invalid JSON and cached."""
    judge.plans = {"cap-150": ['{"score": 150}'] * 3, "cap-neg": ['{"score": -40}', "Score: -40", '{"score": -1}'],
                   "cap-nan": ['{"score": NaN, "reason": NaN}'] * 3,
                   "cap-inf": ['{"score": Infinity}', '{"score": "inf"}', '{"score": 1e400}'],
                   "cap-late": ['{"score": 150}', '{"score": 80}'], "cap-ok": ['{"score": 60, "reason": NaN}']}
    captions = ["cap-150", "cap-neg", "cap-nan", "cap-inf", "cap-late", "cap-ok"]
    annotations = iiw_annotations(tmp_path, {c: f"ref {c}" for c in captions})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": c, "caption": c} for c in captions])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    assert_strict_outputs(tmp_path)
    metrics, rows = outputs(tmp_path)
    assert metrics["metrics"] == {"clair": (80 + 60) / 2, "judged": 2, "unparsable": 4, "failed": 0}
    assert {k: r["status"] for k, r in rows.items()} == {
        "cap-150": "unparsable", "cap-neg": "unparsable", "cap-nan": "unparsable", "cap-inf": "unparsable",
        "cap-late": "judged", "cap-ok": "judged"}
    assert (rows["cap-late"]["score"], rows["cap-late"]["tries"]) == (80.0, 2)
    assert rows["cap-ok"]["reason"] is None  # a NaN reason is written as null, not NaN
    assert [judge.count(c) for c in captions] == [3, 3, 3, 3, 2, 1]
    cache_lines = (tmp_path / "out" / "clair_cache" / "clair_cache.jsonl").read_text().splitlines()
    assert sorted(strict_json(line)["score"] for line in cache_lines) == [60.0, 80.0]
    assert sum("no score in 3 judge replies" in p["reason"] for p in metrics["problems"]) == 4
    judge.default = lambda prompt: '{"score": 20}'  # not cached: a rerun asks again for the four
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    metrics, _ = outputs(tmp_path)
    assert metrics["metrics"] == {"clair": (4 * 20 + 80 + 60) / 6, "judged": 6, "unparsable": 0, "failed": 0}
    assert metrics["counts"]["cached"] == 2


def test_out_of_range_scores_cached_by_an_older_version_are_asked_again(judge: FakeJudge, tmp_path: Path) -> None:
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": k, "caption": f"cap-{k}"} for k in "abc"])
    template = clair.PROMPT_FILE.read_text(encoding="utf-8")
    old = [{"key": clair.cache_key("gpt-4o", clair.build_prompt(template, [f"cap-{k}"], [f"ref {k}"])),
            "score": score, "reason": "old", "parsed": True, "responses": ["x"], "tries": 1, "api_retries": 0}
           for k, score in zip("abc", (float("nan"), 150.0, 90.0))]
    (tmp_path / "out" / "clair_cache").mkdir(parents=True)
    (tmp_path / "out" / "clair_cache" / "clair_cache.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in old))  # json.dumps writes NaN, as the older version did
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    assert [judge.count(f"cap-{k}") for k in "abc"] == [1, 1, 0]
    metrics, _ = outputs(tmp_path)
    assert metrics["metrics"]["clair"] == (50 + 50 + 90) / 3 and metrics["counts"]["cached"] == 1
    strict_json((tmp_path / "out" / "run_clair.json").read_text())
    lines = (tmp_path / "out" / "clair_cache" / "clair_cache.jsonl").read_text().splitlines()
    assert [strict_json(line)["score"] for line in lines[3:]] == [50.0, 50.0]  # the old lines stay, ignored
    assert clair.Cache(tmp_path / "out" / "clair_cache").ignored_lines == 2


# ----------------------------------------------------------------------------------------------------------------
# Issue 11: the key, echoed in any field at any depth and in any escaping, is never written


def _decodings(text: str) -> list[str]:
    """``text`` and what it says once its escapes are undone (JSON/Python \\u and \\x at any depth, URL, HTML)."""
    import html
    import urllib.parse

    forms = [text]
    current = text
    for _ in range(4):
        current = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), current)
        current = re.sub(r"\\+x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), current)
        forms.append(current)
    return forms + [urllib.parse.unquote(text), html.unescape(text)]


def _escape_all(text: str, form: str) -> str:
    return "".join(form.format(ord(c)) for c in text)


def test_the_key_echoed_in_lists_nested_values_and_escapes_is_never_written(judge: FakeJudge, tmp_path: Path,
                                                                             capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 11: a reply echoing the key JSON-escaped inside a list-valued field put it in the cache and per-sample
    file."""
    json_escaped = _escape_all(SENTINEL, "\\\\u{:04x}")  # \u0073\u006b... inside the reply's JSON text
    half = SENTINEL[:6] + _escape_all(SENTINEL[6:12], "\\\\u{:04X}") + SENTINEL[12:]
    replies = {
        "cap-list": '{"score": 40, "reason": ["I saw", "' + json_escaped + '"]}',
        "cap-plain-list": json.dumps({"score": 41, "reason": ["key", SENTINEL]}),
        "cap-nested": json.dumps({"score": 42, "reason": ["why", [["deep", [SENTINEL]]]]}),
        "cap-half": '{"score": 43, "reason": ["' + half + '"]}',
        "cap-double": json.dumps({"score": 44, "reason": [json.dumps({"k": _escape_all(SENTINEL, "\\u{:04x}")})]}),
        "cap-url": '{"score": 45, "reason": ["' + _escape_all(SENTINEL, "%{:02x}") + '"]}',
        "cap-html": '{"score": 46, "reason": ["' + _escape_all(SENTINEL, "&#{};") + '"]}',
        "cap-hex": '{"score": 47, "reason": ["' + _escape_all(SENTINEL, "\\\\x{:02x}") + '"]}',
    }
    judge.plans = {caption: [reply] for caption, reply in replies.items()}
    annotations = iiw_annotations(tmp_path, {c: f"ref {c}" for c in replies})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": c, "caption": c} for c in replies])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0
    _, rows = outputs(tmp_path)
    assert {k: r["score"] for k, r in rows.items()} == {c: 40.0 + i for i, c in enumerate(replies)}
    assert rows["cap-plain-list"]["reason"] == ["key", "***"]
    assert rows["cap-nested"]["reason"] == ["why", [["deep", ["***"]]]]
    captured = capfd.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "answers.jsonl"]
    assert {"run_clair.json", "run_clair.jsonl", "clair_cache.jsonl"} <= {p.name for p in files}
    for name, text in [(str(p), p.read_text()) for p in files] + [("stdout", captured.out), ("stderr", captured.err)]:
        for form in _decodings(text):
            assert SENTINEL not in form, name


def test_redactor_finds_every_escaping() -> None:
    redact = clair.Redactor(SENTINEL)
    for text in (SENTINEL, _escape_all(SENTINEL, "\\u{:04x}"), _escape_all(SENTINEL, "\\\\\\\\u{:04X}"),
                 _escape_all(SENTINEL, "%{:02X}"), _escape_all(SENTINEL, "&#x{:x};"), _escape_all(SENTINEL, "\\x{:02x}")):
        assert redact(f"a {text} b") == "a *** b"
    assert redact.value({"k": [("x", {SENTINEL: [SENTINEL]})]}) == {"k": [["x", {"***": ["***"]}]]}


# ----------------------------------------------------------------------------------------------------------------
# Issue 12: --timeout bounds the whole request; Ctrl-C stops at once; a full disk is one line


def test_timeout_bounds_the_whole_request_not_each_read(judge: FakeJudge, tmp_path: Path) -> None:
    """Issue 12: a server dripping a byte every 2 s held one call 61 s at --timeout 5."""
    judge.plans = {"cap-drip": [("drip", 0.3, '{"score": 90}')] * 2,
                   "cap-drip-then-ok": [("drip", 0.3, '{"score": 90}'), '{"score": 70}']}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-drip"},
                                                       {"image_id": "b", "caption": "cap-drip-then-ok"}])
    args = clair_args(judge, tmp_path, annotations, answers, "--max_retries", "1")
    args[args.index("--timeout") + 1] = "1"
    start = time.monotonic()
    assert clair.main(args) == 1
    elapsed = time.monotonic() - start
    assert elapsed < 4.5, elapsed  # two attempts of at most 1 s each, and backoffs of at most 0.05 s
    metrics, rows = outputs(tmp_path)
    assert rows["a"]["status"] == "failed" and "--timeout" in rows["a"]["error"]
    assert (rows["b"]["score"], rows["b"]["api_retries"]) == (70.0, 1)
    assert metrics["metrics"]["failed"] == 1


def _wait_for(condition: Any, process: subprocess.Popen[Any], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline and process.poll() is None, what
        time.sleep(0.05)


def test_ctrl_c_stops_at_once_and_keeps_what_arrived(judge: FakeJudge, tmp_path: Path) -> None:
    """Issue 12: Ctrl-C waited 21-34 s for the calls in flight (longer with more retries)."""
    import signal

    captions = ["cap-ok1", "cap-hang", "cap-backoff", "cap-ok2"]
    judge.plans = {"cap-hang": [("hang",)], "cap-backoff": [("status", 503)] * 5}
    annotations = iiw_annotations(tmp_path, {c: f"ref {c}" for c in captions})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": c, "caption": c} for c in captions])
    args = clair_args(judge, tmp_path, annotations, answers, "--concurrency", "4", "--max_retries", "5")
    for flag, value in (("--timeout", "60"), ("--backoff_base", "30"), ("--backoff_max", "30")):
        args[args.index(flag) + 1] = value
    process = subprocess.Popen([sys.executable, "-m", "eval.clair", *args], cwd=PROJECT_ROOT, text=True,
                               env={**os.environ, KEY_ENV: SENTINEL}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache_file = tmp_path / "out" / "clair_cache" / "clair_cache.jsonl"
    _wait_for(lambda: cache_file.is_file() and len(cache_file.read_text().splitlines()) == 2
              and judge.count("cap-hang") and judge.count("cap-backoff"), process, "did not reach the hang")
    start = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - start < 3.0
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip() == f"interrupted; judged samples are cached in {cache_file}, rerun to resume"
    assert sorted(json.loads(line)["score"] for line in cache_file.read_text().splitlines()) == [50.0, 50.0]
    judge.plans = {}
    before = len(judge.requests)
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0  # resumes: only the two not judged
    assert sorted(judge.samples(before)) == ["cap-backoff", "cap-hang"]


def test_ctrl_c_after_replies_arrived_caches_them_before_stopping(judge: FakeJudge, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies that arrived while the scorer was handling another are cached before it stops."""
    from eval import judge as judge_module

    annotations = iiw_annotations(tmp_path, {k: f"ref {k}" for k in "abc"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": k, "caption": f"cap-{k}"} for k in "abc"])
    real_append = judge_module.JudgeCache.append
    calls = []

    def interrupted_append(self: Any, *a: Any, **k: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # Ctrl-C while the first is written: wait until the others arrived, then stop
            deadline = time.monotonic() + 10
            while len(judge.requests) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            real_append(self, *a, **k)
            raise KeyboardInterrupt
        real_append(self, *a, **k)

    monkeypatch.setattr(judge_module.JudgeCache, "append", interrupted_append)
    assert clair.main(clair_args(judge, tmp_path, annotations, answers, "--concurrency", "3")) == 130
    cache_file = tmp_path / "out" / "clair_cache" / "clair_cache.jsonl"
    assert len(cache_file.read_text().splitlines()) == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_exit_2(judge: FakeJudge, tmp_path: Path) -> None:
    """Issue 12: a full disk gave a traceback with exit 1, the status of "some samples failed"."""
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    (tmp_path / "out" / "clair_cache").mkdir(parents=True)
    cache_file = tmp_path / "out" / "clair_cache" / "clair_cache.jsonl"
    cache_file.symlink_to("/dev/full")  # every write: ENOSPC, from the kernel
    result = subprocess.run([sys.executable, "-m", "eval.clair", *clair_args(judge, tmp_path, annotations, answers)],
                            cwd=PROJECT_ROOT, env={**os.environ, KEY_ENV: SENTINEL}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: disk full writing {cache_file}: the judged samples are kept in ")
    assert result.stderr.rstrip().endswith("free space and rerun the same command to resume")


def test_a_full_disk_when_writing_the_outputs_is_one_line_and_exit_2(judge: FakeJudge, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from eval import judge as judge_module

    def full(path: Any, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(judge_module, "write_text_atomic", full)
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: disk full writing ") and "run_clair.json" in err
    assert len((tmp_path / "out" / "clair_cache" / "clair_cache.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------------------------------------------------------------
# Issue 2: two scorers on one cache


def test_a_second_scorer_on_the_same_cache_is_refused_at_once(judge: FakeJudge, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    judge.plans = {"cap-hang": [("hang",)]}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-hang"},
                                                       {"image_id": "b", "caption": "cap-b"}])
    args = clair_args(judge, tmp_path, annotations, answers)
    first = subprocess.Popen([sys.executable, "-m", "eval.clair", *args], cwd=PROJECT_ROOT,
                             env={**os.environ, KEY_ENV: SENTINEL}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: judge.count("cap-hang") > 0, first, "the first scorer did not start")
        before = len(judge.requests)
        other = write_jsonl(tmp_path / "other.jsonl", [{"image_id": "b", "caption": "cap-other"}])
        start = time.monotonic()
        assert clair.main(clair_args(judge, tmp_path, annotations, other)) == 2  # same cache folder
        assert time.monotonic() - start < 2.0 and len(judge.requests) == before
        err = capsys.readouterr().err
        cache_file = tmp_path / "out" / "clair_cache" / "clair_cache.jsonl"
        assert err.count("\n") == 1
        assert err.startswith(f"error: the CLAIR cache {cache_file} is in use by pid {first.pid} on ")
        assert "eval.clair" in err or "clair.py" in err
    finally:
        first.kill()
        first.wait()
    judge.plans = {}  # killed: its lock never blocks
    assert clair.main(args) == 0
    metrics, _ = outputs(tmp_path)
    assert metrics["metrics"]["judged"] == 2


def test_an_unusable_cache_folder_is_one_line(judge: FakeJudge, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    annotations = iiw_annotations(tmp_path, {"a": "ref a"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert clair.main(clair_args(judge, tmp_path, annotations, answers, "--cache", str(blocker / "cache"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output error writing ") and err.count("\n") == 1 and not judge.requests
