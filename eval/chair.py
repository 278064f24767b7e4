"""CHAIR object-hallucination metrics for COCO captions, exactly as SPARC's ``chair.py`` computes them.

Words come from ``nltk.word_tokenize(caption.lower())``, ``nltk.pos_tag`` and the WordNet lemmatizer (POS J/V/N/R
mapped to adjective/verb/noun/adverb, anything else to noun); double words are merged left to right; "seat" is
dropped when "toilet" is present; the remaining words found in the CHAIR synonym list are object mentions, mapped to
their COCO class ("node word"). The synonym list is parsed as upstream does (strip, split on ", "), so its quirks
(" motor bike", " cheesecake", "iPhone" never match; ``''`` is an object) are kept on purpose.

Metrics: CHAIRs (share of captions with a hallucinated mention), CHAIRi (hallucinated mentions / mentions, with
repeats), Recall (correct distinct objects / ground-truth objects, summed over images), Len (0.01 x mean token count)
and the paper's Precision = 1 - CHAIRi and F1 = 2PR / (P + R).

Usage: ``python -m eval.chair --cap_file answers.jsonl [--save_path out.json]`` (see ``--help``).
"""
from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import nltk
from nltk.stem import WordNetLemmatizer

from eval import paper_numbers
from eval.files import InputError, Problem, RunPaths, check_output_file, read_records, report_problems, write_json_atomic
from eval.nltk_setup import ensure_nltk_data
from eval.scoring import Column, Published, Scorer, register_scorer
from eval.yesno import require_fields

DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_GT = DATA_DIR / "coco_chair_gt.json.gz"
DEFAULT_CACHE = Path.home() / ".cache" / "sparc_avisc" / "chair_gt_coco2014.json.gz"
METRIC_NAMES = ("CHAIRs", "CHAIRi", "Recall", "Len", "Precision", "F1")
_WORDNET_POS = {"J": "a", "V": "v", "N": "n", "R": "r"}  # first letter of the Penn tag -> WordNet POS; else noun
_LEMMATIZER = WordNetLemmatizer()
_GT_CHUNK = 20000


class CaptionWords(NamedTuple):
    """What ``caption_to_words`` returns, in the official order."""

    words: list[str]  # object mentions (surface forms after lemmatising and merging)
    node_words: list[str]  # their COCO classes
    idxs: list[int]  # token positions (misaligned after the toilet/seat filter, as upstream)
    raw_words: list[str]  # all tokens after merging, punctuation included


@dataclass(frozen=True)
class WordTables:
    """The CHAIR vocabulary: object surface forms, surface form -> class, double word -> replacement."""

    objects: frozenset[str]
    inverse_synonyms: dict[str, str]
    double_words: dict[str, str]


def parse_synonyms(text: str) -> tuple[list[str], dict[str, str]]:
    """Parse the synonym list like upstream: each line stripped and split on ", "; the first form is the class."""
    objects: list[str] = []
    inverse: dict[str, str] = {}
    for line in text.splitlines():
        forms = line.strip().split(", ")
        objects.extend(forms)
        for form in forms:
            inverse[form] = forms[0]
    return objects, inverse


@functools.lru_cache(maxsize=1)
def load_word_tables() -> WordTables:
    """The shipped synonym list and the 55 double words (official insertion order)."""
    objects, inverse = parse_synonyms((DATA_DIR / "chair" / "synonyms.txt").read_text(encoding="utf-8"))
    double_words = json.loads((DATA_DIR / "chair" / "double_words.json").read_text(encoding="utf-8"))
    return WordTables(frozenset(objects), inverse, double_words)


@functools.lru_cache(maxsize=None)
def _lemma(word: str, pos: str) -> str:
    return _LEMMATIZER.lemmatize(word, pos)


def tag_captions(captions: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Lower-case, tokenise and POS-tag each caption (one tagger call for all of them; same tags as one by one)."""
    ensure_nltk_data()
    return nltk.pos_tag_sents([nltk.word_tokenize(caption.lower()) for caption in captions])


def words_from_tagged(tagged: Sequence[tuple[str, str]], tables: WordTables) -> CaptionWords:
    """The official ``caption_to_words`` from an already tagged caption."""
    lemmas = [_lemma(word, _WORDNET_POS.get(tag[:1], "n")) for word, tag in tagged]
    raw_words: list[str] = []
    positions: list[int] = []
    i = 0
    while i < len(lemmas):
        positions.append(i)
        pair = " ".join(lemmas[i:i + 2])
        if pair in tables.double_words:
            raw_words.append(tables.double_words[pair])
            i += 2
        else:
            raw_words.append(lemmas[i])
            i += 1
    kept = raw_words
    if "toilet" in kept and "seat" in kept:  # "the seat of the toilet" is not a chair
        kept = [word for word in kept if word != "seat"]
    idxs = [positions[k] for k, word in enumerate(kept) if word in tables.objects]
    words = [word for word in kept if word in tables.objects]
    return CaptionWords(words, [tables.inverse_synonyms[word] for word in words], idxs, raw_words)


def image_key(image_id: Any) -> str:
    """The ground-truth key of an image id: ``str(int(id))``.

    Ints and digit strings are taken as they are; other strings (``"COCO_val2014_000000123456.jpg"``) give their
    last run of digits. Raises ``ValueError`` when there is no number to take.
    """
    if isinstance(image_id, bool):
        raise ValueError(f"image id {image_id!r} is a boolean")
    if isinstance(image_id, int):
        return str(image_id)
    if isinstance(image_id, float) and image_id.is_integer():
        return str(int(image_id))
    if isinstance(image_id, str):
        digits = re.findall(r"\d+", image_id)
        if digits:
            return str(int(digits[-1]))
    raise ValueError(f"image id {image_id!r} holds no image number")


def _read_json_any(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return json.loads(f.read())


def load_gt(path: str | Path) -> dict[str, frozenset[str]]:
    """Read a ground-truth file ``{"<image_id>": [objects]}`` (``.json`` or ``.json.gz``)."""
    path = Path(path)
    try:
        data = _read_json_any(path)
    except (OSError, json.JSONDecodeError, EOFError) as e:
        raise InputError(f"{path}: cannot read CHAIR ground truth ({e})") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: CHAIR ground truth must be a JSON object {{image_id: [objects]}}")
    return {str(key): frozenset(objects) for key, objects in data.items()}


@functools.lru_cache(maxsize=1)
def shipped_gt() -> dict[str, frozenset[str]]:
    """The shipped ground truth (SPARC's ``chair.pkl``), read once per process."""
    return load_gt(SHIPPED_GT)


def save_gt(path: str | Path, gt: Mapping[str, Iterable[str]]) -> None:
    """Write ground truth as gzipped JSON (keys in numeric order, sorted objects), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {key: sorted(gt[key]) for key in sorted(gt, key=int)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Chair:
    """A CHAIR evaluator: word tables plus ground-truth objects per image (the shipped GT unless given)."""

    def __init__(self, gt: Mapping[Any, Iterable[str]] | None = None, tables: WordTables | None = None) -> None:
        self.tables = tables or load_word_tables()
        self._gt = None if gt is None else {image_key(k): frozenset(v) for k, v in gt.items()}

    @property
    def gt(self) -> dict[str, frozenset[str]]:
        """Ground truth; the shipped file is read on first use only."""
        if self._gt is None:
            self._gt = shipped_gt()
        return self._gt

    def gt_objects(self, image_id: Any) -> frozenset[str] | None:
        """The image's ground-truth objects, or ``None`` when the image is unknown (``ValueError``: no number)."""
        return self.gt.get(image_key(image_id))

    def caption_to_words(self, caption: str) -> CaptionWords:
        """Object mentions in one caption (the official ``caption_to_words``)."""
        return self.captions_to_words([caption])[0]

    def captions_to_words(self, captions: Sequence[str]) -> list[CaptionWords]:
        """``caption_to_words`` for many captions, tagged in one batch."""
        return [words_from_tagged(tagged, self.tables) for tagged in tag_captions(captions)]

    def evaluate(self, items: Sequence[tuple[Any, str]]) -> dict[str, Any]:
        """Score ``(image_id, caption)`` pairs.

        Returns the official structure ``{"sentences": [...], "overall_metrics": {...}}`` plus
        ``"unknown_image_ids"``: ids missing from the GT, which were scored against an empty set as upstream does.
        """
        totals = defaultdict(float)
        sentences = []
        unknown = []
        for (image_id, caption), found in zip(items, self.captions_to_words([c for _, c in items])):
            gt_objects = self.gt_objects(image_id)
            if gt_objects is None:
                unknown.append(image_id)
                gt_objects = frozenset()
            sentences.append(_score_caption(image_id, caption, found, gt_objects, totals))
        return {"sentences": sentences, "overall_metrics": overall_metrics(totals), "unknown_image_ids": unknown}


def _score_caption(image_id: Any, caption: str, found: CaptionWords, gt_objects: frozenset[str],
                   totals: defaultdict[str, float]) -> dict[str, Any]:
    """One caption's official per-sentence record; adds its counts to ``totals``."""
    hallucinated = [(word, node) for word, node in zip(found.words, found.node_words) if node not in gt_objects]
    hallucination_idxs = [idx for node, idx in zip(found.node_words, found.idxs) if node not in gt_objects]
    recalled = {node for node in found.node_words if node in gt_objects}
    totals["captions"] += 1
    totals["hallucinated_captions"] += bool(hallucinated)
    totals["mentions"] += len(found.node_words)
    totals["hallucinated_mentions"] += len(hallucinated)
    totals["recalled_objects"] += len(recalled)
    totals["gt_objects"] += len(gt_objects)
    totals["tokens"] += len(found.raw_words)
    return {
        "image_id": image_id,
        "caption": caption,
        "mscoco_hallucinated_words": [list(pair) for pair in hallucinated],
        "mscoco_gt_words": sorted(gt_objects),
        "mscoco_generated_words": list(found.node_words),
        "hallucination_idxs": hallucination_idxs,
        "words": found.raw_words,
        "metrics": {
            "CHAIRs": int(bool(hallucinated)),
            "CHAIRi": len(hallucinated) / len(found.words) if found.words else 0.0,
            "Recall": len(recalled) / len(gt_objects) if gt_objects else 0.0,
            "Len": 0.01 * len(found.raw_words),
        },
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def overall_metrics(totals: Mapping[str, float]) -> dict[str, float | None]:
    """CHAIRs, CHAIRi, Recall, Len (fractions, as upstream) and the paper's Precision and F1.

    A ratio over zero items is None (upstream raises ZeroDivisionError): no captions -> every metric; no object
    mention -> CHAIRi and Precision; no ground-truth object -> Recall; F1 is None when P or R is, 0 when both are 0.
    """
    captions = totals.get("captions", 0)
    chair_i = _ratio(totals.get("hallucinated_mentions", 0), totals.get("mentions", 0))
    recall = _ratio(totals.get("recalled_objects", 0), totals.get("gt_objects", 0))
    precision = None if chair_i is None else 1.0 - chair_i
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "CHAIRs": _ratio(totals.get("hallucinated_captions", 0), captions),
        "CHAIRi": chair_i,
        "Recall": recall,
        "Len": None if not captions else 0.01 * totals.get("tokens", 0) / captions,
        "Precision": precision,
        "F1": f1,
    }


_NULL_REASONS = {"CHAIRs": "no caption scored", "CHAIRi": "no object mention in the captions",
                 "Recall": "no ground-truth object for the captioned images", "Len": "no caption scored",
                 "Precision": "no object mention in the captions", "F1": "precision or recall undefined"}


def empty_reason(metrics: Mapping[str, float | None]) -> str | None:
    """Why metrics are null, grouped by reason (None when every metric has a value)."""
    if metrics.get("CHAIRs") is None:
        return _NULL_REASONS["CHAIRs"]
    by_reason: dict[str, list[str]] = {}
    for name in METRIC_NAMES:
        if metrics.get(name) is None:
            by_reason.setdefault(_NULL_REASONS[name], []).append(name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()) or None


def caption_to_words(caption: str) -> CaptionWords:
    """Object mentions in ``caption`` with the shipped word tables."""
    return words_from_tagged(tag_captions([caption])[0], load_word_tables())


def evaluate(captions: Sequence[tuple[Any, str]], gt: Mapping[Any, Iterable[str]] | None = None) -> dict[str, Any]:
    """Score ``(image_id, caption)`` pairs against ``gt`` (default: the shipped COCO 2014 GT)."""
    return Chair(gt).evaluate(captions)


# ----------------------------------------------------------------------------------------------------------------
# Ground truth from the COCO 2014 annotations


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def coco_splits(coco_dir: Path) -> list[str]:
    """The 2014 splits whose instance and caption files are both in ``coco_dir``; raises if a pair is half there."""
    splits = []
    for split in ("train", "val"):
        present = [(coco_dir / f"{kind}_{split}2014.json").is_file() for kind in ("instances", "captions")]
        if all(present):
            splits.append(split)
        elif any(present):
            raise InputError(f"{coco_dir}: has only one of instances_{split}2014.json and captions_{split}2014.json")
    if not splits:
        raise InputError(f"{coco_dir}: no COCO 2014 annotations (instances_{{train,val}}2014.json and "
                         "captions_{train,val}2014.json)")
    return splits


def build_gt_from_coco(coco_dir: str | Path, chair: Chair | None = None) -> dict[str, frozenset[str]]:
    """Ground-truth objects per image: its instance categories plus the CHAIR objects of all its GT captions.

    Upstream reads train and val 2014; an image's objects depend only on its own annotations, so val alone gives the
    same GT for val images.
    """
    from pycocotools.coco import COCO

    coco_dir = Path(coco_dir)
    chair = chair or Chair(gt={})
    objects: defaultdict[int, set[str]] = defaultdict(set)
    for split in coco_splits(coco_dir):
        instances = COCO(str(coco_dir / f"instances_{split}2014.json"))
        names = {cat["id"]: cat["name"] for cat in instances.loadCats(instances.getCatIds())}
        for ann in instances.dataset["annotations"]:
            name = names[ann["category_id"]]
            if name not in chair.tables.inverse_synonyms:
                raise InputError(f"{coco_dir}: category {name!r} is not in the CHAIR synonym list")
            objects[ann["image_id"]].add(chair.tables.inverse_synonyms[name])
        anns = COCO(str(coco_dir / f"captions_{split}2014.json")).dataset["annotations"]
        for chunk in _chunks(anns, _GT_CHUNK):
            for ann, found in zip(chunk, chair.captions_to_words([a["caption"] for a in chunk])):
                objects[ann["image_id"]].update(found.node_words)
    return {str(image_id): frozenset(found) for image_id, found in objects.items()}


def resolve_gt(coco_path: str | None, cache: str | None) -> tuple[dict[str, frozenset[str]] | None, str]:
    """Pick the GT like upstream: an existing cache wins; else build from ``coco_path`` and cache; else shipped.

    Returns ``(gt or None for the shipped file, description)``.
    """
    cache_path = Path(cache).expanduser() if cache else DEFAULT_CACHE
    if cache_path.is_file() and (cache or coco_path):
        print(f"CHAIR ground truth: cached {cache_path} (delete it to rebuild)")
        return load_gt(cache_path), str(cache_path)
    if coco_path:
        print(f"CHAIR ground truth: building from {coco_path} (cached at {cache_path})")
        gt = build_gt_from_coco(coco_path)
        save_gt(cache_path, gt)
        return gt, f"{coco_path} (cached at {cache_path})"
    if cache:
        raise InputError(f"{cache_path}: no such GT cache; pass --coco_path to build it")
    return None, f"shipped {SHIPPED_GT.name} (SPARC chair.pkl)"


# ----------------------------------------------------------------------------------------------------------------
# Command line


@dataclass
class _Collected:
    items: list[tuple[Any, str]]
    unknown: int = 0
    skipped: int = 0
    empty: int = 0


def _unusable(record: dict[str, Any], id_key: str, caption_key: str) -> str | None:
    """Why a record cannot be scored, or ``None``."""
    if id_key not in record:
        return f"missing field {id_key!r}"
    if caption_key not in record:
        return f"missing field {caption_key!r}"
    if not isinstance(record[caption_key], str):
        return f"field {caption_key!r} is not a string ({type(record[caption_key]).__name__})"
    try:
        image_key(record[id_key])
    except ValueError as e:
        return str(e)
    return None


def collect_captions(path: str, records: list[tuple[int | None, dict[str, Any]]], id_key: str, caption_key: str,
                     chair: Chair, problems: list[Problem]) -> _Collected:
    """Validate records; unusable ones are skipped, empty captions and unknown ids are scored but reported."""
    out = _Collected(items=[])
    for index, (line, record) in enumerate(records, start=1):
        where = "" if line is not None else f"item {index}: "
        raw_id = record.get(id_key)
        shown_id = None if raw_id is None else str(raw_id)
        reason = _unusable(record, id_key, caption_key)
        if reason is not None:
            problems.append(Problem(path, line, shown_id, f"{where}{reason}; skipped"))
            out.skipped += 1
            continue
        caption = record[caption_key]
        if not caption.strip():
            problems.append(Problem(path, line, shown_id, f"{where}empty caption; scored as 0 object mentions"))
            out.empty += 1
        if chair.gt_objects(raw_id) is None:
            problems.append(Problem(path, line, shown_id, f"{where}image id {raw_id!r} is not in the CHAIR ground "
                                    "truth; scored against an empty object set, as the official code does"))
            out.unknown += 1
        out.items.append((raw_id, caption))
    return out


def format_metrics(metrics: Mapping[str, float | None]) -> str:
    """Upstream's printout (``name.ljust(10): value x 100`` to 3 decimals), plus Precision and F1; ``-`` for null."""
    return "\n".join(f"{name.ljust(10)}: " + ("-" if metrics[name] is None else f"{metrics[name] * 100:.03f}")
                     for name in METRIC_NAMES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.chair", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap_file", "--cap-file", required=True,
                        help=".jsonl (one object per line) or .json (list of objects) with image ids and captions")
    parser.add_argument("--image_id_key", "--image-id-key", default="image_id",
                        help="field holding the COCO image id (int, digit string or a name like "
                             "COCO_val2014_000000123456.jpg, whose last digits are used)")
    parser.add_argument("--caption_key", "--caption-key", default="caption", help="field holding the caption")
    parser.add_argument("--coco_path", "--coco-path", default=None,
                        help="folder with COCO 2014 instances_*2014.json and captions_*2014.json, to build the GT "
                             "instead of using the shipped one (SPARC's chair.pkl)")
    parser.add_argument("--cache", default=None,
                        help=f"GT cache (.json.gz); used if it exists, else written when building from --coco_path "
                             f"(default {DEFAULT_CACHE})")
    parser.add_argument("--save_path", "--save-path", default=None,
                        help="per-caption results and metrics json (default: <cap_file stem>_chair.json beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems: list[Problem] = []
    try:
        save_path = check_output_file(args.save_path or RunPaths.of_answers(args.cap_file).metrics("chair"))
        records = read_records(args.cap_file, problems)
        unreadable = len(problems)  # lines that are not JSON objects
        require_fields(args.cap_file, records, {"image id": ((args.image_id_key,), "--image_id_key"),
                                                "caption": ((args.caption_key,), "--caption_key")})
        gt, gt_source = resolve_gt(args.coco_path, args.cache)
        chair = Chair(gt)
        collected = collect_captions(args.cap_file, records, args.image_id_key, args.caption_key, chair, problems)
        result = chair.evaluate(collected.items)
    except (InputError, RuntimeError) as e:  # RuntimeError: NLTK data missing and not downloadable
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = result["overall_metrics"]
    counts = {"scored": len(collected.items), "unknown_image_ids": collected.unknown,
              "skipped": collected.skipped + unreadable, "empty_captions": collected.empty}
    report_problems(problems)
    print(f"{args.cap_file}: scored {counts['scored']} captions, skipped {counts['skipped']}, "
          f"{counts['unknown_image_ids']} unknown image ids, {counts['empty_captions']} empty captions "
          f"(ground truth: {gt_source})")
    print(format_metrics(metrics))
    write_json_atomic(save_path, {
        "scorer": "chair",
        "answers_file": args.cap_file,
        "ground_truth": gt_source,
        "metrics": metrics,
        "empty_reason": empty_reason(metrics),
        "counts": counts,
        "problems": [p.to_dict() for p in problems],
        "sentences": result["sentences"],
        "overall_metrics": metrics,
    })
    if not collected.items:
        print(f"error: {args.cap_file}: no caption could be scored", file=sys.stderr)
        return 1
    return 0


class ChairScorer(Scorer):
    """What the report reads from CHAIR's metrics json: one run; CHAIR scores what it is given (no expected set,
    so no coverage); its fractions x100; COCO unless the run's ``_results.json`` names another benchmark."""

    name = "chair"
    default_benchmark = "coco"
    answers_flag = "--cap_file"
    headline = "F1"
    plane = (Column("Recall", "Recall ↑ (x100)", 100), Column("Precision", "Precision = 1 - CHAIRi ↑ (x100)", 100))
    columns = (Column("CHAIRs", "CHAIRs ↓", 100), Column("CHAIRi", "CHAIRi ↓", 100), Column("Recall", "Recall ↑", 100),
               Column("F1", "F1 ↑", 100), Column("Len", "Len (words)", 100))
    description = ("CHAIR x100, F1 of precision 1 - CHAIRi and recall; Len = mean caption length in words (NLTK "
                   "tokens, punctuation included), not generated tokens")

    def paper(self, benchmark: str, key: str, model: str, method: str) -> Published | None:
        published = paper_numbers.SPARC_CHAIR_F1.get((model, method)) if benchmark == "coco" else None
        return None if published is None else {"F1": published}


SCORER = register_scorer(ChairScorer())


if __name__ == "__main__":
    sys.exit(main())
