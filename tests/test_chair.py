"""CHAIR scorer (eval.chair) and NLTK data setup (eval.nltk_setup): hand-worked captions, CLI, COCO GT builder."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nltk
import pytest

from conftest import PROJECT_ROOT
from helpers import assert_files_have_sha256
from eval import chair as C
from eval import nltk_setup



def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------------------------------------------------------
# Data files and word tables


OFFICIAL_SHA256 = {
    "chair/synonyms.txt": "05b0c0da629603309f0eaab43ae23a49fddf25c1a459edc71cf23f4ff455adeb",
    "chair/double_words.json": "67a169fba0f4089cac65d3a228b6e86af5456b65d18f519c4fab19244e92cb24",
    "coco_chair_gt.json.gz": "21f9955ce487e55cff309abab463be023a1d83d18765f0aa731326c8f37e4f54",  # of coco_chair_gt.json
}
"""SHA-256 of the word tables and ground truth as exported from the official SPARC ``chair.py`` / ``chair.pkl`` to the
project's reference data (``chair/``, ``coco_chair_gt.json``); of the uncompressed content for the gzipped copy."""


def test_shipped_word_tables_are_the_official_files() -> None:
    assert_files_have_sha256(C.DATA_DIR, OFFICIAL_SHA256)
    assert C.SHIPPED_GT == C.DATA_DIR / "coco_chair_gt.json.gz"


def test_synonym_list_parsed_like_upstream() -> None:
    tables = C.load_word_tables()
    objects, inverse = C.parse_synonyms((C.DATA_DIR / "chair" / "synonyms.txt").read_text())
    assert len(objects) == 417 and len(inverse) == 404  # the counts of SPARC's chair.pkl
    assert "" in tables.objects  # blank lines of the embedded list
    assert " motor bike" in tables.objects and "motor bike" not in tables.objects
    assert " cheesecake" in tables.objects and "cheesecake" not in tables.objects
    assert "iPhone" in tables.objects and "iphone" not in tables.objects
    assert len(tables.double_words) == 55
    assert list(tables.double_words)[:2] == ["motor bike", "motor cycle"]  # official insertion order
    assert tables.double_words["bow tie"] == "tie" and tables.double_words["wine glas"] == "wine glass"


# ---------------------------------------------------------------------------------------------------------------
# caption_to_words on hand-worked captions


@pytest.mark.parametrize("caption, words, nodes", [
    # "hot dogs" -> lemmas "hot", "dog" -> double word "hot dog"; table -> dining table; man/woman -> person
    ("A man and a woman eat hot dogs at a table.", ["man", "woman", "hot dog", "table"],
     ["person", "person", "hot dog", "dining table"]),
    # "baby elephant" -> elephant; "passenger train" -> train (no "passenger" -> person)
    ("A teddy bear and a baby elephant sit next to a passenger train.", ["teddy bear", "elephant", "train"],
     ["teddy bear", "elephant", "train"]),
    # "bow tie" -> tie; boy -> person; monitor -> tv
    ("A boy in a bow tie watches a monitor.", ["boy", "tie", "monitor"], ["person", "tie", "tv"]),
    # plural via the lemmatiser; toilet and seat both present -> every "seat" dropped (else seat -> chair)
    ("The toilet is next to a seat and two dogs.", ["toilet", "dog"], ["toilet", "dog"]),
    # "motor bike" is merged, but the synonym form is " motor bike" (double space upstream): never an object
    ("A motor bike is parked by a cake.", ["cake"], ["cake"]),
    # "iPhone" is capitalised in the list and " cheesecake" has a leading space: neither ever matches
    ("An iPhone next to a cheesecake.", [], []),
    # without "toilet", "seat" is a chair
    ("A cat on a seat.", ["cat", "seat"], ["cat", "chair"]),
])
def test_caption_to_words_hand_cases(caption: str, words: list[str], nodes: list[str]) -> None:
    found = C.caption_to_words(caption)
    assert found.words == words
    assert found.node_words == nodes


def test_caption_to_words_indices_and_raw_words() -> None:
    # tokens: the(0) toilet(1) is(2) next(3) to(4) a(5) seat(6) and(7) two(8) dogs(9) .(10)
    found = C.caption_to_words("The toilet is next to a seat and two dogs.")
    assert found.raw_words == ["the", "toilet", "be", "next", "to", "a", "seat", "and", "two", "dog", "."]
    # upstream indexes the merged list after dropping "seat", so "dog" gets 8 instead of its position 9
    assert found.idxs == [1, 8]
    # positions are token positions before merging: "hot dogs" starts at 6, "table" is token 10
    assert C.caption_to_words("A man and a woman eat hot dogs at a table.").idxs == [1, 4, 6, 10]


# ---------------------------------------------------------------------------------------------------------------
# Metrics on a small custom GT, computed by hand

HAND_GT = {1: {"person", "hot dog"}, 2: {"teddy bear", "train"}, 3: {"person", "tie", "tv"}, 4: {"toilet", "chair"},
           5: {"motorcycle"}}
# per caption: object mentions, hallucinated mentions, recalled / GT objects, tokens (punctuation included)
HAND_CAPTIONS = [
    (1, "A man and a woman eat hot dogs at a table."),  # 4, 1 (dining table); 2/2; 11 tokens
    (2, "A teddy bear and a baby elephant sit next to a passenger train."),  # 3, 1 (elephant); 2/2; 11 tokens
    (3, "A boy in a bow tie watches a monitor."),  # 3, 0; 3/3; 9 tokens
    (4, "The toilet is next to a seat and two dogs."),  # 2 (toilet, dog), 1 (dog); 1/2; 11 tokens
    (5, "A motor bike is parked by a cake."),  # 1 (cake), 1; 0/1; 8 tokens
    (6, "A dog."),  # unknown id, so an empty GT: 1, 1; 0/0; 3 tokens
]


def test_metrics_on_hand_worked_captions() -> None:
    result = C.evaluate(HAND_CAPTIONS, gt=HAND_GT)
    m = result["overall_metrics"]
    # CHAIRs: captions 1, 2, 4, 5, 6 hallucinate -> 5/6
    assert m["CHAIRs"] == pytest.approx(5 / 6)
    # CHAIRi: hallucinated mentions 1+1+0+1+1+1 = 5 over mentions 4+3+3+2+1+1 = 14
    assert m["CHAIRi"] == pytest.approx(5 / 14)
    # Recall: correct distinct objects 2+2+3+1+0+0 = 8 over GT objects 2+2+3+2+1+0 = 10
    assert m["Recall"] == pytest.approx(0.8)
    # Len: 0.01 x mean token count (punctuation included) = 0.01 x (11+11+9+11+8+3)/6
    assert m["Len"] == pytest.approx(0.01 * 53 / 6)
    # Precision = 1 - 5/14 = 9/14; F1 = 2 (9/14)(4/5) / (9/14 + 4/5) = (36/35) / (101/70) = 72/101
    assert m["Precision"] == pytest.approx(9 / 14)
    assert m["F1"] == pytest.approx(72 / 101)
    assert result["unknown_image_ids"] == [6]
    first, fourth = result["sentences"][0], result["sentences"][3]
    assert first["mscoco_hallucinated_words"] == [["table", "dining table"]]
    assert first["metrics"] == {"CHAIRs": 1, "CHAIRi": 0.25, "Recall": 1.0, "Len": pytest.approx(0.11)}
    assert fourth["hallucination_idxs"] == [8]  # upstream's misaligned index after the toilet/seat filter
    assert fourth["mscoco_gt_words"] == ["chair", "toilet"]


@pytest.mark.parametrize("captions, nulls", [
    ([], {"CHAIRs", "CHAIRi", "Recall", "Len", "Precision", "F1"}),  # nothing scored: no metric at all
    ([(1, "It is dark.")], {"CHAIRi", "Precision", "F1"}),         # no object mention: 0/0 mentions
    ([(6, "A picture.")], {"CHAIRi", "Precision", "Recall", "F1"}),  # and an empty GT set: 0/0 objects
])
def test_metrics_over_zero_items_are_null(captions: list, nulls: set[str]) -> None:
    """A ratio over zero items is null, never 0 or 100 (upstream divides by zero); the others keep their value."""
    m = C.evaluate(captions, gt=HAND_GT)["overall_metrics"]
    assert {name for name, value in m.items() if value is None} == nulls
    if "CHAIRs" not in nulls:  # one caption, nothing hallucinated (no mention); 4 tokens / 3 tokens
        assert m["CHAIRs"] == 0 and m["Len"] == pytest.approx(0.01 * len(C.caption_to_words(captions[0][1]).raw_words))
    assert C.empty_reason(m) is not None and (C.empty_reason(m) == "no caption scored") == (not captions)


def test_batched_words_equal_one_by_one() -> None:
    chair = C.Chair(gt=HAND_GT)
    captions = [caption for _, caption in HAND_CAPTIONS]
    assert chair.captions_to_words(captions) == [chair.caption_to_words(c) for c in captions]


def test_shipped_gt_for_real_val2014_images() -> None:
    chair = C.Chair()
    assert chair.gt_objects(73) == {"motorcycle", "bicycle", "chair"}  # COCO_val2014_000000000073.jpg
    assert chair.gt_objects("COCO_val2014_000000000074.jpg") == {"dog", "bicycle", "person"}
    assert chair.gt_objects(1) is None
    result = chair.evaluate([(73, "A motorcycle parked near a bicycle and a car.")])
    # mentions motorcycle, bicycle, car; car is not in the GT; recall 2 of 3 GT objects
    assert result["sentences"][0]["mscoco_hallucinated_words"] == [["car", "car"]]
    assert result["overall_metrics"]["CHAIRi"] == pytest.approx(1 / 3)
    assert result["overall_metrics"]["Recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("value, key", [(123, "123"), ("000123", "123"), ("COCO_val2014_000000000042.jpg", "42"),
                                        (42.0, "42")])
def test_image_key(value: object, key: str) -> None:
    assert C.image_key(value) == key


@pytest.mark.parametrize("value", [None, True, "abc", 1.5])
def test_image_key_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        C.image_key(value)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_end_to_end_with_bad_lines(tmp_path: Path) -> None:
    cap_file = tmp_path / "caps.jsonl"
    cap_file.write_text("\n".join([
        json.dumps({"image_id": 73, "caption": "A motorcycle parked near a bicycle and a car."}),
        json.dumps({"image_id": "COCO_val2014_000000000074.jpg", "caption": "A man rides a bike past a dog."}),
        '{"image_id": 42, "caption": ',  # line 3: malformed
        json.dumps({"image_id": 42}),  # line 4: missing caption
        json.dumps({"image_id": 999999999, "caption": "A dog."}),  # line 5: unknown id
        json.dumps({"image_id": 42, "caption": ""}),  # line 6: empty caption
        "",
    ]) + "\n")
    out = tmp_path / "chair.json"
    proc = run_cli("eval.chair", "--cap-file", str(cap_file), "--save_path", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(out.read_text())
    assert saved["scorer"] == "chair" and saved["answers_file"] == str(cap_file)
    assert saved["counts"] == {"scored": 4, "unknown_image_ids": 1, "skipped": 2, "empty_captions": 1}
    problems = {p["line"]: p for p in saved["problems"]}
    assert sorted(problems) == [3, 4, 5, 6]
    assert "not valid JSON" in problems[3]["reason"]
    assert "missing field 'caption'" in problems[4]["reason"] and problems[4]["id"] == "42"
    assert "not in the CHAIR ground truth" in problems[5]["reason"] and problems[5]["id"] == "999999999"
    assert "empty caption" in problems[6]["reason"]
    assert f"{cap_file}:5 (id 999999999)" in proc.stderr
    # mentions: {motorcycle, bicycle, car} (car hallucinated), {person, bicycle, dog}, {dog} (unknown id), none.
    # CHAIRs 2/4; CHAIRi 2/7; Recall (2 + 3 + 0 + 0) / (3 + 3 + 0 + 1) = 5/7; tokens 10 + 9 + 3 + 0 -> Len 0.055
    m = saved["metrics"]
    assert m == saved["overall_metrics"]
    assert m["CHAIRs"] == pytest.approx(0.5) and m["CHAIRi"] == pytest.approx(2 / 7)
    assert m["Recall"] == pytest.approx(5 / 7) and m["Len"] == pytest.approx(0.055)
    assert len(saved["sentences"]) == 4
    assert saved["sentences"][1]["image_id"] == "COCO_val2014_000000000074.jpg"
    assert saved["sentences"][1]["mscoco_generated_words"] == ["person", "bicycle", "dog"]
    assert "CHAIRs    : 50.000" in proc.stdout and "Len       : 5.500" in proc.stdout
    assert "F1        : " in proc.stdout and "Precision : 71.429" in proc.stdout


def test_cli_help_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        C.main(["--help"])
    assert exit_info.value.code == 0 and "--cap_file CAP_FILE, --cap-file CAP_FILE" in capsys.readouterr().out
    assert C.main(["--cap_file", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Ground truth from COCO annotations


def _write_fake_coco(folder: Path, split: str, first_id: int, instances: list[tuple[int, int]],
                     captions: list[tuple[int, str]]) -> None:
    images = [{"id": image_id, "file_name": f"COCO_{split}2014_{image_id:012d}.jpg", "height": 10, "width": 10}
              for image_id in sorted({i for i, _ in instances} | {i for i, _ in captions})]
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 18, "name": "dog", "supercategory": "animal"},
                  {"id": 67, "name": "dining table", "supercategory": "furniture"}]
    (folder / f"instances_{split}2014.json").write_text(json.dumps({
        "images": images, "categories": categories,
        "annotations": [{"id": first_id + k, "image_id": i, "category_id": c, "bbox": [0, 0, 1, 1], "area": 1.0,
                         "iscrowd": 0, "segmentation": [[0, 0, 1, 0, 1, 1]]} for k, (i, c) in enumerate(instances)]}))
    (folder / f"captions_{split}2014.json").write_text(json.dumps({
        "images": images,
        "annotations": [{"id": first_id + k, "image_id": i, "caption": text} for k, (i, text) in enumerate(captions)]}))


def test_gt_builder_on_fake_coco(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = tmp_path / "coco"
    coco.mkdir()
    _write_fake_coco(coco, "val", 1, [(1, 18), (1, 18), (2, 67)],
                     [(1, "A man walks his dog."), (1, "A dog on a leash."), (2, "A cat on a table."), (3, "A sky.")])
    _write_fake_coco(coco, "train", 100, [(10, 1)], [(10, "Two bikes near a woman.")])
    gt = C.build_gt_from_coco(coco)
    assert gt == {"1": {"dog", "person"},  # instance dog + caption man -> person
                  "2": {"dining table", "cat"},  # instance + caption cat (table -> dining table twice)
                  "3": frozenset(),  # captioned, no objects: present with an empty set, as upstream
                  "10": {"person", "bicycle"}}

    cache = tmp_path / "gt.json.gz"
    cap_file = tmp_path / "caps.jsonl"
    cap_file.write_text(json.dumps({"image_id": 2, "caption": "A cat and a dog."}) + "\n")
    out = tmp_path / "out.json"
    assert C.main(["--cap_file", str(cap_file), "--coco_path", str(coco), "--cache", str(cache),
                   "--save_path", str(out)]) == 0
    assert C.load_gt(cache) == gt
    assert json.loads(out.read_text())["metrics"]["CHAIRi"] == pytest.approx(0.5)  # dog is not in image 2

    for name in coco.iterdir():  # the cache alone is enough afterwards
        name.unlink()
    assert C.main(["--cap_file", str(cap_file), "--cache", str(cache), "--save_path", str(out)]) == 0
    assert "CHAIR ground truth: cached" in capsys.readouterr().out
    assert json.loads(out.read_text())["metrics"]["CHAIRi"] == pytest.approx(0.5)


def test_gt_builder_rejects_half_a_split(tmp_path: Path) -> None:
    _write_fake_coco(tmp_path, "val", 1, [(1, 18)], [(1, "A dog.")])
    (tmp_path / "captions_val2014.json").unlink()
    with pytest.raises(C.InputError, match="only one of"):
        C.build_gt_from_coco(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# NLTK data


def test_nltk_data_found_offline() -> None:
    assert nltk_setup.missing_packages() == []
    nltk_setup.ensure_nltk_data()


def test_nltk_download_failure_explains_nltk_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(nltk_setup, "_ready", False)
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk, "download", lambda package, **kw: calls.append((package, kw["download_dir"])) or False)
    with pytest.raises(RuntimeError, match="NLTK_DATA="):
        nltk_setup.ensure_nltk_data()
    assert [p for p, _ in calls] == ["punkt_tab", "averaged_perceptron_tagger_eng", "wordnet"]
    assert {d for _, d in calls} == {str(tmp_path)}
