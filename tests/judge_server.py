"""A local HTTP server that speaks the OpenAI chat-completions protocol, for the LLM-judge tests (CLAIR, LLaVA-Bench):
the scorers talk to it through the real ``openai`` client."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


class FakeJudge:
    """Replies per sample from a plan (a queue of actions), else from ``default(prompt)``; a request's sample is
    ``sample_of(prompt)``, the prompt being the content of its last message.

    Actions: a string (the reply content), ``("status", code[, message])``, ``("sleep", seconds, content)``,
    ``("hang",)`` (no reply until the test ends), ``("body", content_type, text)`` (HTTP 200 with that raw body),
    ``("cut",)`` (the body ends before its length), ``("drip", seconds, content)`` (the reply, one byte every
    ``seconds``).
    """

    def __init__(self, sample_of: Callable[[str], str]) -> None:
        self.sample_of = sample_of
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.plans: dict[str, list[Any]] = {}
        self.default: Callable[[str], Any] = lambda prompt: '{"score": 50, "reason": "default"}'
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.base_url = ""

    def next_action(self, body: dict[str, Any]) -> Any:
        prompt = body["messages"][-1]["content"]
        sample = self.sample_of(prompt)
        with self.lock:
            self.requests.append(body)
            plan = self.plans.get(sample)
            if plan:
                return plan.pop(0)
        return self.default(prompt)

    def count(self, sample: str) -> int:
        """How many requests were made for ``sample``."""
        return sum(self.sample_of(r["messages"][-1]["content"]) == sample for r in self.requests)

    def samples(self, start: int = 0) -> list[str]:
        """The sample of each request from the ``start``-th on, in arrival order."""
        return [self.sample_of(r["messages"][-1]["content"]) for r in self.requests[start:]]


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity (what Python writes unless ``allow_nan=False``)."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} written: not strict JSON")
    return json.loads(text, parse_constant=refuse)


def completion(content: str, model: str) -> dict[str, Any]:
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
            kind = action[0] if isinstance(action, tuple) else None
            if kind == "status":
                message = action[2] if len(action) > 2 else f"error {action[1]}"
                self._send(action[1], {"error": {"message": message, "type": "test", "code": None}})
            elif kind == "hang":
                judge.release.wait(30)
            elif kind == "body":
                self._send_raw(200, action[1], action[2])
            elif kind == "cut":
                self._send_raw(200, "application/json", '{"id": "chatcmpl-test", "choi', length=500)
                self.close_connection = True
            elif kind == "drip":
                data = json.dumps(completion(action[2], body["model"])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for index in range(len(data)):
                    if judge.release.wait(action[1]):
                        return
                    self.wfile.write(data[index:index + 1])
                    self.wfile.flush()
            else:
                if kind == "sleep":
                    time.sleep(action[1])
                    action = action[2]
                self._send(200, completion(action, body["model"]))

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed the socket; nothing to report


@contextlib.contextmanager
def serve(judge: FakeJudge) -> Iterator[FakeJudge]:
    """Run ``judge`` on a free local port (``judge.base_url``) until the block ends."""
    server = _Server(("127.0.0.1", 0), _handler(judge))
    judge.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield judge
    finally:
        judge.release.set()
        server.shutdown()
        server.server_close()
