"""AMBER hallucination benchmark scores, reproducing upstream AMBER ``inference.py`` (junyangwang0410/AMBER).

Generative answers (ids 1-1004): the lemmatised nouns of the answer that are in the ``relation.json`` vocabulary are
matched against the image's true objects and hallucination targets (exactly, then by word similarity > 0.8);
CHAIR = flagged nouns / kept nouns, Cover = covered true objects / true objects, Hal = % answers with a flagged noun,
Cog = hit hallucination targets / targets. Discriminative answers are cleaned and read as Yes/No as AvisC's
``amber_eval_*.py`` read them (:mod:`eval.yesno`: strip, cut ``</s>``, NEG_WORDS ``recorder``) and scored with "No"
as the positive class, per dimension (existence; attribute = state + number + action; relation). All numbers are
percentages rounded to 0.1 as upstream, counters start from ``metrics.txt`` (0.001 in the denominators); a metric
whose denominator counted nothing is null (upstream prints 0.0). For ``--evaluation_type a`` the AMBER score =
(100 - CHAIR + F1) / 2 is added.

Usage: ``python -m eval.amber --inference_data answers.jsonl --evaluation_type a [--save_path out.json]``.
"""
from __future__ import annotations

import argparse
import functools
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import nltk
from nltk.stem import WordNetLemmatizer

from eval import paper_numbers
from eval.files import (
    InputError, Problem, RunPaths, check_output_file, read_json, read_records, report_problems, run_subset, sample_id,
    write_json_atomic,
)
from eval.nltk_setup import ensure_nltk_data
from eval.scoring import Column, Published, ScoredRun, Scorer, first_answers, register_scorer
from eval.yesno import READINGS, read_answer, require_fields

DATA_DIR = Path(__file__).resolve().parent / "data" / "amber"
ANNOTATION_FILE = DATA_DIR / "annotations.json.gz"
WORD_ASSOCIATION_FILE = DATA_DIR / "relation.json"
SAFE_WORDS_FILE = DATA_DIR / "safe_words.txt"
METRICS_FILE = DATA_DIR / "metrics.txt"
SPACY_MODEL = "en_core_web_lg"

EVALUATION_TYPES = {"a": ("g", "de", "da", "dr"), "g": ("g",), "d": ("de", "da", "dr"),
                    "de": ("de",), "da": ("da",), "dr": ("dr",)}
# annotation type -> counter prefix of metrics.txt (anything else discriminative is "asso", the relation dimension)
_TYPE_PREFIX = {"discriminative-attribute-state": "as", "discriminative-attribute-number": "an",
                "discriminative-attribute-action": "aa", "discriminative-hallucination": "ha"}
_PREFIX_DIMENSION = {"as": "da", "an": "da", "aa": "da", "ha": "de", "asso": "dr"}
# printed blocks: (name, counter prefixes, F1 epsilon, dimensions that must all be evaluated)
_DISCRIMINATIVE_BLOCKS = (
    ("all", ("",), 1e-4, ("de", "da", "dr")),
    ("existence", ("ha_",), 1e-3, ("de",)),
    ("attribute", ("as_", "an_", "aa_"), 1e-4, ("da",)),
    ("state", ("as_",), 1e-4, ("da",)),
    ("number", ("an_",), 1e-4, ("da",)),
    ("action", ("aa_",), 1e-4, ("da",)),
    ("relation", ("asso_",), 1e-4, ("dr",)),
)
_GENERATIVE_NAMES = ("CHAIR", "Cover", "Hal", "Cog")
_DISCRIMINATIVE_NAMES = ("Accuracy", "Precision", "Recall", "F1")
_LEMMATIZER = WordNetLemmatizer()
READING = "avisc"  # yes/no answers are cleaned and read with AvisC's recorder, as amber_eval_*.py do


# ----------------------------------------------------------------------------------------------------------------
# Data


def read_metrics_template(path: str | Path) -> dict[str, float]:
    """Upstream's ``metrics.txt``: ``name=value`` lines giving every counter's start value."""
    template = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.strip().split("=")
        if len(parts) == 2:
            template[parts[0].strip()] = float(parts[1].strip())
    return template


@dataclass(frozen=True)
class AmberData:
    """Annotations by id, the word-association table, global safe words and the counter template."""

    annotations: dict[int, dict[str, Any]]
    association: dict[str, list[str]]
    safe_words: tuple[str, ...]
    template: dict[str, float]


def load_amber_data(annotation_file: str | Path | None = None, word_association: str | Path | None = None,
                    safe_words: str | Path | None = None, metrics: str | Path | None = None) -> AmberData:
    """Load the AMBER tables (the shipped copies by default)."""
    annotations = read_json(annotation_file or ANNOTATION_FILE)
    try:
        safe = Path(safe_words or SAFE_WORDS_FILE).read_text(encoding="utf-8").split("\n")
        template = read_metrics_template(metrics or METRICS_FILE)
    except OSError as e:
        raise InputError(str(e)) from e
    return AmberData(
        annotations={int(item["id"]): item for item in annotations},
        association=read_json(word_association or WORD_ASSOCIATION_FILE),
        safe_words=tuple(safe),
        template=template,
    )


def _prefix(annotation: Mapping[str, Any]) -> str:
    return _TYPE_PREFIX.get(annotation["type"], "asso")


def dimension_of(annotation: Mapping[str, Any]) -> str:
    """``g`` for generative queries, else ``de``, ``da`` or ``dr``."""
    return "g" if annotation["type"] == "generative" else _PREFIX_DIMENSION[_prefix(annotation)]


# ----------------------------------------------------------------------------------------------------------------
# Word similarity


class WordSimilarity(Protocol):
    """A similarity backend: ``similarity(a, b)`` in [0, 1] (spaCy: cosine of word vectors)."""

    def similarity(self, a: str, b: str) -> float: ...


class ExactSimilarity:
    """Fallback without word vectors: 1 for identical words, else 0 (only exact matches count)."""

    name = "exact-only"

    def similarity(self, a: str, b: str) -> float:
        return 1.0 if a == b else 0.0


class DocSimilarity:
    """Adapts an ``nlp(word)`` callable whose results have ``.similarity`` (a spaCy pipeline); caches docs."""

    def __init__(self, nlp: Callable[[str], Any], name: str) -> None:
        self.name = name
        self._doc = functools.lru_cache(maxsize=None)(nlp)
        self._cache: dict[tuple[str, str], float] = {}

    def similarity(self, a: str, b: str) -> float:
        if (a, b) not in self._cache:
            with warnings.catch_warnings():  # spaCy warns about words without a vector; upstream ignores it too
                warnings.simplefilter("ignore", UserWarning)
                self._cache[(a, b)] = float(self._doc(a).similarity(self._doc(b)))
        return self._cache[(a, b)]


def as_similarity(backend: Any) -> WordSimilarity:
    """Accept a backend with ``similarity(a, b)`` or an ``nlp(word)`` callable (spaCy style)."""
    if hasattr(backend, "similarity"):
        return backend
    if callable(backend):
        return DocSimilarity(backend, getattr(backend, "name", type(backend).__name__))
    raise TypeError(f"{backend!r} is neither a similarity backend nor an nlp(word) callable")


def similarity_name(backend: Any) -> str:
    return getattr(backend, "name", type(backend).__name__)


def exact_only_warning(reason: str) -> str:
    """The banner printed whenever the generative metrics run without spaCy."""
    bar = "!" * 100
    return (f"{bar}\n!! WARNING: AMBER generative metrics use EXACT word matching only ({reason}).\n"
            f"!! Upstream AMBER also accepts words whose spaCy {SPACY_MODEL} similarity is > 0.8, so CHAIR and Hal\n"
            "!! may come out higher and Cover and Cog lower than the official scorer's. For official numbers run\n"
            f"!! `pip install spacy && python -m spacy download {SPACY_MODEL}`, then --similarity auto or spacy.\n"
            f"{bar}")


def load_similarity(mode: str, model: str = SPACY_MODEL) -> tuple[WordSimilarity, str | None]:
    """The backend for ``--similarity`` (auto, spacy, exact) and the warning to print, if any."""
    if mode == "exact":
        return ExactSimilarity(), exact_only_warning("--similarity exact")
    try:
        import spacy

        nlp = spacy.load(model)
    except (ImportError, OSError) as e:
        if mode == "spacy":
            raise InputError(f"--similarity spacy: cannot load spaCy model {model} ({e})") from e
        return ExactSimilarity(), exact_only_warning(f"spaCy model {model} not available: {type(e).__name__}: {e}")
    return DocSimilarity(nlp, f"spacy:{model}"), None


# ----------------------------------------------------------------------------------------------------------------
# Scoring


@functools.lru_cache(maxsize=None)
def _noun_lemma(word: str) -> str:
    return _LEMMATIZER.lemmatize(word)


def extract_nouns(texts: Sequence[str]) -> list[list[str]]:
    """Upstream's ``extract_nouns`` for many texts: tokens tagged NN* (no lower-casing), lemmatised as nouns."""
    ensure_nltk_data()
    tagged = nltk.pos_tag_sents([nltk.word_tokenize(text) for text in texts])
    return [[_noun_lemma(word) for word, pos in sentence if pos.startswith("NN")] for sentence in tagged]


@dataclass
class GenerativeOutcome:
    """One generative answer: kept nouns, flagged (hallucinated) nouns, covered truths, hit hallucination targets."""

    kept: list[str]
    flagged: list[str]
    covered: list[bool]
    hit: list[bool]


class GenerativeScorer:
    """Upstream's per-answer matching of nouns against ``truth`` and ``hallu`` objects."""

    def __init__(self, data: AmberData, similarity: WordSimilarity, threshold: float = 0.8) -> None:
        self.association = data.association
        self.vocabulary = frozenset(data.association) | {w for words in data.association.values() for w in words}
        self.global_safe = frozenset(data.safe_words)
        self.similarity = similarity
        self.threshold = threshold

    def _candidates(self, objects: Sequence[str]) -> list[tuple[str, int]]:
        """(word, owner) in upstream order: every object's associated words first, then the objects themselves."""
        associated = [(word, owner) for owner, obj in enumerate(objects) for word in self.association[obj]]
        return associated + [(obj, owner) for owner, obj in enumerate(objects)]

    def _first_similar(self, noun: str, candidates: Sequence[tuple[str, int]]) -> int | None:
        for word, owner in candidates:
            if self.similarity.similarity(noun, word) > self.threshold:
                return owner
        return None

    def score(self, nouns: Sequence[str], truth: Sequence[str], hallu: Sequence[str]) -> GenerativeOutcome:
        safe, targets = self._candidates(truth), self._candidates(hallu)
        safe_exact = {word: owner for word, owner in reversed(safe)}  # first occurrence wins
        target_exact = {word: owner for word, owner in reversed(targets)}
        out = GenerativeOutcome([n for n in nouns if n in self.vocabulary], [], [False] * len(truth),
                                [False] * len(hallu))
        for noun in out.kept:
            if noun in self.global_safe:
                continue
            if noun in safe_exact:
                out.covered[safe_exact[noun]] = True
                continue
            if noun in target_exact:
                out.hit[target_exact[noun]] = True
            owner = self._first_similar(noun, targets)
            if owner is not None:
                out.hit[owner] = True
            owner = self._first_similar(noun, safe)
            if owner is not None:
                out.covered[owner] = True
                continue
            out.flagged.append(noun)
        return out


def _add_generative(counters: dict[str, float], outcome: GenerativeOutcome) -> None:
    counters["chair_score"] += len(outcome.flagged)
    counters["chair_num"] += len(outcome.kept)
    counters["safe_cover_score"] += sum(outcome.covered)
    counters["safe_cover_num"] += len(outcome.covered)
    counters["hallu_cover_score"] += sum(outcome.hit)
    counters["hallu_cover_num"] += len(outcome.hit)
    counters["non_hallu_score"] += not outcome.flagged
    counters["non_hallu_num"] += 1


def _add_discriminative(counters: dict[str, float], annotation: Mapping[str, Any], answer_no: bool) -> None:
    """Upstream's counters for one yes/no answer, overall (``qa_*``) and for its type (``<prefix>_qa_*``)."""
    prefixes = ("", _prefix(annotation) + "_")

    def bump(name: str) -> None:
        for prefix in prefixes:
            counters[f"{prefix}qa_{name}"] += 1

    truth = annotation["truth"]
    bump("correct_num")
    if truth == "yes":
        if not answer_no:
            bump("correct_score")
    else:
        bump("no_num")
        if answer_no:
            bump("correct_score")
            bump("no_score")
    if answer_no:
        bump("ans_no_num")
        if truth == "no":
            bump("ans_no_score")


def _f1(precision: float | None, recall: float | None, eps: float) -> float | None:
    """Upstream's F1 from the rounded percentages; None when either is undefined."""
    if precision is None or recall is None:
        return None
    p, r = precision / 100, recall / 100
    return round(2 * p * r / (p + r + eps) * 100, 1)


def amber_score(chair: float | None, f1: float | None) -> float | None:
    """AMBER score = (100 - CHAIR + F1) / 2, from the generative CHAIR and the discriminative F1 (percentages);
    None when either is undefined."""
    if chair is None or f1 is None:
        return None
    return round((100 - chair + f1) / 2, 2)


# metric -> (numerator counter, denominator counter, why the denominator can be 0)
_GENERATIVE_RATIOS = {
    "CHAIR": ("chair_score", "chair_num", "no noun of the AMBER vocabulary in the generative answers"),
    "Cover": ("safe_cover_score", "safe_cover_num", "no annotated objects"),
    "Hal": ("non_hallu_score", "non_hallu_num", "no generative answer"),
    "Cog": ("hallu_cover_score", "hallu_cover_num", "no hallucination targets"),
}
_DISCRIMINATIVE_RATIOS = {
    "Accuracy": ("correct_score", "correct_num", "no answer"),
    "Precision": ("ans_no_score", "ans_no_num", "no answer read as No"),
    "Recall": ("no_score", "no_num", "no question whose truth is no"),
}


@dataclass
class Metrics:
    """The metrics of one evaluation and, for every null one, why (its denominator counted nothing)."""

    values: dict[str, float | None]
    null_reasons: dict[str, str]

    def empty_reason(self) -> str | None:
        """One line naming the null metrics and why, or None."""
        if self.values and all(value is None for value in self.values.values()):
            return "no answer of this evaluation type could be scored"
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.null_reasons.items():
            by_reason.setdefault(reason, []).append(name)
        return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()) or None


def compute_metrics(counters: Mapping[str, float], evaluation_type: str,
                    start: Mapping[str, float] | None = None) -> Metrics:
    """The numbers upstream prints for ``evaluation_type``; discriminative blocks are named ``<block>_<metric>``
    except the overall one (plain ``Accuracy``, ``Precision``, ``Recall``, ``F1``).

    ``start`` holds the counters' start values (``metrics.txt``: 0.001 in the denominators). Where a denominator
    counted nothing (its counter still equals its start value), upstream prints 0.0 (x / 0.001); here the metric is
    None (a ratio over zero samples), and so are the F1 and AMBER score built on it.
    """
    start = start or {}
    dims = EVALUATION_TYPES[evaluation_type]
    metrics = Metrics({}, {})

    def counted(names: Sequence[str]) -> float:
        return sum(counters[n] - start.get(n, 0.0) for n in names)

    def ratio(name: str, scores: Sequence[str], nums: Sequence[str], why: str, complement: bool = False) -> None:
        if counted(nums) == 0:
            metrics.values[name], metrics.null_reasons[name] = None, why
            return
        share = sum(counters[n] for n in scores) / sum(counters[n] for n in nums) * 100
        metrics.values[name] = round(100 - share, 1) if complement else round(share, 1)

    if "g" in dims:
        answered = counted(["non_hallu_num"]) > 0
        for name, (score, num, why) in _GENERATIVE_RATIOS.items():
            ratio(name, [score], [num], why if answered else "no generative answer", complement=name == "Hal")
    for block, prefixes, eps, needed in _DISCRIMINATIVE_BLOCKS:
        if not all(d in dims for d in needed):
            continue
        key = "" if block == "all" else f"{block}_"
        answered = counted([f"{p}qa_correct_num" for p in prefixes]) > 0
        for name, (score, num, why) in _DISCRIMINATIVE_RATIOS.items():
            ratio(f"{key}{name}", [f"{p}qa_{score}" for p in prefixes], [f"{p}qa_{num}" for p in prefixes],
                  why if answered else f"no yes/no answer ({block})")
        metrics.values[f"{key}F1"] = _f1(metrics.values[f"{key}Precision"], metrics.values[f"{key}Recall"], eps)
        if metrics.values[f"{key}F1"] is None:
            metrics.null_reasons[f"{key}F1"] = metrics.null_reasons.get(f"{key}Accuracy",
                                                                        "precision or recall undefined")
    if evaluation_type == "a":
        metrics.values["AMBER"] = amber_score(metrics.values["CHAIR"], metrics.values["F1"])
        if metrics.values["AMBER"] is None:
            metrics.null_reasons["AMBER"] = "CHAIR or F1 undefined"
    return metrics


def evaluate(answers: Mapping[int, str], evaluation_type: str = "a", data: AmberData | None = None,
             similarity: Any = "auto", threshold: float = 0.8, spacy_model: str = SPACY_MODEL) -> dict[str, Any]:
    """Score ``{id: response}`` (ids must be in the annotations; others outside the evaluation type are ignored).

    ``similarity`` is ``"auto"``, ``"spacy"``, ``"exact"`` (see :func:`load_similarity`) or a backend (see
    :func:`as_similarity`); it is loaded only when there are generative answers to score. Returns
    ``metrics`` (None where a denominator counted nothing), ``empty_reason`` (why, or None), the raw ``counters``,
    ``non_literal_yes_no`` (discriminative answers that were not exactly "Yes" or "No" before the reading),
    ``similarity`` (backend name, or "unused") and ``warnings``.
    """
    data = data or load_amber_data()
    dims = EVALUATION_TYPES[evaluation_type]
    selected = {i: text for i, text in answers.items() if dimension_of(data.annotations[i]) in dims}
    generative = {i: text for i, text in selected.items() if data.annotations[i]["type"] == "generative"}
    counters = dict(data.template)
    result: dict[str, Any] = {"similarity": "unused", "warnings": []}
    if generative:
        backend, warning = (load_similarity(similarity, spacy_model) if isinstance(similarity, str)
                            else (as_similarity(similarity), None))
        result["similarity"] = similarity_name(backend)
        result["warnings"] += [warning] if warning else []
        scorer = GenerativeScorer(data, backend, threshold)
        for i, nouns in zip(generative, extract_nouns(list(generative.values()))):
            annotation = data.annotations[i]
            _add_generative(counters, scorer.score(nouns, annotation["truth"], annotation["hallu"]))
    non_literal = 0
    for i, text in selected.items():
        if i not in generative:
            non_literal += text not in ("Yes", "No")
            _add_discriminative(counters, data.annotations[i], read_answer(text, READING) == "no")
    metrics = compute_metrics(counters, evaluation_type, data.template)
    result.update(metrics=metrics.values, empty_reason=metrics.empty_reason(), counters=counters,
                  non_literal_yes_no=non_literal)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Command line


@dataclass
class _Answers:
    by_id: dict[int, str]
    unparsable: int = 0
    unknown_ids: int = 0
    duplicate_ids: int = 0
    empty_generative: int = 0


def _answer_id(value: Any) -> int:
    text = sample_id(value)
    if text is None or not text.isdigit():
        raise ValueError(f"id {value!r} is not an integer")
    return int(text)


def _first_field(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in record:
            return name, record[name]
    return None, None


ID_FIELDS = ("id", "question_id")  # AMBER results, answer files
TEXT_FIELDS = ("response", "text")


def collect_answers(path: str, records: list[tuple[int | None, dict[str, Any]]], data: AmberData,
                    problems: list[Problem], id_fields: Sequence[str] = ID_FIELDS,
                    text_fields: Sequence[str] = TEXT_FIELDS) -> _Answers:
    """Read ``{"id", "response"}`` (AMBER) or ``{"question_id", "text"}`` (answer files), or the fields named;
    report what is unusable. Raises :class:`InputError` first when no record has an id and a text field."""
    require_fields(path, records, {"id": (tuple(id_fields), "--id_key"), "answer": (tuple(text_fields), "--text_key")})
    out = _Answers(by_id={})
    for index, (line, record) in enumerate(records, start=1):
        where = "" if line is not None else f"item {index}: "
        id_field, raw_id = _first_field(record, id_fields)
        text_field, text = _first_field(record, text_fields)
        shown = None if raw_id is None else str(raw_id)

        def report(reason: str) -> None:
            problems.append(Problem(path, line, shown, where + reason))

        if id_field is None or text_field is None:
            missing = id_fields if id_field is None else text_fields
            report(f"missing field {missing[0]!r}" + (f" (or {missing[1]!r})" if len(missing) > 1 else "")
                   + "; skipped")
            out.unparsable += 1
            continue
        try:
            qid = _answer_id(raw_id)
        except ValueError as e:
            report(f"{e}; skipped")
            out.unparsable += 1
            continue
        if not isinstance(text, str):
            report(f"field {text_field!r} is not a string ({type(text).__name__}); skipped")
            out.unparsable += 1
        elif qid not in data.annotations:
            report(f"id {qid} is not an AMBER query id (1-{len(data.annotations)}); skipped")
            out.unknown_ids += 1
        elif qid in out.by_id:
            report(f"duplicate answer for id {qid}; the first one is kept")
            out.duplicate_ids += 1
        else:
            if data.annotations[qid]["type"] == "generative" and not text.strip():
                report("empty answer to a generative query; scored as mentioning no object")
                out.empty_generative += 1
            out.by_id[qid] = text
    return out


def _cell(value: float | None) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.1f}"


def format_table(metrics: Mapping[str, float | None]) -> str:
    """A readable table of whatever blocks ``metrics`` holds (``-`` for a null metric)."""
    lines = []
    if "CHAIR" in metrics:
        lines += ["Generative     " + "".join(f"{n:>10}" for n in _GENERATIVE_NAMES),
                  " " * 15 + "".join(_cell(metrics[n]) for n in _GENERATIVE_NAMES), ""]
    blocks = [(block, "" if block == "all" else f"{block}_") for block, *_ in _DISCRIMINATIVE_BLOCKS]
    rows = [(block, key) for block, key in blocks if f"{key}F1" in metrics]
    if rows:
        lines.append("Discriminative " + "".join(f"{n:>10}" for n in _DISCRIMINATIVE_NAMES))
        for block, key in rows:
            label = f"  {block}" if block in ("state", "number", "action") else block
            lines.append(f"{label:<15}" + "".join(_cell(metrics[key + n]) for n in _DISCRIMINATIVE_NAMES))
        lines.append("")
    if metrics.get("AMBER") is not None:
        lines.append(f"AMBER score = (100 - CHAIR + F1) / 2 = {metrics['AMBER']:.2f}")
    return "\n".join(lines).rstrip()


def _missing_ids(data: AmberData, evaluation_type: str, answered: Mapping[int, str],
                 subset: set[str] | None = None) -> list[int]:
    """Queries of the evaluation type without an answer; only those of ``subset`` (the run's manifest) if given."""
    dims = EVALUATION_TYPES[evaluation_type]
    return [i for i, ann in sorted(data.annotations.items())
            if dimension_of(ann) in dims and i not in answered and (subset is None or str(i) in subset)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.amber", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inference_data", "--inference-data", required=True,
                        help='AMBER results (.json list of {"id", "response"}) or an answers .jsonl '
                             '({"question_id", "text"} per line)')
    parser.add_argument("--evaluation_type", "--evaluation-type", required=True, choices=list(EVALUATION_TYPES),
                        help="a: all; g: generative; d: discriminative; de, da, dr: existence, attribute, relation")
    parser.add_argument("--save_path", "--save-path", default=None,
                        help="metrics, counts and problems json (default: <inference_data stem>_amber.json beside it)")
    parser.add_argument("--id_key", "--id-key", default=None,
                        help="query id field of the answers (default: 'id', else 'question_id')")
    parser.add_argument("--text_key", "--text-key", default=None,
                        help="answer text field of the answers (default: 'response', else 'text')")
    parser.add_argument("--annotation_file", "--annotation-file", "--annotation", default=None,
                        help="AMBER annotations.json (default: the shipped copy)")
    parser.add_argument("--word_association", "--word-association", default=None, help="relation.json")
    parser.add_argument("--safe_words", "--safe-words", default=None, help="safe_words.txt")
    parser.add_argument("--metrics", default=None, help="metrics.txt (counter start values)")
    parser.add_argument("--similarity", choices=("auto", "spacy", "exact"), default="auto",
                        help=f"word similarity: spaCy {SPACY_MODEL} if it loads (auto), required (spacy), "
                             "or exact matching only (exact)")
    parser.add_argument("--similarity_score", "--similarity-score", type=float, default=0.8,
                        help="similarity threshold (upstream 0.8)")
    parser.add_argument("--spacy_model", "--spacy-model", default=SPACY_MODEL,
                        help=f"spaCy model for the similarity (upstream {SPACY_MODEL})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems: list[Problem] = []
    try:
        save_path = check_output_file(args.save_path or RunPaths.of_answers(args.inference_data).metrics("amber"))
        data = load_amber_data(args.annotation_file, args.word_association, args.safe_words, args.metrics)
        records = read_records(args.inference_data, problems)
        unreadable = len(problems)
        answers = collect_answers(args.inference_data, records, data, problems,
                                  (args.id_key,) if args.id_key else ID_FIELDS,
                                  (args.text_key,) if args.text_key else TEXT_FIELDS)
        missing = _missing_ids(data, args.evaluation_type, answers.by_id, run_subset(args.inference_data))
        result = evaluate(answers.by_id, args.evaluation_type, data, args.similarity, args.similarity_score,
                          args.spacy_model)
    except (InputError, RuntimeError) as e:  # RuntimeError: NLTK data missing and not downloadable
        print(f"error: {e}", file=sys.stderr)
        return 2
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        problems.append(Problem(args.inference_data, None, None, f"{len(missing)} AMBER queries of evaluation type "
                                f"{args.evaluation_type!r} have no answer (ids {shown}); metrics cover the answered "
                                "ones only"))
    dims = EVALUATION_TYPES[args.evaluation_type]
    scored = sum(1 for i in answers.by_id if dimension_of(data.annotations[i]) in dims)
    counts = {"scored": scored, "missing_ids": len(missing), "unparsable": answers.unparsable + unreadable,
              "unknown_ids": answers.unknown_ids, "duplicate_ids": answers.duplicate_ids,
              "other_dimension": len(answers.by_id) - scored, "empty_generative": answers.empty_generative,
              "non_literal_yes_no": result["non_literal_yes_no"]}
    report_problems(problems)
    for warning in result["warnings"]:
        print(warning)
    print(f"{args.inference_data}: evaluation type {args.evaluation_type}: scored {scored} answers; "
          f"{counts['missing_ids']} missing, {counts['unparsable']} unparsable, {counts['unknown_ids']} unknown ids, "
          f"{counts['duplicate_ids']} duplicates, {counts['other_dimension']} outside this evaluation type; "
          f"{counts['non_literal_yes_no']} yes/no answers were not a literal Yes/No (read with the NEG_WORDS rule); "
          f"similarity: {result['similarity']}")
    print(format_table(result["metrics"]))
    if result["empty_reason"]:
        print(f"null metrics: {result['empty_reason']}", file=sys.stderr)
    write_json_atomic(save_path, {
        "scorer": "amber",
        "answers_file": args.inference_data,
        "evaluation_type": args.evaluation_type,
        "similarity": result["similarity"],
        "warnings": result["warnings"],
        "metrics": result["metrics"],
        "empty_reason": result["empty_reason"],
        "reading": READING,
        "reading_rule": READINGS[READING],
        "counts": counts,
        "problems": [p.to_dict() for p in problems],
        "missing_ids": missing,
        "counters": result["counters"],
    })
    if not scored:
        print(f"error: {args.inference_data}: no answer could be scored", file=sys.stderr)
        return 1
    return 0


EXACT_ONLY_NOTE = ("AMBER generative metrics scored with exact word matching only (spaCy en_core_web_lg not "
                   "available): CHAIR and Hal can be higher, Cover and Cog lower than the official scorer's")
_PAPER_KEYS = {"Accuracy": "Acc", "Precision": "Prec", "Recall": "Rec"}
"""Our metric key -> the key of ``paper_numbers.AMBER`` where they differ."""


class AmberScorer(Scorer):
    """What the report reads from AMBER's metrics json: one run, the queries of its evaluation type without an
    answer, and the exact-only fallback (no spaCy vectors) as a caveat."""

    name = "amber"
    default_benchmark = "amber"
    answers_flag = "--inference_data"
    default_args = ("--evaluation_type", "a")
    headline = "AMBER"
    columns = (Column("CHAIR", "CHAIR ↓"), Column("Cover", "Cover ↑"), Column("Hal", "Hal ↓"), Column("Cog", "Cog ↓"),
               Column("Accuracy", "Acc"), Column("Precision", "Prec"), Column("Recall", "Rec"), Column("F1", "F1"),
               Column("AMBER", "AMBER ↑"))
    description = ("generative CHAIR/Cover/Hal/Cog, discriminative Acc/Prec/Rec/F1 with \"no\" as the positive "
                   "class; AMBER = (100 - CHAIR + F1) / 2")

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        counts = data.get("counts") or {}
        missing = counts.get("missing_ids")
        return [ScoredRun("", first_answers(data), dict(data.get("metrics") or {}), missing,
                          (counts.get("scored") or 0) + (missing or 0), "queries")]

    def notes(self, metric_file: Path, data: dict[str, Any]) -> list[str]:
        return [EXACT_ONLY_NOTE] if data.get("similarity") == "exact-only" else []

    def paper(self, benchmark: str, key: str, model: str, method: str) -> Published | None:
        published = paper_numbers.AMBER.get((model, method)) if benchmark == "amber" else None
        return None if published is None else {c.key: published[_PAPER_KEYS.get(c.key, c.key)] for c in self.columns}


SCORER = register_scorer(AmberScorer())


if __name__ == "__main__":
    sys.exit(main())
