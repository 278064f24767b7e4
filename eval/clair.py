"""CLAIR scorer: an LLM judge rates how well a generated caption matches the human reference (SPARC's protocol).

The prompt (``eval/data/clair_prompt.txt``), the model call (one user message, temperature 0, max_tokens 1024, n=1,
model ``gpt-4o``) and the parsing of the judge's reply are the official ones (SPARC ``clair.py``, identical to
DavidMChan/clair): the JSON between the first ``{`` and the next ``}``, else the first number (x100 if below 1); a
reply with no number is asked again, at most 3 calls in all; after that the sample is *unparsable*.

Each sample ends *judged* (a score), *unparsable* or *failed* (a call that still failed after its retries: HTTP
429/5xx, timeouts, lost connections, and any reply that is not a chat completion with text, such as an HTML page,
truncated JSON or an ``{"error": ...}`` body). ``clair`` is the mean score over the judged samples only; unparsable
and failed samples are counted, reported and never cached, so a rerun asks for them again (the official code scored
an unparsable reply 0 and crashed on a failed call). A score that is not a finite number from 0 to 100 (150, -40,
NaN, inf) is an unparsable reply, asked again like one without a number.

Answers (``{"image_id", "caption"}`` per line) are paired with references **by image id** (IIW: ``image/key`` and
``IIW``; DOCCI: ``image_file`` and ``description``). The subset scored is the one that was captioned: the runner's
``<name>_manifest.json`` beside the answers file ``<name>.jsonl`` (or ``--subset_manifest``); without a manifest,
the official one (DOCCI: ``Random(seed).sample(lines, 500)``; IIW: every annotation). Ids of the subset without an
answer are reported; answers outside it are reported and not scored.

The judge client is :mod:`eval.judge` (shared with LLaVA-Bench): the API key is read from the environment variable
named by ``--api_key_env`` (never from the command line) and is written nowhere; ``--base_url`` points the client at
any OpenAI-compatible server (e.g. a local vLLM judge); ``--timeout`` bounds each request as a whole. Judged samples
are cached on disk (keyed by a hash of the whole request, one line appended per sample; entries of older versions,
keyed by model and prompt, are still read), so a rerun or an interrupted run makes no repeated calls; the cache is
locked, so a second scorer on it is refused. Outputs: the metrics json, and ``<name>.jsonl`` per sample beside it.

Usage::

    export OPENAI_API_KEY=...
    python -m eval.clair --annotation_file IIW-400/data.jsonl --answer_file results/iiw_sparc.jsonl \\
        --data_type iiw --save_path results/iiw_sparc_clair.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import statistics
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from eval.files import read_manifest as manifest_ids
from eval.files import (
    InputError,
    Problem,
    RunPaths,
    check_output_file,
    exit_status,
    read_records,
    report_problems,
)
from eval.judge import (
    FAILED,
    JUDGED,
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

PROMPT_FILE = Path(__file__).resolve().parent / "data" / "clair_prompt.txt"
REFERENCE_FIELDS = {"iiw": ("image/key", "IIW"), "docci": ("image_file", "description")}
PARSE_ATTEMPTS = 3
TEMPERATURE = 0.0
MAX_TOKENS = 1024
SCORE_RANGE = (0.0, 100.0)
_NUMBER = re.compile(r"\d*\.?\d+")
_REASON = re.compile(r"(?i)reason.*")

# ----------------------------------------------------------------------------------------------------------------
# Prompt and parsing (official)


def build_prompt(template: str, candidates: list[str], targets: list[str]) -> str:
    """The official prompt: each statement as ``"- {text}\\n"``."""
    return template.format(candidate_statements="".join(f"- {c}\n" for c in candidates),
                           target_statements="".join(f"- {t}\n" for t in targets))


def valid_score(score: Any) -> bool:
    """A score the prompt asks for: a finite number from 0 to 100."""
    return (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
            and SCORE_RANGE[0] <= score <= SCORE_RANGE[1])


def parse_response(response: str) -> tuple[float, Any] | None:
    """``(score, reason)`` from a judge reply by the official rules, or None when it holds no score: no number, or
    one that is not a finite number from 0 to 100 (the official code took 150, -40, NaN or inf as a score)."""
    try:
        data = json.loads("{" + response.split("{")[1].split("}")[0] + "}")
        score = float(data["score"])
    except (json.JSONDecodeError, KeyError, IndexError, ValueError, TypeError):
        pass
    else:
        return (score, data.get("reason", "Unknown")) if valid_score(score) else None
    number = _NUMBER.search(response)
    if number is None or response[:number.start()].endswith("-"):  # a negative number is out of range
        return None
    score = float(number.group())
    if score < 1:
        score *= 100
    if not valid_score(score):
        return None
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
        """``judged`` (a score), ``unparsable`` (no valid score in any reply) or ``failed`` (the calls failed)."""
        if self.error is not None:
            return FAILED
        return JUDGED if self.parsed and valid_score(self.score) else UNPARSABLE


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
# Requests and the cache


def request(model: str, prompt: str) -> ChatRequest:
    """The official request: one user message, temperature 0, max_tokens 1024, n=1."""
    return ChatRequest(model, (("user", prompt),), TEMPERATURE, MAX_TOKENS, n=1)


def cache_key(model: str, prompt: str) -> str:
    """The key of earlier versions (model and prompt only; their requests were always :func:`request`'s), still read."""
    return hashlib.sha256(json.dumps([model, prompt]).encode("utf-8")).hexdigest()


def _is_judgement(record: dict[str, Any]) -> bool:
    return Judgement(**record).status == JUDGED


def Cache(folder: Path) -> JudgeCache:  # noqa: N802 - the class name of earlier versions
    """The judged samples in ``folder/clair_cache.jsonl`` (unlocked, for reading; the scorer locks it: :func:`eval.judge.judging`)."""
    return JudgeCache(folder / "clair_cache.jsonl", _is_judgement)


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


def score_samples(samples: list[Sample], client: ChatClient, model: str, cache: JudgeCache, concurrency: int,
                  redact: Redactor, counts: dict[str, int], problems: list[Problem],
                  answer_file: Path) -> dict[str, Judgement]:
    """Judgements per image id: cached ones reused (current and older keys), the others asked for in parallel;
    judged ones are cached as they end, failed and unparsable ones are reported and not cached (a rerun asks
    again)."""
    results: dict[str, Judgement] = {}
    pending: list[Sample] = []
    for sample in samples:
        cached = cache.get(request(model, sample.prompt).key(), cache_key(model, sample.prompt))
        if cached is None:
            pending.append(sample)
        else:
            results[sample.image_id] = Judgement(**cached)
            counts["cached"] += 1

    def work(sample: Sample) -> Judgement:
        try:
            return judge(lambda prompt: client(request(model, prompt)), sample.prompt)
        except JudgeError as e:
            return Judgement(None, None, False, error=str(e))

    def done(sample: Sample, judgement: Judgement) -> None:
        judgement.responses = redact.value(judgement.responses)
        judgement.reason = redact.value(judgement.reason)
        if judgement.status == JUDGED:
            cache.append(request(model, sample.prompt).key(), asdict(judgement), redact)
        elif judgement.status == FAILED:
            problems.append(Problem(str(answer_file), sample.line, sample.image_id,
                                    f"judge call failed: {judgement.error}"))
        else:
            problems.append(Problem(str(answer_file), sample.line, sample.image_id,
                                    f"no score in {judgement.tries} judge replies (a number from 0 to 100); left out "
                                    "of the mean"))
        results[sample.image_id] = judgement

    run_judgments(pending, work, done, concurrency, client)
    return results


def summarize(judgements: list[Judgement]) -> dict[str, float | int | None]:
    """``clair``: the mean score (0-100) over the judged samples, None if there are none; ``judged``,
    ``unparsable`` and ``failed``: how many samples ended each way (the last two are not in the mean)."""
    statuses = Counter(j.status for j in judgements)
    scores = [j.score for j in judgements if j.status == JUDGED]
    return {"clair": statistics.fmean(scores) if scores else None,
            **{status: statuses[status] for status in (JUDGED, UNPARSABLE, FAILED)}}


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


def build_parser() -> argparse.ArgumentParser:
    parser = RedactingParser(prog="python -m eval.clair", description=__doc__, allow_abbrev=False,
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
    add_client_arguments(parser, "gpt-4o", "judge model (official: gpt-4o)",
                         "cache folder (default: clair_cache/ beside the outputs)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the official DOCCI subset draw")
    parser.add_argument("--docci_subset", "--docci-subset", type=int, default=500,
                        help="size of the official DOCCI subset when there is no manifest (0: every annotation)")
    parser.add_argument("--subset_manifest", "--subset-manifest",
                        help="the runner's manifest of the captioned ids (default: <answers>_manifest.json beside "
                             "the answers file, when it exists); without one, the official subset is scored")
    parser.add_argument("--image_id_key", "--image-id-key", default="image_id")
    parser.add_argument("--caption_key", "--caption-key", default="caption")
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


def new_counts() -> dict[str, int]:
    return dict.fromkeys(("answers", "cached", "missing_caption", "unknown_id", "duplicate", "outside_subset",
                          "not_answered"), 0)


def run(args: argparse.Namespace) -> int:
    """Score one answers file; returns the exit status."""
    answer_file, metrics_path, samples_path = resolve_paths(args)
    client = ChatClient.from_args(args)
    redact = client.redact
    problems: list[Problem] = []
    counts = new_counts()
    template = PROMPT_FILE.read_text(encoding="utf-8")
    references, order = load_references(Path(args.annotation_file), args.data_type, problems)
    subset = choose_subset(args, answer_file, order)
    print(f"scoring the answers to {subset.description}: {len(subset.ids)} images")
    samples = load_samples(answer_file, references, subset, template, args.image_id_key, args.caption_key,
                           counts, problems)
    cache_path = (Path(args.cache) if args.cache else metrics_path.parent / "clair_cache") / "clair_cache.jsonl"
    with judging(cache_path, _is_judgement, "the CLAIR cache", "samples") as cache:
        results = score_samples(samples, client, args.model, cache, args.concurrency, redact, counts, problems,
                                answer_file)
        metrics = summarize([results[s.image_id] for s in samples])
        write_jsonl(samples_path, sample_rows(samples, results), redact)
        write_json(metrics_path, {
            "scorer": "clair",
            "answers_file": str(answer_file),
            "annotation_file": str(args.annotation_file),
            "data_type": args.data_type,
            "model": args.model,
            "base_url": args.base_url,
            "metrics": metrics,
            "counts": counts,
            "subset": subset.to_dict(),
            "problems": [p.to_dict() for p in problems],
            "samples_file": str(samples_path),
            "cache_file": str(cache.path),
            "settings": {"temperature": TEMPERATURE, "max_tokens": MAX_TOKENS, "n": 1,
                         "parse_attempts": PARSE_ATTEMPTS, "score_range": list(SCORE_RANGE),
                         "timeout": args.timeout, "max_retries": args.max_retries, "seed": args.seed,
                         "docci_subset": args.docci_subset if subset.source == "official draw" else None},
        }, redact)
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
    return exit_status(lambda: run(args), "interrupted: judged samples are cached; rerun the same command to resume")


class ClairScorer(Scorer):
    """What the report reads from CLAIR's metrics json: one run of the dataset its ``data_type`` names (IIW-400 or
    DOCCI), the images of its subset without an answer, the judge replies left out of the mean."""

    name = "clair"
    answers_flag = "--answer_file"
    headline = "clair"
    columns = (Column("clair", "CLAIR"),)
    description = "CLAIR x100"

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        missing = (data.get("counts") or {}).get("not_answered")
        return [ScoredRun("", first_answers(data), dict(data.get("metrics") or {}), missing,
                          (data.get("subset") or {}).get("count"), "images")]

    def benchmark(self, data: dict[str, Any]) -> str | None:
        return str(data["data_type"]) if data.get("data_type") else None

    def notes(self, metric_file: Path, data: dict[str, Any]) -> list[str]:
        return judge_notes("CLAIR", {**(data.get("metrics") or {}), **(data.get("counts") or {})},
                           metric_file.with_suffix(".jsonl"))


SCORER = register_scorer(ClairScorer())


if __name__ == "__main__":
    sys.exit(main())
