"""CLAIR scorer: an LLM judge rates how well a generated caption matches the human reference (SPARC's protocol).

The prompt (``eval/data/clair_prompt.txt``), the model call (one user message, temperature 0, max_tokens 1024, n=1,
model ``gpt-4o``) and the parsing of the judge's reply are the official ones (SPARC ``clair.py``, identical to
DavidMChan/clair): the JSON between the first ``{`` and the next ``}``, else the first number (x100 if below 1); a
reply with no number is asked again, at most 3 calls in all; after that the sample is *unparsable*.

Each sample ends *judged* (a score), *unparsable* or *failed* (a call that still failed after its retries: HTTP
429/5xx, timeouts, lost connections, and any reply that is not a chat completion with text, such as an HTML page,
truncated JSON or an ``{"error": ...}`` body). ``clair`` is the mean score over the judged samples only; unparsable
and failed samples are counted, reported and never cached, so a rerun asks for them again (the official code scored
an unparsable reply 0 and crashed on a failed call).

Answers (``{"image_id", "caption"}`` per line) are paired with references **by image id** (IIW: ``image/key`` and
``IIW``; DOCCI: ``image_file`` and ``description``). The subset scored is the one that was captioned: the runner's
``<name>_manifest.json`` beside the answers file ``<name>.jsonl`` (or ``--subset_manifest``); without a manifest,
the official one (DOCCI: ``Random(seed).sample(lines, 500)``; IIW: every annotation). Ids of the subset without an
answer are reported; answers outside it are reported and not scored.

The API key is read from the environment variable named by ``--api_key_env`` (never from the command line) and is
written nowhere. ``--base_url`` points the client at any OpenAI-compatible server (e.g. a local vLLM judge).
Judged samples are cached on disk (keyed by a hash of model and prompt, one line appended per sample), so a rerun
or an interrupted run makes no repeated calls. Outputs: the metrics json, and ``<name>.jsonl`` per sample beside it.

Usage::

    export OPENAI_API_KEY=...
    python -m eval.clair --annotation_file IIW-400/data.jsonl --answer_file results/iiw_sparc.jsonl \\
        --data_type iiw --save_path results/iiw_sparc_clair.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

from eval.files import read_manifest as manifest_ids
from eval.files import (
    InputError,
    Problem,
    RunPaths,
    check_output_file,
    read_records,
    report_problems,
    write_json_atomic,
    write_text_atomic,
)

PROMPT_FILE = Path(__file__).resolve().parent / "data" / "clair_prompt.txt"
REFERENCE_FIELDS = {"iiw": ("image/key", "IIW"), "docci": ("image_file", "description")}
PARSE_ATTEMPTS = 3
TEMPERATURE = 0.0
MAX_TOKENS = 1024
_NUMBER = re.compile(r"\d*\.?\d+")
_REASON = re.compile(r"(?i)reason.*")
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_*\-]{4,}")


class FatalJudgeError(RuntimeError):
    """An API error that every request would hit (bad key, no such model): the run stops."""


class JudgeError(RuntimeError):
    """A request that still failed after all retries; the sample is reported and not cached."""


class UnreadableReply(ValueError):
    """A reply that is not a chat completion with text (an HTML page, truncated JSON, an ``error`` object, no
    ``choices``...): a failed call, retried like a 5xx."""


# ----------------------------------------------------------------------------------------------------------------
# Prompt and parsing (official)


def build_prompt(template: str, candidates: list[str], targets: list[str]) -> str:
    """The official prompt: each statement as ``"- {text}\\n"``."""
    return template.format(candidate_statements="".join(f"- {c}\n" for c in candidates),
                           target_statements="".join(f"- {t}\n" for t in targets))


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


def parse_response(response: str) -> tuple[float, Any] | None:
    """``(score, reason)`` from a judge reply by the official rules, or None when it holds no number."""
    try:
        data = json.loads("{" + response.split("{")[1].split("}")[0] + "}")
        return float(data["score"]), data.get("reason", "Unknown")
    except (json.JSONDecodeError, KeyError, IndexError, ValueError, TypeError):
        pass
    numbers = _NUMBER.findall(response)
    if not numbers:
        return None
    score = float(numbers[0])
    if score < 1:
        score *= 100
    reasons = _REASON.findall(response)
    reason = reasons[0].strip()[len("reason"):].replace(":", "").strip() if reasons else "Unknown"
    return score, reason


@dataclass
class Judgement:
    """The outcome of one sample: score 0-100 (None if unparsable or failed), reason, the raw replies, the call
    counts, and the error of a failed sample. Only judged samples are cached and enter the mean."""

    score: float | None
    reason: Any
    parsed: bool
    responses: list[str] = field(default_factory=list)
    tries: int = 0
    api_retries: int = 0
    error: str | None = None

    @property
    def status(self) -> str:
        """``judged`` (a score), ``unparsable`` (no number in any reply) or ``failed`` (the calls failed)."""
        if self.error is not None:
            return "failed"
        return "judged" if self.parsed else "unparsable"


def judge(call: Callable[[str], tuple[str, int]], prompt: str) -> Judgement:
    """Ask up to ``PARSE_ATTEMPTS`` times until a reply parses; ``call`` returns ``(reply, api_retries)``."""
    judgement = Judgement(None, None, False)
    for _ in range(PARSE_ATTEMPTS):
        reply, retries = call(prompt)
        judgement.tries += 1
        judgement.api_retries += retries
        judgement.responses.append(reply)
        parsed = parse_response(reply)
        if parsed is not None:
            judgement.score, judgement.reason = parsed
            judgement.parsed = True
            break
    return judgement


# ----------------------------------------------------------------------------------------------------------------
# The API client


class Redactor:
    """Removes the API key (and anything that looks like an OpenAI key) from text before it is printed or saved."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "***")
        return _KEY_LIKE.sub("sk-***", text)


class ChatClient:
    """One chat-completions call with the official settings, retried with bounded exponential backoff and jitter."""

    def __init__(self, model: str, api_key: str, base_url: str | None, timeout: float, max_retries: int,
                 backoff_base: float, backoff_max: float) -> None:
        import openai

        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)
        self.model = model
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.redact = Redactor(api_key)

    def __call__(self, prompt: str) -> tuple[str, int]:
        """The reply text and how many transient errors were retried."""
        openai = self._openai
        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
        fatal = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        attempt = 0
        while True:
            try:  # the raw body, read by reply_text (the SDK returns a str, a list or a half-empty object for
                # a body that is not a chat completion), redacted first because its errors quote it
                response = self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}],
                    temperature=TEMPERATURE, max_tokens=MAX_TOKENS, n=1)
                return reply_text(self.redact(response.text)), attempt
            except fatal as e:
                raise FatalJudgeError(self.redact(f"{type(e).__name__}: {e}")) from None
            except (*retryable, UnreadableReply) as e:
                if attempt >= self.max_retries:
                    raise JudgeError(self.redact(f"{type(e).__name__} after {attempt + 1} tries: {e}")) from None
                time.sleep(self.delay(attempt, e))
                attempt += 1
            except openai.APIError as e:
                raise JudgeError(self.redact(f"{type(e).__name__}: {e}")) from None

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


def cache_key(model: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([model, prompt]).encode("utf-8")).hexdigest()


class Cache:
    """Judged samples, one JSON line each, appended and flushed as they finish.

    A torn or bad line, and an entry without a score (an unparsable or failed sample cached by an earlier version),
    is ignored, so that sample is asked again.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "clair_cache.jsonl"
        self.entries: dict[str, Judgement] = {}
        self.ignored_lines = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    self._load(line)

    def _load(self, line: str) -> None:
        try:
            entry = json.loads(line)
            key = entry.pop("key")
            judgement = Judgement(**entry)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            self.ignored_lines += 1
            return
        if judgement.status != "judged" or not isinstance(judgement.score, (int, float)):
            self.ignored_lines += 1
            return
        self.entries[key] = judgement

    def _ends_with_newline(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return True
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, key: str, judgement: Judgement) -> None:
        """Append one judged sample (after a newline if the file ends in a torn line) and flush it to disk."""
        prefix = "" if self._ends_with_newline() else "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(prefix + json.dumps({"key": key, **asdict(judgement)}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[key] = judgement


# ----------------------------------------------------------------------------------------------------------------
# Data


def load_references(annotation_file: Path, data_type: str,
                    problems: list[Problem]) -> tuple[dict[str, str], list[str]]:
    """``image id -> reference`` (the first of a repeated id) and every annotated id in file order."""
    id_field, text_field = REFERENCE_FIELDS[data_type]
    references: dict[str, str] = {}
    order: list[str] = []
    for index, (line, record) in enumerate(read_records(annotation_file, problems), start=1):
        image_id, text = record.get(id_field), record.get(text_field)
        where = line if line is not None else index
        if image_id is None or not isinstance(text, str):
            problems.append(Problem(str(annotation_file), where, None if image_id is None else str(image_id),
                                    f"annotation without '{id_field}' or string '{text_field}'; skipped"))
            continue
        order.append(str(image_id))
        references.setdefault(str(image_id), text)
    if not references:
        raise InputError(f"{annotation_file}: no annotations with '{id_field}' and '{text_field}' "
                         f"(--data_type {data_type}?)")
    return references, order


@dataclass
class Subset:
    """The ids to score, in order; ``source`` is ``manifest``, ``official draw`` or ``all annotations``, and
    ``description`` says it in words for messages."""

    ids: list[str]
    source: str
    description: str
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "manifest": None if self.manifest is None else str(self.manifest),
                "count": len(self.ids)}


def read_manifest(path: Path, data_type: str, annotation_file: Path, known: set[str]) -> list[str]:
    """The ordered ``ids`` of a runner's manifest (``eval.files.manifest``).

    Raises InputError when the file is unreadable or has no list of ids, was written for another dataset type, or
    names ids that the annotation file does not have.
    """
    ids = manifest_ids(path, data_type)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} id(s) not in {annotation_file}, e.g. {unknown[:3]}")
    return ids


def choose_subset(args: argparse.Namespace, answer_file: Path, order: list[str]) -> Subset:
    """What was captioned: the manifest named by ``--subset_manifest`` or found beside the answers; without one, the
    official rule (DOCCI: ``Random(seed).sample(lines, docci_subset)``, SPARC ``clair.py``; IIW: every annotation).
    """
    path = Path(args.subset_manifest) if args.subset_manifest else RunPaths.of_answers(answer_file).manifest
    if args.subset_manifest and not path.is_file():
        raise InputError(f"{path}: no such manifest (--subset_manifest)")
    annotation_file = Path(args.annotation_file)
    if path.is_file():
        ids = read_manifest(path, args.data_type, annotation_file, set(order))
        return Subset(ids, "manifest", f"the captioned subset ({path})", path)
    if args.data_type == "docci" and args.docci_subset:
        if args.docci_subset > len(order):
            raise InputError(f"{annotation_file}: {len(order)} annotations, fewer than the subset of "
                             f"{args.docci_subset} (and no {path.name} beside the answers to name the subset)")
        ids = random.Random(args.seed).sample(order, args.docci_subset)
        return Subset(ids, "official draw", f"the official subset (seed {args.seed}, {args.docci_subset} images)")
    return Subset(order, "all annotations", f"the annotation file {annotation_file}")


@dataclass
class Sample:
    """One answer to score."""

    image_id: str
    line: int | None
    prompt: str


def load_samples(answer_file: Path, references: dict[str, str], subset: Subset, template: str, id_key: str,
                 caption_key: str, counts: dict[str, int], problems: list[Problem]) -> list[Sample]:
    """The answers of the subset, paired with their references by id; bad, unknown, duplicate and outside-the-subset
    answers, and ids of the subset without an answer, are reported and counted."""
    samples: list[Sample] = []
    seen: set[str] = set()
    in_subset = set(subset.ids)
    for line, record in read_records(answer_file, problems):
        counts["answers"] += 1
        raw_id, caption = record.get(id_key), record.get(caption_key)
        image_id = None if raw_id is None else str(raw_id)
        if image_id is None or image_id not in references:
            counts["unknown_id"] += 1
            reason = f"no '{id_key}'" if image_id is None else "image id not in the annotation file"
            problems.append(Problem(str(answer_file), line, image_id, f"{reason}; not scored"))
        elif image_id in seen:
            counts["duplicate"] += 1
            problems.append(Problem(str(answer_file), line, image_id, "duplicate answer; first one kept"))
        elif not isinstance(caption, str) or not caption.strip():
            counts["missing_caption"] += 1
            problems.append(Problem(str(answer_file), line, image_id, f"missing or empty '{caption_key}'; not scored"))
        elif image_id not in in_subset:
            counts["outside_subset"] += 1
            problems.append(Problem(str(answer_file), line, image_id, f"not in {subset.description}; not scored"))
        else:
            seen.add(image_id)
            samples.append(Sample(image_id, line, build_prompt(template, [caption], [references[image_id]])))
    for image_id in subset.ids:
        if image_id not in seen:
            counts["not_answered"] += 1
            problems.append(Problem(str(answer_file), None, image_id, f"in {subset.description} but not answered"))
    return samples


# ----------------------------------------------------------------------------------------------------------------
# Running


def score_samples(samples: list[Sample], client: Callable[[str], tuple[str, int]], model: str, cache: Cache,
                  concurrency: int, redact: Callable[[str], str], counts: dict[str, int],
                  problems: list[Problem], answer_file: Path) -> dict[str, Judgement]:
    """Judgements per image id: cached ones reused, the others asked for in a thread pool; judged ones are cached
    as they end, failed and unparsable ones are reported and not cached (a rerun asks again)."""
    results: dict[str, Judgement] = {}
    pending: list[Sample] = []
    for sample in samples:
        cached = cache.entries.get(cache_key(model, sample.prompt))
        if cached is None:
            pending.append(sample)
        else:
            results[sample.image_id] = cached
            counts["cached"] += 1
    if not pending:
        return results
    executor = ThreadPoolExecutor(max_workers=max(1, concurrency))
    futures: dict[Future[Judgement], Sample] = {executor.submit(judge, client, s.prompt): s for s in pending}
    try:
        for future in as_completed(futures):
            sample = futures[future]
            try:
                judgement = future.result()
            except JudgeError as e:
                judgement = Judgement(None, None, False, error=str(e))
                problems.append(Problem(str(answer_file), sample.line, sample.image_id, f"judge call failed: {e}"))
            judgement.responses = [redact(r) for r in judgement.responses]
            if isinstance(judgement.reason, str):
                judgement.reason = redact(judgement.reason)
            if judgement.status == "judged":
                cache.append(cache_key(model, sample.prompt), judgement)
            elif judgement.status == "unparsable":
                problems.append(Problem(str(answer_file), sample.line, sample.image_id,
                                        f"no score in {judgement.tries} judge replies; left out of the mean"))
            results[sample.image_id] = judgement
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    return results


def summarize(judgements: list[Judgement]) -> dict[str, float | int | None]:
    """``clair``: the mean score (0-100) over the judged samples, None if there are none; ``judged``,
    ``unparsable`` and ``failed``: how many samples ended each way (the last two are not in the mean)."""
    statuses = Counter(j.status for j in judgements)
    scores = [j.score for j in judgements if j.status == "judged"]
    return {"clair": statistics.fmean(scores) if scores else None,
            **{status: statuses[status] for status in ("judged", "unparsable", "failed")}}


def sample_rows(samples: list[Sample], results: dict[str, Judgement]) -> list[dict[str, Any]]:
    """The per-sample output, in answer-file order; ``score`` is None unless ``status`` is ``judged``."""
    rows = []
    for sample in samples:
        judgement = results[sample.image_id]
        row = {"image_id": sample.image_id, "status": judgement.status, "score": judgement.score,
               "reason": judgement.reason, "tries": judgement.tries, "api_retries": judgement.api_retries,
               "responses": judgement.responses}
        if judgement.error is not None:
            row["error"] = judgement.error
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """An argument parser whose error messages never echo anything that looks like an API key."""

    def error(self, message: str) -> NoReturn:
        super().error(_KEY_LIKE.sub("sk-***", message))


class _RefuseKeyOnCommandLine(argparse.Action):
    """``--openai_api_key`` of the official script: refused without echoing the value."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error("API keys are not taken on the command line; export the key and name the variable with "
                     "--api_key_env (default OPENAI_API_KEY)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m eval.clair", description=__doc__, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotation_file", "--annotation-file", required=True,
                        help="IIW-400 data.jsonl or DOCCI docci_descriptions.jsonl(ines)")
    parser.add_argument("--answer_file", "--answer-file", "--answers_file", "--answers-file",
                        help="captions jsonl ({image_id, caption} per line)")
    parser.add_argument("--answer_folder", "--answer-folder",
                        help="official style: <answer_folder>/<experiment_name>.jsonl")
    parser.add_argument("--experiment_name", "--experiment-name",
                        help="official style, with --answer_folder / --save_folder")
    parser.add_argument("--save_path", "--save-path",
                        help="metrics json X.json (per-sample output X.jsonl beside it; X.jsonl is accepted too)")
    parser.add_argument("--save_folder", "--save-folder",
                        help="official style: <save_folder>/<experiment_name>_clair.json[l]")
    parser.add_argument("--data_type", "--data-type", choices=sorted(REFERENCE_FIELDS), required=True)
    parser.add_argument("--model", default="gpt-4o", help="judge model (official: gpt-4o)")
    parser.add_argument("--base_url", "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    parser.add_argument("--api_key_env", "--api-key-env", default="OPENAI_API_KEY",
                        help="name of the environment variable holding the API key")
    parser.add_argument("--openai_api_key", "--openai-api-key", nargs="?", action=_RefuseKeyOnCommandLine,
                        help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=8, help="parallel requests")
    parser.add_argument("--cache", help="cache folder (default: clair_cache/ beside the outputs)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the official DOCCI subset draw")
    parser.add_argument("--docci_subset", "--docci-subset", type=int, default=500,
                        help="size of the official DOCCI subset when there is no manifest (0: every annotation)")
    parser.add_argument("--subset_manifest", "--subset-manifest",
                        help="the runner's manifest of the captioned ids (default: <answers>_manifest.json beside "
                             "the answers file, when it exists); without one, the official subset is scored")
    parser.add_argument("--image_id_key", "--image-id-key", default="image_id")
    parser.add_argument("--caption_key", "--caption-key", default="caption")
    parser.add_argument("--max_retries", "--max-retries", type=int, default=6,
                        help="retries of one request on 429, 5xx, timeouts and connection errors")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--backoff_base", "--backoff-base", type=float, default=1.0, help="first backoff, seconds")
    parser.add_argument("--backoff_max", "--backoff-max", type=float, default=60.0, help="longest backoff, seconds")
    return parser


def resolve_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """``(answer_file, metrics_json, per_sample_jsonl)`` from either the new or the official arguments."""
    if args.answer_file:
        answer_file = Path(args.answer_file)
    elif args.answer_folder and args.experiment_name:
        answer_file = Path(args.answer_folder) / f"{args.experiment_name}.jsonl"
    else:
        raise InputError("name the captions with --answer_file (or --answer_folder and --experiment_name)")
    if args.save_path:
        base = check_output_file(args.save_path)
    elif args.save_folder and args.experiment_name:
        base = Path(args.save_folder) / f"{args.experiment_name}_clair"
    else:
        base = answer_file.with_name(answer_file.name.removesuffix(".jsonl") + "_clair")
    base = base.with_name(base.name.removesuffix(".jsonl").removesuffix(".json"))
    metrics_path, samples_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".jsonl")
    if samples_path.resolve() == answer_file.resolve():
        raise InputError(f"{samples_path}: the per-sample output would overwrite the captions; "
                         "choose another --save_path")
    return answer_file, check_output_file(metrics_path), check_output_file(samples_path)


def read_api_key(variable: str) -> str:
    """The key from the environment; the error names the variable, never a value."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise InputError("--api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
    key = os.environ.get(variable, "").strip()
    if not key:
        raise InputError(f"environment variable {variable} is not set: export it with the API key "
                         "(any non-empty value for a local server without authentication)")
    return key


def new_counts() -> dict[str, int]:
    return dict.fromkeys(("answers", "cached", "missing_caption", "unknown_id", "duplicate", "outside_subset",
                          "not_answered"), 0)


def run(args: argparse.Namespace) -> int:
    """Score one answers file; returns the exit status."""
    answer_file, metrics_path, samples_path = resolve_paths(args)
    api_key = read_api_key(args.api_key_env)
    redact = Redactor(api_key)
    problems: list[Problem] = []
    counts = new_counts()
    template = PROMPT_FILE.read_text(encoding="utf-8")
    references, order = load_references(Path(args.annotation_file), args.data_type, problems)
    subset = choose_subset(args, answer_file, order)
    print(f"scoring the answers to {subset.description}: {len(subset.ids)} images")
    samples = load_samples(answer_file, references, subset, template, args.image_id_key, args.caption_key,
                           counts, problems)
    cache = Cache(Path(args.cache) if args.cache else metrics_path.parent / "clair_cache")
    client = ChatClient(args.model, api_key, args.base_url, args.timeout, args.max_retries,
                        args.backoff_base, args.backoff_max)
    try:
        results = score_samples(samples, client, args.model, cache, args.concurrency, redact, counts, problems,
                                answer_file)
    except FatalJudgeError as e:
        print(f"error: the judge refused the request, stopping: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; judged samples are cached in {cache.path}, rerun to resume", file=sys.stderr)
        return 130
    metrics = summarize([results[s.image_id] for s in samples])
    rows = sample_rows(samples, results)
    write_text_atomic(samples_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_json_atomic(metrics_path, {
        "scorer": "clair",
        "answers_file": str(answer_file),
        "annotation_file": str(args.annotation_file),
        "data_type": args.data_type,
        "model": args.model,
        "base_url": redact(args.base_url) if args.base_url else None,
        "metrics": metrics,
        "counts": counts,
        "subset": subset.to_dict(),
        "problems": [p.to_dict() for p in problems],
        "samples_file": str(samples_path),
        "cache_file": str(cache.path),
        "settings": {"temperature": TEMPERATURE, "max_tokens": MAX_TOKENS, "n": 1, "parse_attempts": PARSE_ATTEMPTS,
                     "seed": args.seed,
                     "docci_subset": args.docci_subset if subset.source == "official draw" else None},
    })
    print_summary(args, metrics, counts)
    report_problems(problems)
    print(f"metrics written to {metrics_path}, per-sample scores to {samples_path}")
    return 1 if metrics["failed"] or not metrics["judged"] else 0


def print_summary(args: argparse.Namespace, metrics: dict[str, float | int | None], counts: dict[str, int]) -> None:
    clair_value = "n/a" if metrics["clair"] is None else f"{metrics['clair']:.2f}"
    print("| Dataset | Judge | Answers | Judged | Unparsable | Failed | CLAIR (judged samples) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.data_type} | {args.model} | {counts['answers']} | {metrics['judged']} | {metrics['unparsable']} "
          f"| {metrics['failed']} | {clair_value} |")
    if metrics["failed"]:
        print(f"{metrics['failed']} sample(s) failed after all retries and are left out of the mean; "
              "rerun to retry them", file=sys.stderr)
    if metrics["unparsable"]:
        print(f"{metrics['unparsable']} sample(s) got no score in {PARSE_ATTEMPTS} judge replies and are left out "
              "of the mean; rerun to ask again", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
