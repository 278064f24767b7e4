"""AMBER scorer (eval.amber): score formula, hand-computed discriminative and generative cases, similarity backends,
the exact-only warning and the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PROJECT_ROOT
from helpers import assert_files_have_sha256
from eval import amber as A
from eval.benchmarks.amber import QUERY_FILE



OFFICIAL_SHA256 = {
    "relation.json": "c4c1491e9bbc3209abc1888c12a1bf8413bdbab8a0d8be04b990a2e7680cf23e",
    "safe_words.txt": "f92cf1123f4578a2630832fac3e6ac4de36212ea55859d3bed4fd233723f4043",
    "metrics.txt": "2fbe2ee584d10e7ce0a568a4902d3d2296727d45f761bf091dd35c4e4b5bc6ac",
    "LICENSE": "c16b3d44dd5d82af5fdb402706726e9f19695fbdff0a966743d5e08281cf8391",
    "annotations.json.gz": "db22a436c4836fbb295e60b4e80d519573077579fb7032f01b193c1bd022b797",  # of annotations.json
    "query_all.json.gz": "127680ae61f7d4a92d2f7f07a8deaec07f0689b194d2c7c0f41ead7bd2c5bcf5",  # of query/query_all.json
}
"""SHA-256 of the official AMBER files (AvisC's ``experiments/AMBER``, identical to upstream AMBER) as exported to the
project's reference data (``amber/``); of the uncompressed content for the gzipped copies."""


def test_shipped_data_are_the_official_files() -> None:
    assert_files_have_sha256(A.DATA_DIR, OFFICIAL_SHA256)
    assert {A.ANNOTATION_FILE.name, QUERY_FILE.name} <= set(OFFICIAL_SHA256)


# ---------------------------------------------------------------------------------------------------------------
# AMBER score


@pytest.mark.parametrize("chair, f1, score", [
    (8.40, 74.60, 83.10),  # AvisC paper, InstructBLIP base: (100 - 8.40 + 74.60) / 2
    (6.25, 75.45, 84.60),  # AvisC paper, LLaVA-1.5 AvisC: (100 - 6.25 + 75.45) / 2
])
def test_amber_score_reproduces_paper_rows(chair: float, f1: float, score: float) -> None:
    assert A.amber_score(chair, f1) == pytest.approx(score, abs=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Discriminative: hand-made answers, "No" is the positive class, counters start at metrics.txt (0.001)

DISCRIMINATIVE = {
    # existence (all truths "no")
    8633: "No, there is no dog.",  # -> No, correct
    8634: "Yes, there is a dog.",  # -> Yes, wrong
    8635: "No",  # correct
    8636: "There isn't any.",  # "n't" -> No, correct
    # attribute-state
    1005: "Yes",  # truth yes, correct
    1007: "No",  # truth yes, wrong
    1006: "No.",  # truth no, correct
    1008: "Yes",  # truth no, wrong
    # attribute-number
    1013: "Yes",  # truth yes, correct
    1014: "Yes",  # truth no, wrong
    1020: "No",  # truth no, correct
    # attribute-action
    1017: "No",  # truth yes, wrong
    1018: "not sure",  # "not" -> No; truth no, correct
    # relation (discriminative-relation: truth yes; relation: truth no)
    13557: "Yes",  # truth yes, correct
    13558: "No",  # truth no, correct
    13560: "Yes",  # truth no, wrong
}
# Accuracy = correct / (N + 0.001); Precision = (No answered and truth no) / (#No answered + 0.001);
# Recall = same / (#truth no + 0.001); all x100 rounded to 0.1; F1 from the rounded P and R, eps 1e-4 (1e-3 existence).
EXPECTED_DISCRIMINATIVE = {
    # 3/4.001 = 74.98; 3/3.001 = 99.97; 3/4.001; F1 = 2(1)(.75)/(1.75 + .001) = 85.67
    "existence": (75.0, 100.0, 75.0, 85.7),
    # 2/4.001 = 49.99; 1/2.001 = 49.98; 1/2.001; F1 = .5/1.0001 = 49.995
    "state": (50.0, 50.0, 50.0, 50.0),
    # 2/3.001 = 66.64; 1/1.001 = 99.90; 1/2.001 = 49.98; F1 = 2(.999)(.5)/(1.499 + .0001) = 66.64
    "number": (66.6, 99.9, 50.0, 66.6),
    # 1/2.001 = 49.98; 1/2.001; 1/1.001 = 99.90; F1 = 2(.5)(.999)/1.4991 = 66.64
    "action": (50.0, 50.0, 99.9, 66.6),
    # sums of the three types, each denominator carrying its own 0.001: 5/9.003 = 55.54 (not 5/9 = 55.56);
    # 3/5.003 = 59.96; 3/5.003; F1 = 2(.6)(.6)/(1.2 + .0001) = 59.995
    "attribute": (55.5, 60.0, 60.0, 60.0),
    # 2/3.001 = 66.64; 1/1.001 = 99.90; 1/2.001 = 49.98; F1 = 66.6
    "relation": (66.6, 99.9, 50.0, 66.6),
    # all 16: correct 10/16.001 = 62.50; answered No 9, of which truth no 7: 7/9.001 = 77.77; truth no 11: 7/11.001
    # = 63.63; F1 = 2(.778)(.636)/(.778 + .636 + .0001) = 69.98
    "all": (62.5, 77.8, 63.6, 70.0),
}


def _block(metrics: dict[str, float], block: str) -> tuple[float, ...]:
    key = "" if block == "all" else f"{block}_"
    return tuple(metrics[key + name] for name in ("Accuracy", "Precision", "Recall", "F1"))


def test_metrics_over_zero_answers_are_null_not_zero() -> None:
    """Upstream's counters start at 0.001, so a ratio over zero answers prints 0.0 (and AMBER 50.00, Hal 100); here
    it is null with its reason, and the metrics over the answers there are keep their values."""
    result = A.evaluate({1005: "Yes", 1006: "No."}, "a")  # attribute-state: truth yes, truth no; both right
    m = result["metrics"]
    assert [m[k] for k in ("CHAIR", "Cover", "Hal", "Cog", "AMBER")] == [None] * 5
    # all: 2/2.001 = 99.95 -> 100.0; precision 1/1.001 = 99.9; recall 1/1.001; F1 = 2(.999)(.999)/(1.998 + .0001)
    assert (m["Accuracy"], m["Precision"], m["Recall"], m["F1"]) == (100.0, 99.9, 99.9, 99.9)
    assert [m[f"existence_{k}"] for k in ("Accuracy", "Precision", "Recall", "F1")] == [None] * 4
    assert "CHAIR, Cover, Hal, Cog: no generative answer" in result["empty_reason"]
    assert "no yes/no answer (existence)" in result["empty_reason"]
    assert "AMBER: CHAIR or F1 undefined" in result["empty_reason"]
    only_yes = A.evaluate({1005: "Yes"}, "da")["metrics"]  # no answer read as No, no question whose truth is no
    assert only_yes["attribute_Accuracy"] == 99.7  # 1 / (1 + 3 x 0.001): three types' start values
    assert only_yes["attribute_Precision"] is None and only_yes["attribute_Recall"] is None
    assert only_yes["attribute_F1"] is None


def test_discriminative_hand_computed() -> None:
    result = A.evaluate(DISCRIMINATIVE, "d")
    for block, expected in EXPECTED_DISCRIMINATIVE.items():
        assert _block(result["metrics"], block) == expected, block
    assert result["non_literal_yes_no"] == 5
    assert result["similarity"] == "unused"
    assert "CHAIR" not in result["metrics"] and "AMBER" not in result["metrics"]


@pytest.mark.parametrize("evaluation_type, blocks", [
    ("de", ["existence"]), ("da", ["attribute", "state", "number", "action"]), ("dr", ["relation"]),
])
def test_single_dimension_reports_only_its_blocks(evaluation_type: str, blocks: list[str]) -> None:
    metrics = A.evaluate(DISCRIMINATIVE, evaluation_type)["metrics"]
    assert len(metrics) == 4 * len(blocks)
    for block in blocks:
        assert _block(metrics, block) == EXPECTED_DISCRIMINATIVE[block]


# ---------------------------------------------------------------------------------------------------------------
# Generative: real AMBER ids 1-3, exact matching

GENERATIVE = {
    # truth sky forest grass person lake mountain road; hallu cloud sun bird dog flower.
    # nouns man(person) road lake tree(forest) dog cloud sky: 7 kept, dog and cloud flagged;
    # covered sky forest person lake road = 5/7; hit cloud dog = 2/5
    1: "A man walks on the road near a lake with trees, a dog and some clouds in the sky.",
    # truth sky man ship ship forest bridge mountain cloud lake building; hallu plane bird sun paddle ground.
    # nouns boat(first ship only) bridge bird water(lake) camera(global safe word: kept, never flagged) floor(ground):
    # 6 kept, bird and floor flagged; covered 3/10; hit bird ground = 2/5
    2: "Two boats sail under a bridge. A bird flies over the water and the camera shows the floor.",
    # truth child grass flower: nouns kid(child) grass: 2 kept, none flagged; covered 2/3; hit 0/5
    3: "A kid is sitting on the grass.",
}


def test_generative_hand_checked_exact() -> None:
    result = A.evaluate(GENERATIVE, "g", similarity="exact")
    c = result["counters"]
    assert (c["chair_score"], c["chair_num"]) == (4, pytest.approx(15.001))
    assert (c["safe_cover_score"], c["safe_cover_num"]) == (10, pytest.approx(20.001))
    assert (c["hallu_cover_score"], c["hallu_cover_num"]) == (4, pytest.approx(15.001))
    assert (c["non_hallu_score"], c["non_hallu_num"]) == (1, pytest.approx(3.001))
    # CHAIR 4/15.001 = 26.66; Cover 10/20.001 = 49.9975; Hal 100 - 1/3.001 x 100 = 66.68; Cog 4/15.001
    assert result["metrics"] == {"CHAIR": 26.7, "Cover": 50.0, "Hal": 66.7, "Cog": 26.7}
    assert result["similarity"] == "exact-only"
    assert "EXACT word matching only" in result["warnings"][0]


def test_generative_outcome_of_one_answer() -> None:
    scorer = A.GenerativeScorer(A.load_amber_data(), A.ExactSimilarity())
    nouns = A.extract_nouns([GENERATIVE[2]])[0]
    assert nouns == ["boat", "bridge", "bird", "water", "camera", "floor"]
    ann = A.load_amber_data().annotations[2]
    out = scorer.score(nouns, ann["truth"], ann["hallu"])
    assert out.flagged == ["bird", "floor"]
    assert out.covered == [False, False, True, False, False, True, False, False, True, False]  # 2nd "ship" not
    assert out.hit == [False, True, False, False, True]


class VectorNLP:
    """A stand-in for a spaCy pipeline: ``nlp(word).similarity(other)`` is the cosine of hand-set vectors; words
    without a vector have similarity 0, as in spaCy."""

    name = "stand-in-vectors"
    vectors = {
        "dog": [1, 0, 0, 0, 0],
        "fox": [3, 0, 0, 0, 1],  # cos(fox, dog) = 3/sqrt(10) = 0.95
        "lake": [0, 1, 0, 0, 0],
        "beach": [0, 3, 0, 0, 1],  # cos(beach, lake) = 0.95; cos(beach, fox) = 0.1
        "bird": [0, 0, 1, 0, 0],
        "hill": [0, 0, 1, 1, 0],
        "pigeon": [0, 0, 1, 0.3, 0],  # cos(pigeon, bird) = 0.96, cos(pigeon, hill) = 1.3/sqrt(2.18) = 0.88
        "cat": [4, 3, 0, 0, 0],  # cos(cat, dog) = 4/5 = 0.8 exactly: not > 0.8; cos(cat, lake) = 0.6
    }

    class Doc:
        def __init__(self, vector: np.ndarray) -> None:
            self.vector = vector

        def similarity(self, other: "VectorNLP.Doc") -> float:
            norm = np.linalg.norm(self.vector) * np.linalg.norm(other.vector)
            return 0.0 if norm == 0 else float(self.vector @ other.vector / norm)

    def __call__(self, word: str) -> "VectorNLP.Doc":
        return self.Doc(np.array(self.vectors.get(word, [0, 0, 0, 0, 0]), dtype=float))


class PairSimilarity:
    """The other backend form: an object with ``similarity(a, b)``."""

    name = "pair-table"

    def __init__(self) -> None:
        self.nlp = VectorNLP()

    def similarity(self, a: str, b: str) -> float:
        return self.nlp(a).similarity(self.nlp(b))


# id 1: truth sky forest grass person lake mountain road; hallu cloud sun bird dog flower
SIMILARITY_ANSWER = {1: "A fox, a beach, a pigeon, a cat and a light."}


@pytest.mark.parametrize("backend", [VectorNLP(), PairSimilarity()], ids=["nlp-callable", "similarity-method"])
def test_similarity_branches_with_stand_in_vectors(backend: object) -> None:
    data = A.load_amber_data()
    scorer = A.GenerativeScorer(data, A.as_similarity(backend))
    ann = data.annotations[1]
    out = scorer.score(["fox", "beach", "pigeon", "cat", "light"], ann["truth"], ann["hallu"])
    # fox ~ dog (> 0.8): hits "dog" but is flagged (nothing true is similar);
    # beach ~ lake: covers "lake" through similarity, not flagged;
    # pigeon ~ bird (hit) and ~ hill, an associated word of "mountain": covers mountain, not flagged;
    # cat: similarity to dog exactly 0.8 is not > 0.8: flagged, no hit; light: a global safe word, skipped
    assert out.kept == ["fox", "beach", "pigeon", "cat", "light"]
    assert out.flagged == ["fox", "cat"]
    assert out.covered == [False, False, False, False, True, True, False]
    assert out.hit == [False, False, True, True, False]
    result = A.evaluate(SIMILARITY_ANSWER, "g", similarity=backend)
    # CHAIR 2/5.001 = 39.99; Cover 2/7.001 = 28.57; Hal 100 - 0; Cog 2/5.001
    assert result["metrics"] == {"CHAIR": 40.0, "Cover": 28.6, "Hal": 100.0, "Cog": 40.0}
    assert result["similarity"] == backend.name and result["warnings"] == []


def test_exact_only_on_the_same_answer_flags_everything() -> None:
    result = A.evaluate(SIMILARITY_ANSWER, "g", similarity="exact")
    # fox, beach, pigeon, cat flagged (light is a safe word): 4/5.001; nothing covered or hit
    assert result["metrics"] == {"CHAIR": 80.0, "Cover": 0.0, "Hal": 100.0, "Cog": 0.0}


def test_auto_falls_back_to_exact_with_a_warning() -> None:
    backend, warning = A.load_similarity("auto", model="no_such_spacy_model_xyz")
    assert isinstance(backend, A.ExactSimilarity)
    assert "EXACT word matching only" in warning and "no_such_spacy_model_xyz" in warning
    with pytest.raises(A.InputError, match="cannot load spaCy model"):
        A.load_similarity("spacy", model="no_such_spacy_model_xyz")


# ---------------------------------------------------------------------------------------------------------------
# Command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eval.amber", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_all_with_problems_and_exact_only_warning(tmp_path: Path) -> None:
    answers = tmp_path / "answers.jsonl"
    both = {**GENERATIVE, **DISCRIMINATIVE}
    lines = [json.dumps({"question_id": i, "text": text, "model_id": "x"}) for i, text in both.items()]
    lines += [
        json.dumps({"question_id": 8633, "text": "Yes"}),  # line 20: duplicate (first kept)
        json.dumps({"question_id": 99999, "text": "No"}),  # line 21: not an AMBER id
        json.dumps({"question_id": 8700}),  # line 22: no answer text
        "not json",  # line 23
    ]
    answers.write_text("\n".join(lines) + "\n")
    out = tmp_path / "amber.json"
    proc = run_cli("--inference-data", str(answers), "--evaluation_type", "a", "--save_path", str(out),
                   "--similarity", "auto", "--spacy_model", "no_such_spacy_model_xyz")
    assert proc.returncode == 0, proc.stderr
    assert "EXACT word matching only" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["scorer"] == "amber" and saved["answers_file"] == str(answers)
    assert saved["similarity"] == "exact-only" and "EXACT word matching only" in saved["warnings"][0]
    assert saved["counts"] == {"scored": 19, "missing_ids": 15220 - 19, "unparsable": 2, "unknown_ids": 1,
                               "duplicate_ids": 1, "other_dimension": 0, "empty_generative": 0,
                               "non_literal_yes_no": 5}
    reasons = {p["line"]: p["reason"] for p in saved["problems"]}
    assert "duplicate" in reasons[20] and "not an AMBER query id" in reasons[21]
    assert "missing field 'response' (or 'text')" in reasons[22] and "not valid JSON" in reasons[23]
    assert "15201 AMBER queries" in reasons[None]
    m = saved["metrics"]
    assert (m["CHAIR"], m["Cover"], m["Hal"], m["Cog"]) == (26.7, 50.0, 66.7, 26.7)
    assert _block(m, "all") == EXPECTED_DISCRIMINATIVE["all"]
    assert m["AMBER"] == pytest.approx((100 - 26.7 + 70.0) / 2)  # 71.65
    assert "AMBER score = (100 - CHAIR + F1) / 2 = 71.65" in proc.stdout


def test_cli_amber_format_generative_only(tmp_path: Path) -> None:
    answers = tmp_path / "Amber_result.json"
    records = [{"id": i, "response": t} for i, t in GENERATIVE.items()] + [{"id": 1005, "response": "Yes"}]
    answers.write_text(json.dumps(records, indent=4))
    out = tmp_path / "amber.json"
    proc = run_cli("--inference_data", str(answers), "--evaluation_type", "g", "--save-path", str(out),
                   "--similarity", "exact")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["metrics"] == {"CHAIR": 26.7, "Cover": 50.0, "Hal": 66.7, "Cog": 26.7}
    assert saved["counts"]["scored"] == 3 and saved["counts"]["missing_ids"] == 1001
    assert saved["counts"]["other_dimension"] == 1
    assert saved["similarity"] == "exact-only" and "EXACT word matching only" in proc.stdout


def test_cli_help() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "--evaluation_type" in proc.stdout and "--inference-data" in proc.stdout
