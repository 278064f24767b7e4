"""Qwen2-VL and Qwen2.5-VL: the golden outputs (transformers' own ``generate`` and an independent SPARC reference loop,
``golden/qwen2vl``) through the library and the runners, at batch 1 and in batches of images of different sizes;
every method on both families; the inputs (image space, patches, positions, text-only branch, EOS); the family
defaults of the methods; the registry, the figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import GOLDEN
from eval import caption, vqa
from eval.benchmarks import BENCHMARKS, resolve_run
from eval.methods import get_method, list_methods
from helpers import golden_image, golden_json, golden_model, make_batch, random_image, seeded_generators
from llava.generation import GenerationConfig, generate

FAMILIES = {"qwen2_vl": "qwen2vl/tiny-qwen2-vl", "qwen2_5_vl": "qwen2vl/tiny-qwen2.5-vl"}
GOLDEN_FILES = {"qwen2_vl": "qwen2vl/qwen2_vl_golden.json", "qwen2_5_vl": "qwen2vl/qwen2_5_vl_golden.json"}
SIZES = [(640, 480), (300, 700), (512, 512)]  # three grids: 8x9, 4x10 (...), 8x8 merged tokens on the tiny bounds


def cases(kind: str | None = None) -> list:
    """``pytest.param(family, case)`` for every visible golden case (of ``kind``: a case name)."""
    params = []
    for family, name in GOLDEN_FILES.items():
        for case in golden_json(name)["cases"]:
            if kind is None or case["case"] == kind:
                params.append(pytest.param(family, case, id=f"{family}-{case['case']}-{Path(case['image']).stem}"))
    return params


def model_of(family: str, attn: str | None = None):
    return golden_model(FAMILIES[family], attn)


def eos_of(family: str) -> tuple[int, ...]:
    """The EOS ids the family takes from the checkpoint's generation_config."""
    from llava.model.families import family_of

    tokenizer, model, _ = model_of(family)
    return family_of(model).eos_token_ids(model, tokenizer)


def sparc_method(case: dict, record: bool = False):
    from sparc.config import SparcConfig
    from sparc.method import Sparc

    return Sparc(SparcConfig(**case["params"]), record=record) if case.get("method") == "sparc" else None


def run_case(family: str, cases_: list[dict], attn: str | None = None):
    """Our greedy decoding of golden cases in one batch (the cases share one method); the output and the method."""
    tokenizer, model, processor = model_of(family, attn)
    batch = make_batch(tokenizer, model, processor, [c["text"] for c in cases_], [golden_image(c["image"]) for c in cases_])
    method = sparc_method(cases_[0], record=True)
    length = max(len(c["generated_ids"]) for c in cases_)
    output = generate(batch, GenerationConfig(max_new_tokens=length, eos_token_ids=eos_of(family)), method)
    return batch, output, method


# ---------------------------------------------------------------------------------------------------------------
# golden cases through the library


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family, case", cases())
def test_golden_case_token_for_token(family, case, attn):
    """Prompt ids, image span, generated ids and (SPARC) every step's selected positions, at batch 1. The golden
    paths keep every top-1/top-2 logit gap >= 1.8e-4 and every SPARC ratio >= 1.5e-4 away from tau, against float
    differences of about 1e-6 between attention implementations: all of it is compared exactly."""
    batch, output, method = run_case(family, [case], attn)
    prefill = batch.encode()
    assert output.sequences[0] == case["generated_ids"]
    if "image_span" in case:
        start = int(prefill.image_start[0])
        assert [start, start + int(prefill.image_len[0])] == case["image_span"]
    if method is not None:
        start = int(prefill.image_start[0])
        ours = [[start + j for j in step] for step in method.traces()[0].selections]
        assert ours[: len(case["selected_positions_per_step"])] == case["selected_positions_per_step"]


def test_prompt_ids_are_the_checkpoints_chat_template_with_the_image_run():
    """The prompt is the chat template of one user message [image, text] (default system prompt included) with the
    single <|image_pad|> repeated for the image's merged tokens, exactly as Qwen2VLProcessor builds it."""
    for family in FAMILIES:
        tokenizer, model, processor = model_of(family)
        for case in golden_json(GOLDEN_FILES[family])["cases"]:
            prompt = make_batch(tokenizer, model, processor, [case["text"]], [golden_image(case["image"])]).prompts[0]
            ids = tokenizer(prompt, add_special_tokens=False).input_ids
            pad = model.config.image_token_id
            expanded = [i for i in case["input_ids"] if i != pad]
            assert [i for i in ids if i != pad] == expanded and ids.count(pad) == 1
            assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


@pytest.mark.parametrize("kind", ["vanilla", "sparc_strong", "sparc_sparse"])
@pytest.mark.parametrize("family", FAMILIES)
def test_golden_cases_in_one_batch_of_different_sizes(family, kind):
    """The three golden images (16x16, 12x18, 20x12 patch grids: spans of 64, 54 and 60 tokens) in one left-padded
    batch give each its batch-1 tokens and selections."""
    chosen = [case for case in golden_json(GOLDEN_FILES[family])["cases"] if case["case"] == kind]
    batch, output, method = run_case(family, chosen)
    assert len(set(batch.encode().image_len.tolist())) == 3
    for row, case in enumerate(chosen):
        assert output.sequences[row] == case["generated_ids"], case["image"]
    if method is not None:
        starts = batch.encode().image_start.tolist()
        for row, case in enumerate(chosen):
            ours = [[starts[row] + j - (starts[row] - case["image_span"][0]) for j in step]
                    for step in method.traces()[row].selections]
            assert ours[: len(case["selected_positions_per_step"])] == case["selected_positions_per_step"]


# ---------------------------------------------------------------------------------------------------------------
# golden cases through the runners, as users run them


def expected_texts(family: str, kind: str) -> dict[str, str]:
    """Image stem -> the golden ids decoded as the runner records an answer (special tokens skipped, stripped)."""
    tokenizer, _, _ = model_of(family)
    return {Path(c["image"]).stem: tokenizer.decode(c["generated_ids"], skip_special_tokens=True).strip()
            for c in golden_json(GOLDEN_FILES[family])["cases"] if c["case"] == kind}


def method_args(kind: str, family: str) -> list[str]:
    case = next(c for c in golden_json(GOLDEN_FILES[family])["cases"] if c["case"] == kind)
    if case.get("method") != "sparc":
        return ["--method", "baseline"]  # eval.caption's default method is SPARC
    return ["--method", "sparc", "--method-args", ",".join(f"{k}={v}" for k, v in case["params"].items())]


@pytest.mark.parametrize("batch_size", ["1", "3"])
@pytest.mark.parametrize("kind", ["vanilla", "sparc_strong", "sparc_sparse"])
@pytest.mark.parametrize("family", FAMILIES)
def test_golden_captions_through_eval_caption(family, kind, batch_size, tmp_path):
    """eval.caption with the captioning protocol's defaults (the benchmark prompt, greedy) and 40 new tokens."""
    code = caption.main(["--dataset-type", "folder", "--model-path", str(GOLDEN / FAMILIES[family]),
                         "--image-folder", str(GOLDEN / "images"), "--save-path", str(tmp_path), "--experiment-name",
                         "run", "--max-new-tokens", "40", "--batch-size", batch_size, *method_args(kind, family)])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert {r["image_id"]: r["caption"] for r in records} == expected_texts(family, kind)
    config = json.loads((tmp_path / "run_results.json").read_text())["config"]
    assert config["family"] == family and config["protocol"]["conv_mode"] is None
    assert config["sources"]["min_pixels"] == "checkpoint" and config["protocol"]["max_pixels"] == 50176


@pytest.mark.parametrize("family", FAMILIES)
def test_golden_yes_no_answer_through_eval_vqa(family, tmp_path):
    """The yes/no golden case through eval.vqa (POPE), greedy and 8 new tokens, beside two other images."""
    case = next(c for c in golden_json(GOLDEN_FILES[family])["cases"] if c["case"] == "vanilla_vqa")
    questions = tmp_path / "q.jsonl"
    images = ["img_square.jpg", case["image"], "img_tall.jpg"]
    questions.write_text("".join(json.dumps({"question_id": i, "image": name, "text": case["text"], "label": "no"}) + "\n"
                                 for i, name in enumerate(images)))
    assert vqa.main(["--benchmark", "pope", "--model-path", str(GOLDEN / FAMILIES[family]), "--image-folder",
                     str(GOLDEN / "images"), "--question-file", str(questions), "--save-path", str(tmp_path),
                     "--experiment-name", "pope", "--method", "baseline", "--decoding", "greedy",
                     "--max-new-tokens", "8", "--batch-size", "3"]) == 0
    records = [json.loads(line) for line in (tmp_path / "pope.jsonl").read_text().splitlines()]
    tokenizer, _, _ = model_of(family)
    assert records[1]["text"] == tokenizer.decode(case["generated_ids"], skip_special_tokens=True).strip()


# ---------------------------------------------------------------------------------------------------------------
# every method on both families: batch of different sizes == batch 1


METHODS = {
    "greedy": ("baseline", {}, False, 1),
    "sampling": ("baseline", {}, True, 1),
    "beam": ("baseline", {}, False, 3),
    "sparc": ("sparc", {"tau": 0.3, "alpha": 2.0, "selected_layer": 4}, False, 1),
    "avisc": ("avisc", {}, False, 1),
    "vcd": ("vcd", {}, True, 1),
    "m3id": ("m3id", {}, False, 1),
    "pai_attn": ("pai", {"use_cfg": False}, False, 1),
    "pai_cfg": ("pai", {"use_attn": False}, False, 1),
    "pai": ("pai", {}, False, 1),
    "opera": ("opera", {"beam": 3}, False, 1),
}


def decode_rows(family: str, setting: str, images: list[Image.Image], seeds: list[int]) -> list[list[int]]:
    from eval.methods import create_method
    from llava.decoding import decode

    name, params, sample, beams = METHODS[setting]
    tokenizer, model, processor = model_of(family)
    batch = make_batch(tokenizer, model, processor, ["Please describe this image in detail."] * len(images), images)
    method = create_method(name, "paper", family=family, num_layers=8, **params)
    config = GenerationConfig(max_new_tokens=8, do_sample=sample, eos_token_ids=eos_of(family))
    return decode(batch, config, method, beams, seeded_generators(seeds) if sample else None).sequences


@pytest.mark.parametrize("setting", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_gives_each_row_its_batch_1_tokens(family, setting):
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    together = decode_rows(family, setting, images, [11, 12, 13])
    alone = [decode_rows(family, setting, [image], [seed])[0] for image, seed in zip(images, [11, 12, 13])]
    assert together == alone


@pytest.mark.parametrize("method", ["baseline", "sparc", "avisc", "vcd", "m3id", "pai", "opera"])
@pytest.mark.parametrize("model_path", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_every_method_runs_through_both_runners(model_path, method, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index, (w, h) in enumerate(SIZES[:2]):
        random_image(w, h, index).save(images / f"img{index}.jpg")
    common = ["--model-path", model_path, "--image-folder", str(images), "--method", method, "--max-new-tokens", "4",
              "--save-path", str(tmp_path / "out"), "--batch-size", "2"]
    assert caption.main(["--dataset-type", "folder", "--experiment-name", "cap", *common]) == 0
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "image": f"img{i}.jpg", "text": "Is there a dog?",
                                             "label": "yes"}) + "\n" for i in range(2)))
    assert vqa.main(["--benchmark", "pope", "--question-file", str(questions), "--experiment-name", "pope", *common]) == 0
    for name in ("cap", "pope"):
        results = json.loads((tmp_path / "out" / f"{name}_results.json").read_text())
        assert results["counts"]["answered"] == 2
        sources = results["config"]["sources"]
        assert all("not from a paper" in sources[p] for p in results["config"]["method_params"])


# ---------------------------------------------------------------------------------------------------------------
# inputs


def test_the_image_space_round_trip_is_the_processors_patches():
    """pixel_values keeps the normalised image (3, H, W); cutting it into patches gives exactly the processor's
    pixel_values (each patch holding the frame twice)."""
    from llava.model.families import family_of
    from llava.model.families.qwen2_vl.model import patchify

    tokenizer, model, processor = model_of("qwen2_vl")
    family = family_of(model)
    for size in SIZES:
        image = random_image(*size)
        (pixels,) = family.pixel_values(model, processor, [image]).pixel_values
        out = processor.preprocess([image], return_tensors="pt")
        _, rows, cols = out["image_grid_thw"][0].tolist()
        assert pixels.shape == (3, rows * 14, cols * 14)
        assert torch.equal(patchify(pixels, 14, 2, 2), out["pixel_values"])


def test_vcd_noise_is_added_to_the_image_before_patching():
    """Each patch vector holds the frame twice (temporal patch 2): noise added in image space stays the same in both
    copies, which noise on pixel_values rows would not."""
    from avisc.methods import Vcd
    from avisc.config import VcdConfig
    from llava.generation import DecodingContext
    from llava.model.families import family_of
    from llava.model.families.qwen2_vl.model import patchify

    tokenizer, model, processor = model_of("qwen2_vl")
    batch = make_batch(tokenizer, model, processor, ["q"], [random_image(300, 200)])
    captured = {}
    original = batch.encode

    def encode(images=None, text_only=False):
        if images is not None:
            captured["images"] = images
        return original(images, text_only)

    batch.encode = encode
    context = DecodingContext(batch, family_of(model), original(), seeded_generators([0]))
    Vcd(VcdConfig()).branches(context)
    noised = captured["images"].pixel_values[0]
    assert noised.shape == batch.images.pixel_values[0].shape and not torch.equal(noised, batch.images.pixel_values[0])
    patches = patchify(noised, 14, 2, 2).view(-1, 3, 2, 14 * 14)
    assert torch.equal(patches[:, :, 0], patches[:, :, 1])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_text_only_branch_is_the_prompt_without_the_vision_block(family):
    tokenizer, model, processor = model_of(family)
    batch = make_batch(tokenizer, model, processor, ["Is there a dog?"], [random_image(300, 200)])
    text = batch.encode(text_only=True)
    ids = tokenizer(batch.prompts[0], add_special_tokens=False).input_ids
    block = {model.config.vision_start_token_id, model.config.image_token_id, model.config.vision_end_token_id}
    kept = [i for i in ids if i not in block]
    assert int(text.lengths[0]) == len(kept) == len(ids) - 3 and int(text.image_len[0]) == 0
    embeds = model.model.language_model.embed_tokens(torch.tensor(kept))
    assert torch.equal(text.inputs_embeds[0], embeds)
    assert text.position_ids.dim() == 2 and text.position_ids[0].tolist() == list(range(len(kept)))


@pytest.mark.parametrize("family", FAMILIES)
def test_positions_are_get_rope_index_of_the_padded_batch_and_never_shared_state(family):
    """3-D positions built per sequence and left-padded equal transformers' get_rope_index of the padded batch at
    every real token; the next position of a row is its rope delta + its length; a whole generation (main rows and
    branches) never sets the model's shared rope_deltas."""
    from eval.methods import create_method

    tokenizer, model, processor = model_of(family)
    images = [random_image(w, h, i) for i, (w, h) in enumerate(SIZES)]
    batch = make_batch(tokenizer, model, processor, ["Describe it.", "Is there a dog here?", "What?"], images)
    prefill = batch.encode()
    pad = model.config.image_token_id
    sequences = []
    for prompt, image in zip(batch.prompts, batch.images.pixel_values):
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        count = (image.shape[1] // 28) * (image.shape[2] // 28)
        start = ids.index(pad)
        sequences.append(ids[:start] + [pad] * count + ids[start + 1:])
    length = max(map(len, sequences))
    ids = torch.tensor([[0] * (length - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in sequences])
    grids = torch.tensor([[1, im.shape[1] // 14, im.shape[2] // 14] for im in batch.images.pixel_values])
    expected, deltas = model.model.get_rope_index(ids, mm_token_type_ids=(ids == pad).int(), image_grid_thw=grids,
                                                  attention_mask=mask)
    real = mask.bool()
    assert torch.equal(prefill.position_ids[:, real], expected[:, real])
    assert prefill.next_positions.tolist() == (deltas[:, 0] + mask.sum(dim=1)).tolist()
    model.model.rope_deltas = None
    generate(batch, GenerationConfig(max_new_tokens=3, eos_token_ids=()), create_method("m3id", family=family))
    assert model.model.rope_deltas is None


def test_eos_ids_come_from_generation_config_and_its_sampling_defaults_do_not_apply():
    """The Instruct checkpoints ship do_sample, top_k 1, top_p 0.001, temperature 0.1 and repetition penalty 1.05:
    only their EOS ids are taken (the golden greedy outputs are reproduced above without the rest)."""
    tokenizer, model, _ = model_of("qwen2_vl")
    from llava.model.families import family_of

    assert family_of(model).eos_token_ids(model, tokenizer) == (402, 400)
    assert model.generation_config.do_sample and model.generation_config.repetition_penalty == 1.05
    assert tokenizer.eos_token_id == 402


def test_the_image_processor_is_the_pil_backend_with_or_without_torchvision():
    """Loading always takes transformers' PIL backend of the checkpoint's image processor (no torchvision needed);
    AutoImageProcessor (which picks the fast backend where torchvision is installed) gives bit-equal inputs here."""
    from transformers import AutoImageProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    _, _, processor = model_of("qwen2_vl")
    assert type(processor) is Qwen2VLImageProcessorPil
    auto = AutoImageProcessor.from_pretrained(GOLDEN / FAMILIES["qwen2_vl"])
    image = golden_image("img_tall.jpg")
    ours, theirs = processor.preprocess([image], return_tensors="pt"), auto.preprocess([image], return_tensors="pt")
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    assert torch.equal(ours["image_grid_thw"], theirs["image_grid_thw"])


def test_min_and_max_pixels_are_protocol_values(tmp_path):
    """The checkpoint's bounds by default (source ``checkpoint``); --max-pixels resizes to fewer tokens (source
    ``flag``); on a LLaVA model the flag is refused before loading."""
    images = tmp_path / "images"
    images.mkdir()
    random_image(640, 480).save(images / "a.jpg")
    common = ["--dataset-type", "folder", "--image-folder", str(images), "--max-new-tokens", "2", "--save-path",
              str(tmp_path)]
    assert caption.main(["--model-path", "tiny-qwen2-vl", "--experiment-name", "small", "--max-pixels", "12544",
                         *common]) == 0
    config = json.loads((tmp_path / "small_results.json").read_text())["config"]
    assert config["protocol"]["max_pixels"] == 12544 and config["sources"]["max_pixels"] == "flag"
    assert config["protocol"]["min_pixels"] == 3136 and config["sources"]["min_pixels"] == "checkpoint"
    from eval.files import InputError

    with pytest.raises(InputError, match="--max-pixels: a llava model does not read it"):
        caption.main(["--model-path", "tiny", "--experiment-name", "llava", "--max-pixels", "12544", *common])
    with pytest.raises(InputError, match="min_pixels 9999 is above max_pixels 5000"):
        caption.main(["--model-path", "tiny-qwen2-vl", "--experiment-name", "bad", "--min-pixels", "9999",
                      "--max-pixels", "5000", *common])


# ---------------------------------------------------------------------------------------------------------------
# method defaults on a family no paper covers


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("depth", [8, 28])
def test_every_method_and_preset_resolves_at_any_depth_and_says_it_is_not_from_a_paper(family, depth):
    for name in list_methods():
        spec = get_method(name)
        for preset in spec.presets:
            for benchmark in BENCHMARKS:
                run = resolve_run(benchmark, family, name, preset, num_layers=depth)
                for param in run.params:
                    assert "not from a paper" in run.sources[param], (name, preset, param)
    sparc = resolve_run("coco", family, "sparc", num_layers=depth)
    assert (sparc.params["selected_layer"], sparc.params["end_layer"]) == ((depth * 20) // 32, depth - 1)
    assert resolve_run("coco", family, "pai", num_layers=depth).params["end_layer"] == depth
    assert resolve_run("coco", "llava", "sparc", num_layers=32).params["end_layer"] == 31  # LLaVA: the official values


def test_a_flag_is_a_flag_on_every_family():
    run = resolve_run("coco", "qwen2_vl", "sparc", method_overrides={"tau": 2.0}, num_layers=28)
    assert run.sources["tau"] == "flag" and run.params["tau"] == 2.0


# ---------------------------------------------------------------------------------------------------------------
# the registry, reports, figures


def test_checkpoints_are_recognised_from_their_files(tmp_path):
    from llava.model.builder import inspect_checkpoint

    for family, folder in FAMILIES.items():
        info = inspect_checkpoint(str(GOLDEN / folder))
        assert (info.family, info.num_layers) == (family, 8)
        assert info.settings == {"min_pixels": 3136, "max_pixels": 50176}
    hub = tmp_path / "Qwen2-VL-7B-Instruct"  # the Hub file: text settings at the top, pixel bounds at the top
    hub.mkdir()
    (hub / "config.json").write_text(json.dumps({"model_type": "qwen2_vl", "num_hidden_layers": 28, "vision_config": {}}))
    (hub / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 12845056}))
    info = inspect_checkpoint(str(hub))
    assert (info.family, info.num_layers, info.settings["max_pixels"]) == ("qwen2_vl", 28, 12845056)


def test_synthetic_and_report_names():
    from eval.report import canonical_model
    from llava.model.builder import inspect_checkpoint
    from llava.model.families import parse_synthetic_name

    assert parse_synthetic_name("tiny-qwen2-vl") == ("tiny", "qwen2_vl")
    assert parse_synthetic_name("7B-Qwen2.5-VL") == ("7b", "qwen2_5_vl")
    assert inspect_checkpoint("7b-qwen2-vl").num_layers == 28 and inspect_checkpoint("tiny-qwen2.5-vl").num_layers == 8
    assert canonical_model("Qwen/Qwen2-VL-7B-Instruct") == "Qwen2-VL"
    assert canonical_model("/ckpt/Qwen2.5-VL-7B-Instruct") == "Qwen2.5-VL"
    assert canonical_model("tiny-qwen2-vl") == "tiny-qwen2-vl"  # a random model never passes for the real one


@pytest.mark.parametrize("size", [(640, 480), (2000, 40), (40, 2000), (97, 131), (3000, 3000)])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_geometry_is_the_span_the_model_produces(family, size):
    from eval.figures.common import geometry_for
    from llava.model.families import family_of

    tokenizer, model, processor = model_of(family)
    image = random_image(*size)
    sequence = make_batch(tokenizer, model, processor, ["q"], [image]).encode()
    geometry = geometry_for(model, processor, size)
    assert geometry.num_tokens == int(sequence.image_len[0])
    (view,) = geometry.views
    pixels = family_of(model).pixel_values(model, processor, [image]).pixel_values[0]
    assert (view.rows, view.cols) == (pixels.shape[1] // 28, pixels.shape[2] // 28)
    assert geometry.bounds == (0.0, 0.0, float(size[0]), float(size[1]))


@pytest.mark.parametrize("figure", ["sparc", "avisc"])
def test_the_method_figures_on_a_qwen_image(figure, tmp_path):
    """The SPARC and AvisC figures draw on the merged grid of a Qwen2-VL image (golden checkpoint: its attention is
    sharp enough for SPARC to select)."""
    from eval.figures import avisc as avisc_figure
    from eval.figures import sparc as sparc_figure

    out, data = tmp_path / f"{figure}.png", tmp_path / f"{figure}.json"
    args = ["--model-path", str(GOLDEN / FAMILIES["qwen2_vl"]), "--image-file", str(GOLDEN / "images" / "img_wide.jpg"),
            "--out", str(out), "--json", str(data), "--max-new-tokens", "6"]
    if figure == "sparc":
        args += ["--method-args", "tau=0.3,alpha=2.0,selected_layer=4"]
    assert (sparc_figure if figure == "sparc" else avisc_figure).cli(args) == 0
    assert out.stat().st_size > 10_000
    dump = json.loads(data.read_text())
    assert dump["geometry"]["mode"] == "dynamic" and dump["geometry"]["num_tokens"] == 54
    assert dump["geometry"]["views"][0]["rows"] == 6 and dump["geometry"]["views"][0]["cols"] == 9
    if figure == "sparc":
        assert sum(len(step["selected"]) for step in dump["steps"]) > 0
