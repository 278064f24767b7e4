"""LLaVA-Bench (In-the-Wild) scorer: LLaVA's GPT-4 review of each answer against the reference answer.

For each question, the judge sees the image's context (its caption sentences), the question, the reference answer
(Assistant 1) and the model's answer (Assistant 2), with LLaVA's review prompt (``eval/data/llava_bench/rule.json``,
or ``-r/--rule``), its system message, temperature 0.2 and max_tokens 1024 (``--max-tokens``), and replies with two
scores from 1 to 10 on its first line. The reply is parsed by LLaVA's ``parse_score`` (the first line, ``,`` read as
a space, split on single spaces: exactly two numbers). Per category (``conv``, ``detail``, ``complex``) and ``all``:
the mean of the (reference, model) pairs, each rounded to 3 decimals, and the **relative score**
``round(model / reference * 100, 1)`` that papers report (LLaVA's ``summarize_gpt_review.py``); also the model's mean
x 10, which some papers report instead.

Safe defaults, each a deviation from the official script (README, "Deviations"): answers are matched to questions
and reference answers **by question_id** (the official script zips the three files by position:
``--zip-by-position``); a reply that does not give two scores from 1 to 10 is *unparsable*, counted and left out of
the means (the official script averages it in as ``[-1, -1]``: ``--average-unparsable``); a call is retried at most
``--max_retries`` times (the official script retries forever) and then *failed*, counted and left out; a rerun asks
again only for what is not cached (the official script resumes by counting lines). When the runner's manifest lies
beside the answers file (``<name>_manifest.json``), the questions it lists are the ones expected (not with
``--zip-by-position``, which pairs by position whatever the ids, as the official script).

Judge model: ``gpt-4-0613`` by default. The official ``gpt-4-0314`` is retired by its provider; ``gpt-4-0613`` is the
snapshot later LLaVA releases used, and a dated snapshot (not a moving alias) keeps numbers comparable between runs.
``--model`` names another; scores from another judge are not comparable with published ones.

The judge client is :mod:`eval.judge` (shared with CLAIR): the API key comes from the environment variable named by
``--api_key_env``, never the command line; ``--base_url`` for any OpenAI-compatible server; ``--timeout`` bounds each
request as a whole; judgments are cached (``llava_bench_cache/`` beside the metrics, locked), keyed by the whole
request. Outputs: the review file (``-o/--output``, default ``<metrics>.jsonl``: LLaVA's review lines plus
``status``) and the metrics json (``--save_path``, default ``<answers stem>_llava_bench.json`` beside the answers).

Usage::

    export OPENAI_API_KEY=...
    python -m eval.llava_bench --question llava-bench-in-the-wild/questions.jsonl \\
        --context llava-bench-in-the-wild/context.jsonl \\
        --answer-list llava-bench-in-the-wild/answers_gpt4.jsonl results/llava_bench/avisc.jsonl
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.files import (
    InputError,
    Problem,
    RunPaths,
    check_output_file,
    exit_status,
    read_manifest,
    read_records,
    report_problems,
    sample_id,
)
from eval.judge import (
    FAILED,
    JUDGED,
    STATUSES,
    UNPARSABLE,
    ChatClient,
    ChatRequest,
    JudgeCache,
    JudgeError,
    Redactor,
    RedactingParser,
    add_client_arguments,
    judging,
    run_judgments,
    write_json,
    write_jsonl,
)
from eval.scoring import Column, ScoredRun, Scorer, first_answers, judge_notes, register_scorer

RULE_FILE = Path(__file__).resolve().parent / "data" / "llava_bench" / "rule.json"
SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
DEFAULT_MODEL = "gpt-4-0613"
TEMPERATURE = 0.2
MAX_TOKENS = 1024
CATEGORIES = ("conv", "detail", "complex")
SCORE_RANGE = (1.0, 10.0)
UNPARSABLE_PAIR = [-1, -1]  # what the official parser returns for a reply it cannot read

# ----------------------------------------------------------------------------------------------------------------
# Prompt and parsing (official)


def build_content(caption: str, question: str, reference: str, answer: str, role: str, prompt: str) -> str:
    """The official user message."""
    return (f"[Context]\n{caption}\n\n"
            f"[Question]\n{question}\n\n"
            f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
            f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
            f"[System]\n{prompt}\n\n")


def parse_score(review: str) -> list[float] | None:
    """LLaVA's ``parse_score``: the first line, ``,`` replaced by a space, split on single spaces; exactly two
    numbers give ``[reference, model]``; None where the official code returns ``[-1, -1]``."""
    fields = review.split("\n")[0].replace(",", " ").split(" ")
    if len(fields) != 2:
        return None
    try:
        return [float(fields[0]), float(fields[1])]
    except ValueError:
        return None


def parse_review(review: str) -> list[float] | None:
    """:func:`parse_score`, and both scores finite numbers from 1 to 10 (the prompt's scale); None otherwise."""
    pair = parse_score(review)
    if pair is None or not all(math.isfinite(s) and SCORE_RANGE[0] <= s <= SCORE_RANGE[1] for s in pair):
        return None
    return pair


def read_rules(path: Path) -> dict[str, tuple[str, str]]:
    """``category -> (role, prompt)`` from the ``llava_bench_<category>`` entries of a rule file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a rule file ({type(e).__name__}: {e})") from None
    rules = {}
    for name, rule in data.items() if isinstance(data, dict) else ():
        if name.startswith("llava_bench_"):
            if not (isinstance(rule, dict) and isinstance(rule.get("role"), str)
                    and isinstance(rule.get("prompt"), str)):
                raise InputError(f"{path}: {name} needs a string 'role' and 'prompt'")
            rules[name.removeprefix("llava_bench_")] = (rule["role"], rule["prompt"])
    if not rules:
        raise InputError(f"{path}: no llava_bench_<category> rules")
    return rules


# ----------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Question:
    key: str  # the id as text (eval.files.sample_id)
    question_id: Any  # as written
    image: str
    text: str
    category: str
    line: int | None


@dataclass
class Pair:
    """One question to judge: its answers, where they were read, and the request."""

    index: int  # 1-based, the review's ``id``
    question: Question
    answer1_id: Any
    answer2_id: Any
    answer_line: int | None
    request: ChatRequest


@dataclass
class Review:
    """The outcome of one pair: the reply and its scores, or the error of a failed call."""

    content: str | None = None
    pair: list[float] | None = None
    api_retries: int = 0
    error: str | None = None
    cached: bool = False

    @property
    def status(self) -> str:
        if self.error is not None:
            return FAILED
        return JUDGED if self.pair is not None else UNPARSABLE


def read_questions(path: Path, rules: dict[str, tuple[str, str]], problems: list[Problem]) -> list[Question]:
    """Questions with ``question_id``, ``image``, ``text`` and a ``category`` the rules know; others are reported."""
    questions = []
    for line, record in read_records(path, problems):
        key = sample_id(record.get("question_id"))
        fields_ok = all(isinstance(record.get(f), str) for f in ("image", "text", "category"))
        if key is None or not fields_ok:
            problems.append(Problem(str(path), line, key, "question without an id or string 'image', 'text' and "
                                                          "'category'; not scored"))
        elif record["category"] not in rules:
            problems.append(Problem(str(path), line, key, f"category {record['category']!r} has no "
                                                          f"llava_bench_{record['category']} rule; not scored"))
        else:
            questions.append(Question(key, record["question_id"], record["image"], record["text"],
                                      record["category"], line))
    if not questions:
        raise InputError(f"{path}: no questions with 'question_id', 'image', 'text' and 'category'")
    return questions


def read_contexts(path: Path, problems: list[Problem]) -> dict[str, str]:
    """``image -> caption text``: the caption sentences joined by newlines (a caption given as one string is used
    whole; the official join would put a newline between its characters)."""
    contexts: dict[str, str] = {}
    for line, record in read_records(path, problems):
        image, caption = record.get("image"), record.get("caption")
        if isinstance(caption, list) and all(isinstance(c, str) for c in caption):
            caption = "\n".join(caption)
        if not isinstance(image, str) or not isinstance(caption, str):
            problems.append(Problem(str(path), line, None, "context without string 'image' and a 'caption' (a list "
                                                           "of sentences); skipped"))
            continue
        contexts.setdefault(image, caption)
    return contexts


def read_answers(path: Path, problems: list[Problem]) -> list[tuple[int | None, dict[str, Any]]]:
    """The answer records of a file (``question_id`` and ``text``); InputError when none has a ``question_id``."""
    records = read_records(path, problems)
    if records and not any("question_id" in r for _, r in records):
        found = sorted({k for _, r in records for k in r})[:12]
        raise InputError(f"{path}: no record has 'question_id' (found fields: {', '.join(found)}); expected "
                         "answer lines {\"question_id\", \"text\"} as LLaVA and our runners write them")
    return records


def answer_text(record: dict[str, Any]) -> str | None:
    text = record.get("text")
    return text if isinstance(text, str) else None


class Inputs:
    """Everything read before judging: questions, contexts, rules, both answer files, the subset."""

    def __init__(self, args: argparse.Namespace, problems: list[Problem]) -> None:
        self.question_file = Path(args.question)
        self.context_file = Path(args.context)
        self.reference_file, self.answers_file = (Path(p) for p in args.answer_list)
        self.rule_file = Path(args.rule) if args.rule else RULE_FILE
        self.rules = read_rules(self.rule_file)
        self.questions = read_questions(self.question_file, self.rules, problems)
        self.contexts = read_contexts(self.context_file, problems)
        self.references = read_answers(self.reference_file, problems)
        self.answers = read_answers(self.answers_file, problems)
        self.manifest = RunPaths.of_answers(self.answers_file).manifest
        self.subset: list[str] | None = None
        if self.manifest.is_file() and not args.zip_by_position:
            ids = read_manifest(self.manifest)
            known = {q.key for q in self.questions}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise InputError(f"{self.manifest}: {len(unknown)} id(s) not in {self.question_file}, e.g. "
                                 f"{unknown[:3]}")
            self.subset = ids


def _add_pair(pairs: list[Pair], inputs: Inputs, question: Question, reference: dict[str, Any],
              answer: dict[str, Any], line: int | None, args: argparse.Namespace, problems: list[Problem],
              counts: Counter[str]) -> None:
    """Append the pair to judge (its request built from the rule of the question's category), unless the question's
    image has no context (reported)."""
    caption = inputs.contexts.get(question.image)
    if caption is None:
        counts["no_context"] += 1
        problems.append(Problem(str(inputs.question_file), question.line, question.key,
                                f"no context for image {question.image!r} in {inputs.context_file}; not scored"))
        return
    role, prompt = inputs.rules[question.category]
    content = build_content(caption, question.text, reference["text"], answer["text"], role, prompt)
    request = ChatRequest(args.model, (("system", SYSTEM_PROMPT), ("user", content)), TEMPERATURE, args.max_tokens)
    pairs.append(Pair(len(pairs) + 1, question, reference.get("answer_id", reference.get("question_id")),
                      answer.get("answer_id", answer.get("question_id")), line, request))


def pairs_by_id(inputs: Inputs, args: argparse.Namespace, problems: list[Problem],
                counts: Counter[str]) -> list[Pair]:
    """The default: each expected question (the manifest's, else all) with the reference and the answer of its id,
    in question-file order. Missing, extra and duplicate answers are counted and reported."""
    expected = set(inputs.subset) if inputs.subset is not None else {q.key for q in inputs.questions}
    questions = [q for q in inputs.questions if q.key in expected]
    counts["questions"] = len(questions)
    references: dict[str, dict[str, Any]] = {}
    for line, record in inputs.references:
        key = sample_id(record.get("question_id"))
        if key is not None and answer_text(record) is not None:
            references.setdefault(key, record)
    known = {q.key for q in inputs.questions}
    answers: dict[str, tuple[int | None, dict[str, Any]]] = {}
    for line, record in inputs.answers:
        counts["answers"] += 1
        key = sample_id(record.get("question_id"))
        where = (str(inputs.answers_file), line, key)
        if key is None or key not in expected:
            counts["extra"] += 1
            reason = ("no question_id" if key is None else f"not a question of {inputs.question_file}"
                      if key not in known else f"not in the run's manifest {inputs.manifest}")
            problems.append(Problem(*where, f"{reason}; not scored"))
        elif key in answers:
            counts["duplicate"] += 1
            problems.append(Problem(*where, "duplicate answer; the first one is scored"))
        elif answer_text(record) is None:
            counts["missing"] += 1
            problems.append(Problem(*where, "answer without a string 'text'; not scored"))
            answers[key] = (line, {})
        else:
            answers[key] = (line, record)
    pairs = []
    for question in questions:
        line, answer = answers.get(question.key, (None, None))
        reference = references.get(question.key)
        if answer is None:
            counts["missing"] += 1
            problems.append(Problem(str(inputs.answers_file), None, question.key, "question not answered"))
            continue
        if not answer:
            continue  # counted above
        if reference is None:
            counts["no_reference"] += 1
            problems.append(Problem(str(inputs.reference_file), None, question.key,
                                    "no reference answer (question_id and text); not scored"))
            continue
        _add_pair(pairs, inputs, question, reference, answer, line, args, problems, counts)
    return pairs


def pairs_by_position(inputs: Inputs, args: argparse.Namespace, problems: list[Problem],
                      counts: Counter[str]) -> list[Pair]:
    """``--zip-by-position``, the official pairing: the n-th question with the n-th reference and the n-th answer,
    stopping at the shortest file; ids are not matched (a pair whose ids differ is reported, and judged)."""
    questions, references, answers = inputs.questions, inputs.references, inputs.answers
    counts["questions"] = len(questions)
    counts["answers"] = len(answers)
    length = min(len(questions), len(references), len(answers))
    counts["missing"] = len(questions) - length
    counts["extra"] = len(answers) - length
    for question in questions[length:]:
        problems.append(Problem(str(inputs.question_file), question.line, question.key,
                                "no answer or reference at its position; not scored"))
    pairs = []
    for question, (_, reference), (line, answer) in zip(questions, references, answers):
        answer_key = sample_id(answer.get("question_id"))
        if answer_key != question.key or sample_id(reference.get("question_id")) != question.key:
            counts["mismatched"] += 1
            problems.append(Problem(str(inputs.answers_file), line, answer_key,
                                    f"paired by position with question {question.key} (--zip-by-position)"))
        if answer_text(answer) is None or answer_text(reference) is None:
            counts["missing"] += 1
            problems.append(Problem(str(inputs.answers_file), line, answer_key,
                                    "answer or reference without a string 'text'; not scored"))
            continue
        _add_pair(pairs, inputs, question, reference, answer, line, args, problems, counts)
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# Judging


def _is_review(record: dict[str, Any]) -> bool:
    return isinstance(record.get("content"), str) and parse_review(record["content"]) is not None


def reviewed_before(review_file: Path) -> dict[str, dict[str, Any]]:
    """Judged lines of an earlier review file of ours (they carry the request's ``key``), to reuse."""
    reviewed: dict[str, dict[str, Any]] = {}
    if not review_file.is_file():
        return reviewed
    for _, record in read_records(review_file, []):
        key = record.get("key")
        if isinstance(key, str) and _is_review(record):
            reviewed.setdefault(key, {"content": record["content"], "api_retries": record.get("api_retries", 0)})
    return reviewed


def judge_pairs(pairs: list[Pair], client: ChatClient, cache: JudgeCache, reviewed: dict[str, dict[str, Any]],
                concurrency: int, redact: Redactor, counts: Counter[str], problems: list[Problem],
                answers_file: Path) -> dict[int, Review]:
    """Reviews per pair index: cached or reviewed ones reused, the others asked for in parallel; judged ones are
    cached as they arrive, unparsable and failed ones are reported and not cached (a rerun asks again)."""
    reviews: dict[int, Review] = {}
    pending = []
    for pair in pairs:
        key = pair.request.key()
        record = cache.get(key) or reviewed.get(key)
        if record is None:
            pending.append(pair)
        else:
            reviews[pair.index] = Review(record["content"], parse_review(record["content"]),
                                         record.get("api_retries", 0), cached=True)
            counts["cached"] += 1

    def work(pair: Pair) -> Review:
        try:
            content, retries = client(pair.request)
        except JudgeError as e:
            return Review(error=str(e))
        return Review(content, parse_review(content), retries)

    def done(pair: Pair, review: Review) -> None:
        review.content = redact.value(review.content)
        where = (str(answers_file), pair.answer_line, pair.question.key)
        if review.status == JUDGED:
            cache.append(pair.request.key(), {"content": review.content, "api_retries": review.api_retries}, redact)
        elif review.status == FAILED:
            problems.append(Problem(*where, f"judge call failed: {review.error}"))
        else:
            first_line = (review.content or "").split("\n")[0][:80]
            problems.append(Problem(*where, f"the review's first line {first_line!r} is not two scores from 1 to "
                                            "10; left out of the means"))
        reviews[pair.index] = review

    run_judgments(pending, work, done, concurrency, client)
    return reviews


# ----------------------------------------------------------------------------------------------------------------
# Arithmetic (official)


def category_scores(pairs: list[list[float]]) -> dict[str, float | None]:
    """LLaVA's ``summarize_gpt_review.py`` on one category: the mean (reference, model) pair, each rounded to 3
    decimals, and ``round(model / reference * 100, 1)``; plus the model's mean x 10. None where there is no pair
    (or the reference mean is 0, where the official code divides by zero)."""
    if not pairs:
        return {"relative_score": None, "model_score": None, "reference_score": None, "model_score_x10": None}
    reference, model = (round(x, 3) for x in np.asarray(pairs).mean(0).tolist())
    return {"relative_score": round(model / reference * 100, 1) if reference else None,
            "model_score": model, "reference_score": reference, "model_score_x10": round(model * 10, 2)}


def summarize(pairs: list[Pair], reviews: dict[int, Review], average_unparsable: bool,
              categories: list[str]) -> dict[str, dict[str, Any]]:
    """Per category and ``all``: :func:`category_scores` over the judged pairs (and, with ``average_unparsable``, a
    ``[-1, -1]`` for each unparsable reply, as the official code), with the counts of each status."""
    groups: dict[str, list[list[float]]] = {name: [] for name in ["all", *categories]}
    statuses: dict[str, Counter[str]] = {name: Counter() for name in groups}
    for pair in pairs:
        review = reviews[pair.index]
        for name in ("all", pair.question.category):
            statuses[name][review.status] += 1
            if review.status == JUDGED:
                groups[name].append(review.pair)
            elif review.status == UNPARSABLE and average_unparsable:
                groups[name].append(UNPARSABLE_PAIR)
    return {name: {**category_scores(values), "averaged": len(values),
                   **{status: statuses[name][status] for status in STATUSES}} for name, values in groups.items()}


def review_rows(pairs: list[Pair], reviews: dict[int, Review]) -> list[dict[str, Any]]:
    """LLaVA's review lines (``id``, ``question_id``, ``answer1_id``, ``answer2_id``, ``category``, ``content``,
    ``tuple``: ``[-1, -1]`` for an unparsable reply, as the official script writes it) plus ``status``,
    ``api_retries``, ``cached`` and the request's ``key``; failed calls have no review and no line."""
    rows = []
    for pair in pairs:
        review = reviews[pair.index]
        if review.status == FAILED:
            continue
        rows.append({"id": pair.index, "question_id": pair.question.question_id, "answer1_id": pair.answer1_id,
                     "answer2_id": pair.answer2_id, "category": f"llava_bench_{pair.question.category}",
                     "content": review.content, "tuple": review.pair if review.pair is not None else UNPARSABLE_PAIR,
                     "status": review.status, "api_retries": review.api_retries, "cached": review.cached,
                     "key": pair.request.key()})
    return rows


def empty_reason(pairs: list[Pair], metrics: dict[str, dict[str, Any]], counts: Counter[str]) -> str | None:
    if metrics["all"]["judged"]:
        return None
    if not pairs:
        return (f"no question could be judged ({counts['questions']} expected, {counts['missing']} without an "
                f"answer, {counts['extra']} extra answers)")
    return (f"no judgment: {metrics['all']['unparsable']} unparsable and {metrics['all']['failed']} failed of "
            f"{len(pairs)}")


# ----------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = RedactingParser(prog="python -m eval.llava_bench", description=__doc__, allow_abbrev=False,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--question", required=True, help="questions.jsonl of llava-bench-in-the-wild")
    parser.add_argument("-c", "--context", required=True, help="context.jsonl ({image, caption: [sentences]})")
    parser.add_argument("-a", "--answer-list", "--answer_list", nargs=2, metavar=("REFERENCE", "ANSWERS"),
                        help="the reference answers (answers_gpt4.jsonl), then the answers to score "
                             "({question_id, text} per line: our runners' or LLaVA's answer files)")
    parser.add_argument("--reference", help="the reference answers, with --answers (instead of -a)")
    parser.add_argument("--answers", help="the answers to score, with --reference (instead of -a)")
    parser.add_argument("-r", "--rule", help="rule file with llava_bench_<category> prompts (default: the shipped "
                                             "copy of LLaVA's, eval/data/llava_bench/rule.json)")
    parser.add_argument("-o", "--output", help="the review file (default: the metrics path with .jsonl)")
    parser.add_argument("--save_path", "--save-path",
                        help="metrics json (default: <answers stem>_llava_bench.json beside the answers)")
    parser.add_argument("--max-tokens", "--max_tokens", type=int, default=MAX_TOKENS,
                        help=f"max_tokens of the judge's reply (official: {MAX_TOKENS})")
    parser.add_argument("--zip-by-position", "--zip_by_position", action="store_true",
                        help="official pairing: the n-th question, reference and answer, ids not matched, "
                             "stopping at the shortest file (default: match by question_id)")
    parser.add_argument("--average-unparsable", "--average_unparsable", action="store_true",
                        help="official arithmetic: average an unparsable reply in as [-1, -1] (default: count it "
                             "and leave it out of the means)")
    add_client_arguments(parser, DEFAULT_MODEL, f"judge model (default {DEFAULT_MODEL}; the official gpt-4-0314 is "
                                                "retired)",
                         "cache folder (default: llava_bench_cache/ beside the metrics)")
    return parser


def resolve_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """``(metrics_json, review_jsonl)``, checked writable and distinct from the inputs."""
    answers = Path(args.answer_list[1])
    metrics = check_output_file(args.save_path or RunPaths.of_answers(answers).metrics("llava_bench"))
    review = check_output_file(args.output or metrics.with_suffix(".jsonl"), "--output")
    inputs = {Path(p).resolve() for p in (args.question, args.context, *args.answer_list)}
    for path, flag in ((metrics, "--save_path"), (review, "--output")):
        if path.resolve() in inputs:
            raise InputError(f"{path}: {flag} would overwrite an input file; choose another {flag}")
    if metrics.resolve() == review.resolve():
        raise InputError(f"{metrics}: the metrics and the review file would be the same file; give --save_path a "
                         ".json name")
    if args.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    return metrics, review


def run(args: argparse.Namespace) -> int:
    """Score one answers file; returns the exit status."""
    metrics_path, review_path = resolve_paths(args)
    client = ChatClient.from_args(args)
    redact = client.redact
    problems: list[Problem] = []
    counts: Counter[str] = Counter()
    inputs = Inputs(args, problems)
    pairs = (pairs_by_position if args.zip_by_position else pairs_by_id)(inputs, args, problems, counts)
    print(f"judging {len(pairs)} answers of {inputs.answers_file} with {args.model}")
    cache_path = (Path(args.cache) if args.cache else metrics_path.parent / "llava_bench_cache") / \
        "llava_bench_cache.jsonl"
    with judging(cache_path, _is_review, "the LLaVA-Bench cache", "answers") as cache:
        reviews = judge_pairs(pairs, client, cache, reviewed_before(review_path), args.concurrency, redact, counts,
                              problems, inputs.answers_file)
        categories = [*CATEGORIES, *sorted({q.category for q in inputs.questions} - set(CATEGORIES))]
        metrics = summarize(pairs, reviews, args.average_unparsable, categories)
        for status in STATUSES:
            counts[status] = metrics["all"][status]
        reason = empty_reason(pairs, metrics, counts)
        write_jsonl(review_path, review_rows(pairs, reviews), redact)
        write_json(metrics_path, {
            "scorer": "llava_bench",
            "answers_file": str(inputs.answers_file),
            "reference_file": str(inputs.reference_file),
            "question_file": str(inputs.question_file),
            "context_file": str(inputs.context_file),
            "rule_file": str(inputs.rule_file),
            "metrics": metrics,
            "counts": {name: counts[name] for name in (
                "questions", "answers", *STATUSES, "cached", "missing", "extra", "duplicate", "no_reference",
                "no_context", "mismatched")},
            "problems": [p.to_dict() for p in problems],
            "empty_reason": reason,
            "judge": {"model": args.model, "base_url": args.base_url, "system_prompt": SYSTEM_PROMPT,
                      "temperature": TEMPERATURE, "max_tokens": args.max_tokens, "timeout": args.timeout,
                      "max_retries": args.max_retries},
            "settings": {"pairing": "position (official)" if args.zip_by_position else "question_id",
                         "unparsable": "averaged as [-1, -1] (official)" if args.average_unparsable
                         else "left out of the means",
                         "score_range": list(SCORE_RANGE),
                         "subset": None if inputs.subset is None else {"manifest": str(inputs.manifest),
                                                                       "count": len(inputs.subset)}},
            "review_file": str(review_path),
            "cache_file": str(cache.path),
        }, redact)
    print(format_table(args.model, metrics))
    report_problems(problems)
    if reason:
        print(f"null metrics: {reason}", file=sys.stderr)
    if metrics["all"]["failed"]:
        print(f"{metrics['all']['failed']} judgment(s) failed after all retries and are left out of the means; "
              "rerun to retry them", file=sys.stderr)
    print(f"metrics written to {metrics_path}, reviews to {review_path}")
    return 1 if metrics["all"]["failed"] or not metrics["all"]["judged"] else 0


def format_table(model: str, metrics: dict[str, dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value}"

    lines = [f"| Category ({model}) | Judged | Unparsable | Failed | Reference | Model | Relative score | Model x10 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in metrics.items():
        lines.append(f"| {name} | {m['judged']} | {m['unparsable']} | {m['failed']} | {cell(m['reference_score'])} "
                     f"| {cell(m['model_score'])} | {cell(m['relative_score'])} | {cell(m['model_score_x10'])} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--reference`` / ``--answers`` read as ``-a REFERENCE ANSWERS``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.answer_list and (args.reference or args.answers):
        parser.error("give either -a/--answer-list REFERENCE ANSWERS or --reference and --answers, not both")
    if not args.answer_list:
        if not (args.reference and args.answers):
            parser.error("the reference answers and the answers to score are required: -a/--answer-list REFERENCE "
                         "ANSWERS, or --reference and --answers")
        args.answer_list = [args.reference, args.answers]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return exit_status(lambda: run(args), "interrupted: judged answers are cached; rerun the same command to resume")


class LlavaBenchScorer(Scorer):
    """What the report reads from LLaVA-Bench's metrics json: one run, the relative score per category and in all,
    the expected questions without an answer, and the judge replies left out of the means."""

    name = "llava_bench"
    default_benchmark = "llava_bench"
    headline = "all"
    columns = tuple(Column(category, category.capitalize()) for category in (*CATEGORIES, "all"))
    description = ("relative score = the judge's mean score of the answers / of the reference answers x 100, per "
                   "category and all")

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        counts = data.get("counts") or {}
        values = {name: (scores or {}).get("relative_score") for name, scores in (data.get("metrics") or {}).items()}
        return [ScoredRun("", first_answers(data), values, counts.get("missing"), counts.get("questions"),
                          "questions")]

    def notes(self, metric_file: Path, data: dict[str, Any]) -> list[str]:
        return judge_notes("LLaVA-Bench", data.get("counts") or {},
                           data.get("review_file") or metric_file.with_suffix(".jsonl"))


SCORER = register_scorer(LlavaBenchScorer())


if __name__ == "__main__":
    sys.exit(main())
