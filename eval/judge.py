"""The LLM-judge client that CLAIR and LLaVA-Bench share: one request, one cache, one way to run many judgments.

Guarantees (each tested against a local server that speaks the OpenAI chat-completions protocol):

- **Requests**: chat completions at any OpenAI-compatible ``base_url``; the API key comes from an environment variable
  (:func:`read_api_key`), never from the command line (``--openai_api_key`` is refused, :func:`add_client_arguments`).
- **Bounded**: ``timeout`` bounds each request as a whole (connect, headers and body together: a server that drips
  one byte at a time cannot hold a call longer), and a call is retried at most ``max_retries`` times (HTTP 429, 5xx,
  timeouts, lost connections, replies that are not a chat completion with text), with exponential backoff and
  jitter, at least the server's Retry-After. 401/403/404 stop the run (:class:`FatalJudgeError`).
- **Cached**: each judgment is appended (and fsynced) to a jsonl cache as it arrives, keyed by a hash of everything
  that decides it (:meth:`ChatRequest.key`: model, every message with the system prompt, temperature, max_tokens,
  n), so a rerun or a resumed run asks nothing twice. Only judgments are cached: a failed call or a reply that does
  not parse is counted, reported and asked again next time; each scorer decides what parses (``accept``).
- **One process per cache**: the cache is locked (:class:`eval.files.ExclusiveLock`) while a scorer uses it.
- **Interruptible**: Ctrl-C stops at once; judgments that already arrived are cached first, calls in flight are
  dropped (:func:`run_judgments`).
- **No secret written**: every string written or printed goes through a :class:`Redactor`, which finds the key in
  any escaping (JSON ``\\u`` escapes however deeply nested, ``\\x``, URL ``%``, HTML entities) and anything that
  looks like an OpenAI key; :func:`to_json` writes strict JSON (never ``NaN`` or ``Infinity``).

This module imports only the files layer (:mod:`eval.files`), the standard library and, when a client is built,
``openai``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import queue
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence, TypeVar

from eval.files import ExclusiveLock, InputError, output_error, write_text_atomic

JUDGED, UNPARSABLE, FAILED = "judged", "unparsable", "failed"
STATUSES = (JUDGED, UNPARSABLE, FAILED)
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_*\-]{4,}")
REDACTED = "***"


class FatalJudgeError(RuntimeError):
    """An API error that every request would hit (bad key, no such model): the run stops."""


class JudgeError(RuntimeError):
    """A request that still failed after all retries; the sample is reported and not cached."""


class UnreadableReply(ValueError):
    """A reply that is not a chat completion with text (an HTML page, truncated JSON, an ``error`` object, no
    ``choices``...): a failed call, retried like a 5xx."""


class RequestTimeout(TimeoutError):
    """No complete reply within the request's time limit (retried like a lost connection)."""


# ----------------------------------------------------------------------------------------------------------------
# Secrets


def _escaped(char: str) -> str:
    """A pattern for ``char`` written plainly or escaped once or many times (JSON / Python ``\\u`` and ``\\x``, URL
    ``%``, HTML entities)."""
    code = ord(char)
    forms = [re.escape(char), rf"\\+u(?i:{code:04x})", rf"&#0*{code};", rf"&#(?i:x0*{code:x});"]
    if code < 0x100:
        forms += [rf"\\+x(?i:{code:02x})", rf"%(?i:{code:02x})"]
    if code >= 0x10000:
        forms.append(rf"\\+U(?i:{code:08x})")
    return "(?:" + "|".join(forms) + ")"


class Redactor:
    """Removes the API key, in any escaping, and anything that looks like an OpenAI key from what is printed or
    written. ``redact(text)`` for a string; :meth:`value` for any JSON value, at any depth (keys included)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._pattern = re.compile("".join(_escaped(c) for c in secret)) if secret else None

    def __call__(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, REDACTED)
            text = self._pattern.sub(REDACTED, text)
        return KEY_LIKE.sub("sk-" + REDACTED, text)

    def value(self, value: Any) -> Any:
        """``value`` with every string redacted, however deeply it sits in dicts, lists and tuples."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf, from a reply's JSON) replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any, redact: Redactor, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (non-finite numbers become null; ``allow_nan=False`` as the last guard) with
    every string redacted, before and after serialisation."""
    return redact(json.dumps(_finite(redact.value(value)), ensure_ascii=False, allow_nan=False, indent=indent))


def write_json(path: str | Path, value: Any, redact: Redactor) -> None:
    """Write ``value`` as strict, redacted JSON, atomically."""
    write_text_atomic(path, to_json(value, redact, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Sequence[Any], redact: Redactor) -> None:
    """Write ``rows`` as strict, redacted JSON lines, atomically."""
    write_text_atomic(path, "".join(to_json(row, redact) + "\n" for row in rows))


def read_api_key(variable: str) -> str:
    """The key from the environment; the error names the variable, never a value."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise InputError("--api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
    key = os.environ.get(variable, "").strip()
    if not key:
        raise InputError(f"environment variable {variable} is not set: export it with the API key "
                         "(any non-empty value for a local server without authentication)")
    return key


# ----------------------------------------------------------------------------------------------------------------
# Command line


class RedactingParser(argparse.ArgumentParser):
    """An argument parser whose error messages never echo anything that looks like an API key."""

    def error(self, message: str) -> NoReturn:
        super().error(KEY_LIKE.sub("sk-" + REDACTED, message))


class _RefuseKeyOnCommandLine(argparse.Action):
    """``--openai_api_key`` of the official scripts: refused without echoing the value."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error("API keys are not taken on the command line; export the key and name the variable with "
                     "--api_key_env (default OPENAI_API_KEY)")


def add_client_arguments(parser: argparse.ArgumentParser, default_model: str, model_help: str,
                         cache_help: str) -> None:
    """The judge's flags, the same in every scorer: model, server, key variable, concurrency, cache, retries,
    timeout, backoff."""
    parser.add_argument("--model", default=default_model, help=model_help)
    parser.add_argument("--base_url", "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    parser.add_argument("--api_key_env", "--api-key-env", default="OPENAI_API_KEY",
                        help="name of the environment variable holding the API key")
    parser.add_argument("--openai_api_key", "--openai-api-key", nargs="?", action=_RefuseKeyOnCommandLine,
                        help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=8, help="parallel requests")
    parser.add_argument("--cache", help=cache_help)
    parser.add_argument("--max_retries", "--max-retries", type=int, default=6,
                        help="retries of one request on 429, 5xx, timeouts, connection errors and unreadable replies")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one request may take as a whole (connect, wait, read)")
    parser.add_argument("--backoff_base", "--backoff-base", type=float, default=1.0, help="first backoff, seconds")
    parser.add_argument("--backoff_max", "--backoff-max", type=float, default=60.0, help="longest backoff, seconds")


def check_client_arguments(args: argparse.Namespace) -> None:
    """Bounds the client needs (InputError otherwise)."""
    for flag, value, least in (("--concurrency", args.concurrency, 1), ("--max_retries", args.max_retries, 0)):
        if value < least:
            raise InputError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (("--timeout", args.timeout), ("--backoff_base", args.backoff_base),
                        ("--backoff_max", args.backoff_max)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{flag} must be a positive number of seconds, got {value}")


# ----------------------------------------------------------------------------------------------------------------
# Requests and replies


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request: everything that decides the judgment, and so its cache key."""

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content), the system prompt included
    temperature: float
    max_tokens: int
    n: int | None = None  # sent only when set (CLAIR sends n=1; LLaVA's review does not send n)

    def payload(self) -> dict[str, Any]:
        """The request body's fields, as sent."""
        body: dict[str, Any] = {"model": self.model,
                                "messages": [{"role": role, "content": content} for role, content in self.messages],
                                "temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.n is not None:
            body["n"] = self.n
        return body

    def key(self) -> str:
        """sha256 of the canonical JSON of :meth:`payload`."""
        text = json.dumps(self.payload(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def reply_text(body: str) -> str:
    """The ``choices[0].message.content`` of a chat-completion body (JSON text).

    Raises :class:`UnreadableReply` naming what is wrong when the body is not JSON, carries an ``error`` object, or
    lacks a non-empty ``choices`` list whose first item has a ``message`` object with string ``content``.
    """
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        raise UnreadableReply(f"not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise UnreadableReply(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not choices and data.get("error") is not None:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise UnreadableReply(f"the judge answered with an error: {str(message)[:200]}")
    if not isinstance(choices, list) or not choices:
        raise UnreadableReply("no 'choices' in the reply" if choices is None else "empty or invalid 'choices'")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise UnreadableReply("choices[0] has no message with string 'content'")
    return content


class ChatClient:
    """Chat-completions calls, each bounded as a whole by ``timeout`` and retried with bounded exponential backoff
    and jitter. :meth:`stop` makes every call in progress give up at once (Ctrl-C)."""

    def __init__(self, api_key: str, base_url: str | None, timeout: float, max_retries: int,
                 backoff_base: float, backoff_max: float) -> None:
        import openai

        self._openai = openai
        # the SDK's own timeout bounds each read; ours (see _send) bounds the request as a whole
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.redact = Redactor(api_key)
        self._stopped = threading.Event()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ChatClient":
        """A client with the settings of :func:`add_client_arguments`, checked, and the key from the variable named
        by ``--api_key_env`` (InputError, naming the flag or the variable, when either is wrong)."""
        check_client_arguments(args)
        api_key = read_api_key(args.api_key_env)
        return cls(api_key, args.base_url, args.timeout, args.max_retries, args.backoff_base, args.backoff_max)

    def stop(self) -> None:
        """Give up every call in progress and every later one (:class:`JudgeError`)."""
        self._stopped.set()

    def __call__(self, request: ChatRequest) -> tuple[str, int]:
        """The reply text and how many transient errors were retried."""
        openai = self._openai
        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError, UnreadableReply,
                     RequestTimeout)
        fatal = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        attempt = 0
        while True:
            if self._stopped.is_set():
                raise JudgeError("stopped")
            try:
                return self._send(request), attempt
            except fatal as e:
                raise FatalJudgeError(self.redact(f"{type(e).__name__}: {e}")) from None
            except retryable as e:
                if attempt >= self.max_retries:
                    raise JudgeError(self.redact(f"{type(e).__name__} after {attempt + 1} tries: {e}")) from None
                if self._stopped.wait(self.delay(attempt, e)):
                    raise JudgeError("stopped") from None
                attempt += 1
            except openai.APIError as e:
                raise JudgeError(self.redact(f"{type(e).__name__}: {e}")) from None

    def _send(self, request: ChatRequest) -> str:
        """One attempt, in a daemon thread that this call stops waiting for after ``timeout`` seconds in all (or at
        :meth:`stop`); an abandoned attempt ends on its own (the SDK's read timeout) and its reply is dropped."""
        done = threading.Event()
        result: dict[str, Any] = {}

        def attempt() -> None:
            try:  # the raw body, read by reply_text (the SDK returns a str, a list or a half-empty object for a body
                # that is not a chat completion), redacted first because its errors quote it
                response = self._client.chat.completions.with_raw_response.create(**request.payload())
                result["text"] = reply_text(self.redact(response.text))
            except BaseException as e:  # handed to the caller
                result["error"] = e
            finally:
                done.set()

        threading.Thread(target=attempt, name="judge-request", daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._stopped.is_set():
                raise JudgeError("stopped")
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"no complete reply within {self.timeout:g} s (--timeout)")
        if "error" in result:
            raise result["error"]
        return result["text"]

    def delay(self, attempt: int, error: Exception) -> float:
        """``base * 2**attempt`` with equal jitter, at least the server's Retry-After, at most ``backoff_max``."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        wait = random.uniform(ceiling / 2, ceiling)
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                wait = max(wait, float(retry_after))
            except ValueError:
                pass
        return min(wait, self.backoff_max)


# ----------------------------------------------------------------------------------------------------------------
# The cache


class JudgeCache:
    """Judgments, one JSON line each (``{"key": ..., **record}``), appended and fsynced as they arrive.

    ``accept(record)`` says whether a line is a judgment; a torn or bad line, and one that ``accept`` refuses (an
    unparsable or failed sample, or a score out of range, cached by an earlier version), is counted in
    ``ignored_lines`` and not used, so that sample is asked again. Open it with :func:`open_cache`, which locks it.
    """

    def __init__(self, path: Path, accept: Callable[[dict[str, Any]], bool]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.accept = accept
        self.entries: dict[str, dict[str, Any]] = {}
        self.ignored_lines = 0
        if path.is_file():
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    self._load(line)

    def _load(self, line: str) -> None:
        try:
            entry = json.loads(line)
            key = entry.pop("key")
            usable = isinstance(key, str) and self.accept(entry)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            usable = False
        if usable:
            self.entries[key] = entry
        elif line.strip():
            self.ignored_lines += 1

    def get(self, *keys: str) -> dict[str, Any] | None:
        """The record of the first of ``keys`` that is cached (the current key, then older ones), or None."""
        for key in keys:
            if key in self.entries:
                return self.entries[key]
        return None

    def _ends_with_newline(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, key: str, record: dict[str, Any], redact: Redactor) -> None:
        """Append one judgment (after a newline if the file ends in a torn line) and flush it to disk."""
        line = to_json({"key": key, **record}, redact) + "\n"
        try:
            prefix = "" if self._ends_with_newline() else "\n"
            with self.path.open("a", encoding="utf-8") as f:
                f.write(prefix + line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # a full disk: name the file in the one-line error
            e.filename = e.filename or str(self.path)
            raise
        self.entries[key] = record


class _Locked:
    def __init__(self, path: Path, accept: Callable[[dict[str, Any]], bool], what: str) -> None:
        self.lock = ExclusiveLock(path, what)
        self.path, self.accept = path, accept

    def __enter__(self) -> JudgeCache:
        self.lock.acquire()
        try:
            return JudgeCache(self.path, self.accept)
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


def open_cache(path: Path, accept: Callable[[dict[str, Any]], bool], what: str = "the judge cache") -> _Locked:
    """``with open_cache(path, accept) as cache:`` the cache, locked for this process (a second process is refused
    at once with :class:`eval.files.LockHeld`, one line naming the holder), read after the lock is taken."""
    return _Locked(path, accept, f"{what} {path}")


@contextlib.contextmanager
def judging(path: Path, accept: Callable[[dict[str, Any]], bool], what: str, noun: str) -> Iterator[JudgeCache]:
    """``with judging(path, accept, "the CLAIR cache", "samples") as cache:`` a scorer's judging and writing, with
    the cache opened by :func:`open_cache`; what stops it becomes one line (through :func:`eval.files.exit_status`):
    a judge that refuses every request (:class:`FatalJudgeError`) and a write error such as a full disk
    (:func:`eval.files.output_error`) an ``error:`` line and status 2, Ctrl-C a line that says where the judgments
    that arrived are kept, and 130."""
    try:
        with open_cache(path, accept, what) as cache:
            yield cache
    except FatalJudgeError as e:
        raise InputError(f"the judge refused the request, stopping: {e}") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"\ninterrupted; judged {noun} are cached in {path}, rerun to resume") from None
    except OSError as e:  # the cache or an output: a full disk, a read-only folder...
        raise output_error(e, f"the judged {noun} are kept in {path}") from None


# ----------------------------------------------------------------------------------------------------------------
# Running many judgments

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_judgments(items: Sequence[Item], work: Callable[[Item], Result],
                  done: Callable[[Item, Result], None], concurrency: int, client: ChatClient) -> None:
    """Run ``work(item)`` for every item in ``concurrency`` daemon threads and call ``done(item, result)`` in this
    thread as each ends (completion order); ``done`` is where a judgment is cached.

    An exception in ``work`` (a :class:`FatalJudgeError`, a bug) stops the client and is raised here. Ctrl-C stops
    at once: the client gives up its calls, the results that already arrived go through ``done`` (so they are
    cached), and KeyboardInterrupt is raised; calls still in flight are dropped, never waited for.
    """
    if not items:
        return
    todo: queue.SimpleQueue[Item] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    finished: queue.SimpleQueue[tuple[Item, Any, BaseException | None]] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((item, work(item), None))
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread
                finished.put((item, None, e))

    for _ in range(min(max(1, concurrency), len(items))):
        threading.Thread(target=worker, name="judge-worker", daemon=True).start()
    try:
        for _ in range(len(items)):
            item, result, error = finished.get()
            if error is not None:
                raise error
            done(item, result)
    except KeyboardInterrupt:
        client.stop()
        for item, result, error in _drain(finished):
            if error is None:
                done(item, result)
        raise
    except BaseException:
        client.stop()
        raise


def _drain(finished: "queue.SimpleQueue[Any]") -> Iterator[Any]:
    while True:
        try:
            yield finished.get_nowait()
        except queue.Empty:
            return
