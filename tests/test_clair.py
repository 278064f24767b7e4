"""CLAIR scorer against a local server that speaks the OpenAI chat-completions protocol, through the real client."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT
from eval import clair

KEY_ENV = "CLAIR_TEST_KEY"
SENTINEL = "sk-SENTINEL-7f3a9c0e1b2d4c6a8e0f"
_CANDIDATE = re.compile(r"Candidate set:\n- (.*)\n")
_REFERENCE = re.compile(r"Reference set:\n- (.*)\n")


class FakeJudge:
    """Replies per candidate caption from a plan (a queue of actions), else from ``default(prompt)``.

    Actions: a string (the reply content), ``("status", code)``, ``("sleep", seconds, content)``, ``("hang",)``,
    ``("body", content_type, text)`` (HTTP 200 with that raw body), ``("cut",)`` (the body ends before its length).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.plans: dict[str, list[Any]] = {}
        self.default: Callable[[str], Any] = lambda prompt: '{"score": 50, "reason": "default"}'
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.base_url = ""

    def next_action(self, body: dict[str, Any]) -> Any:
        prompt = body["messages"][0]["content"]
        caption = _CANDIDATE.search(prompt).group(1)
        with self.lock:
            self.requests.append(body)
            plan = self.plans.get(caption)
            if plan:
                return plan.pop(0)
        return self.default(prompt)

    def count(self, caption: str) -> int:
        return sum(_CANDIDATE.search(r["messages"][0]["content"]).group(1) == caption for r in self.requests)


def _completion(content: str, model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def _handler(judge: FakeJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            self._send_raw(status, "application/json", json.dumps(payload))

        def _send_raw(self, status: int, content_type: str, text: str, length: int | None = None) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with judge.lock:
                judge.auth.append(self.headers.get("Authorization"))
            action = judge.next_action(body)
            if isinstance(action, tuple) and action[0] == "status":
                message = action[2] if len(action) > 2 else f"error {action[1]}"
                self._send(action[1], {"error": {"message": message, "type": "test", "code": None}})
                return
            if isinstance(action, tuple) and action[0] == "hang":
                judge.release.wait(30)
                return
            if isinstance(action, tuple) and action[0] == "body":
                self._send_raw(200, action[1], action[2])
                return
            if isinstance(action, tuple) and action[0] == "cut":
                self._send_raw(200, "application/json", '{"id": "chatcmpl-test", "choi', length=500)
                self.close_connection = True
                return
            if isinstance(action, tuple) and action[0] == "sleep":
                time.sleep(action[1])
                action = action[2]
            self._send(200, _completion(action, body["model"]))

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed the socket; nothing to report


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudge]:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    fake = FakeJudge()
    server = _Server(("127.0.0.1", 0), _handler(fake))
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    fake.release.set()
    server.shutdown()
    server.server_close()


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
    """A manifest as the runners write it (``eval/datasets.py: manifest``): the ordered ids, their count and sha256."""
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
