"""CLAIR scorer against a local server that speaks the OpenAI chat-completions protocol, through the real client."""
from __future__ import annotations

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

import pytest

from conftest import PROJECT_ROOT
from eval import clair

KEY_ENV = "CLAIR_TEST_KEY"
SENTINEL = "sk-SENTINEL-7f3a9c0e1b2d4c6a8e0f"
_CANDIDATE = re.compile(r"Candidate set:\n- (.*)\n")
_REFERENCE = re.compile(r"Reference set:\n- (.*)\n")


class FakeJudge:
    """Replies per candidate caption from a plan (a queue of actions), else from ``default(prompt)``.

    Actions: a string (the reply content), ``("status", code)``, ``("sleep", seconds, content)``, ``("hang",)``.
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
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
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


def test_malformed_replies_retry_then_unparsable(judge: FakeJudge, tmp_path: Path) -> None:
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
    assert (rows["a"]["score"], rows["a"]["tries"], rows["a"]["parsed"]) == (85.0, 2, True)
    assert (rows["b"]["score"], rows["b"]["tries"], rows["b"]["parsed"]) == (None, 3, False)
    assert rows["b"]["responses"] == ["garbage", "???", "nothing here"]
    assert (rows["c"]["score"], rows["c"]["reason"]) == (70.0, "close match")
    assert metrics["metrics"]["clair"] == pytest.approx((85 + 0 + 70) / 3)
    assert metrics["metrics"]["clair_parsed"] == pytest.approx((85 + 70) / 2)
    assert metrics["metrics"]["unparsable"] == 1 and metrics["counts"]["unparsable"] == 1


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
    assert metrics["counts"]["failed"] == 1 and rows["a"]["failed"] and rows["b"]["score"] == 50.0
    assert any(p["id"] == "a" and "judge call failed" in p["reason"] for p in metrics["problems"])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 0  # the server is back
    assert judge.count("cap-down") == 4 and judge.count("cap-ok") == 1


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
    assert (counts["answers"], counts["scored"], counts["unknown_id"], counts["missing_caption"],
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
    assert len(rows) == 3


def test_api_key_is_never_written_or_printed(judge: FakeJudge, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    judge.plans = {"cap-echo": [f"Score: 40. Reason: I saw your key {SENTINEL}"],
                   "cap-bad": [("status", 400, f"bad request from key {SENTINEL}")],
                   "cap-429": [("status", 429, f"slow down, {SENTINEL}"), '{"score": 30}']}
    annotations = iiw_annotations(tmp_path, {"a": "ref a", "b": "ref b", "c": "ref c"})
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "cap-echo"},
                                                       {"image_id": "b", "caption": "cap-bad"},
                                                       {"image_id": "c", "caption": "cap-429"}])
    assert clair.main(clair_args(judge, tmp_path, annotations, answers)) == 1  # cap-bad failed
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
