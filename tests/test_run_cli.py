"""``python -m llava.run``: one question about one image, and one clear line for each kind of bad input."""
from __future__ import annotations

import json

import pytest

from llava import run


def test_answers_like_the_official_code(golden_dir, capsys):
    golden = json.loads((golden_dir / "sparc_golden.json").read_text())
    output = next(c for c in golden["cases"] if c["name"] == "vanilla")["outputs"][0]
    code = run.main(["--model-path", str(golden_dir / "tiny-llava-v1.5"), "--image-file",
                     str(golden_dir / "images" / output["image"]), "--query", golden["question"],
                     "--max-new-tokens", str(golden["max_new_tokens"]), "--device", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.strip() == output["caption"]


@pytest.mark.parametrize("problem", ["missing image", "not an image", "not a checkpoint", "unknown conv mode"])
def test_bad_input_is_one_clear_line(golden_dir, tmp_path, capsys, problem):
    model, image = str(golden_dir / "tiny-llava-v1.5"), str(golden_dir / "images" / "img_wide.jpg")
    extra: list[str] = []
    if problem == "missing image":
        image = str(tmp_path / "nothing.jpg")
    elif problem == "not an image":
        (tmp_path / "text.jpg").write_text("hello")
        image = str(tmp_path / "text.jpg")
    elif problem == "not a checkpoint":
        model = str(tmp_path)
    else:
        extra = ["--conv-mode", "no_such_template"]
    code = run.main(["--model-path", model, "--image-file", image, "--query", "Hi", "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ")
    expected = {"missing image": "nothing.jpg: no such image file", "not an image": "text.jpg: not a readable image",
                "not a checkpoint": "not a model checkpoint", "unknown conv mode": "unknown conv mode 'no_such_template'"}
    assert expected[problem] in err[0]


@pytest.mark.parametrize("model, extra, message", [
    ("tiny-instructblip", ["--conv-mode", "vicuna_v1"], "InstructBLIP takes the raw question"),
    ("tiny-instructblip", ["--image-aspect", "pad"], "--image-aspect pad: an instructblip model has only its own"),
    ("tiny", ["--image-aspect", "anyres"], "--image-aspect anyres: a llava model has pad, crop"),
    ("tiny", ["--query", "  "], "--query is empty"),
    ("tiny", ["--top-p", "0.9"], "--top-p 0.9 has no effect with greedy decoding"),
    ("tiny", ["--temperature", "nan"], "must be finite numbers"),
    ("tiny", ["--temperature", "1e-45"], "--temperature must be 0 (greedy) or at least 0.01"),
])
def test_settings_the_model_cannot_apply_fail_before_loading(golden_dir, monkeypatch, capsys, model, extra, message):
    """The checks the runners make (one home: ``CheckpointInfo.check_settings``), before any weights load."""
    import llava.model.builder as builder

    monkeypatch.setattr(builder, "load_model", lambda *a, **k: pytest.fail("the model must not be loaded"))
    argv = ["--model-path", model, "--image-file", str(golden_dir / "images" / "img_wide.jpg"), "--query", "Hi",
            "--device", "cpu"]
    assert run.main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
