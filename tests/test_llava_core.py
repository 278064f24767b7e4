"""Foundation of the ``llava`` fork: templates, image span, preprocessing, image loading and checkpoint loading.

Independent fixtures only: the exact upstream template strings, the official golden ``input_ids`` /
``num_image_tokens`` / pixel hashes, hand-worked anyres geometry, a hand-written PIL + numpy CLIP pipeline,
transformers' own image-feature path and the checkpoint's own safetensors.
"""
from __future__ import annotations

import copy
import hashlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (
    CLIP_MEAN,
    CLIP_STD,
    GOLDEN,
    clip_normalise,
    golden_image,
    golden_image_names,
    golden_json,
    golden_model,
    golden_outputs,
    make_batch,
    random_image,
    synthetic,
)
from llava.constants import IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates, get_conv_template
from llava.batch import PromptBatch
from llava.inputs import Images, Prefill, SequenceInputs, positions_from_mask
from llava.mm_utils import (
    ImageLoadError,
    aspect_mode_of,
    divide_to_patches,
    expand2square,
    get_anyres_image_grid_shape,
    load_image,
    process_images,
    resize_and_pad_image,
    select_best_resolution,
    tokenizer_image_token,
    unpad_image,
)
from llava.model.builder import CheckpointError, load_pretrained_model
from llava.model.families import family_of, get_family

SYSTEM_VICUNA = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SYSTEM_LLAVA = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
LLAVA15 = "tiny-llava-v1.5"
LLAVA16 = "tiny-llava-v1.6-vicuna"


# ================================================================================================================
# conversation templates


@pytest.mark.parametrize(
    "conv_mode, system",
    [("vicuna_v1", SYSTEM_VICUNA), ("llava_v1", SYSTEM_LLAVA)],
)
def test_template_exact_prompt(conv_mode, system):
    expected = f"{system} USER: <image>\nPlease describe this image in detail. ASSISTANT:"
    conv = get_conv_template(conv_mode)
    conv.append_message(conv.roles[0], "<image>\nPlease describe this image in detail.")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == expected
    _, model, _ = golden_model(LLAVA15)
    assert family_of(model).format_prompt(model, "Please describe this image in detail.", conv_mode) == expected


def test_template_two_separator_style_multi_turn():
    conv = get_conv_template("vicuna_v1")
    for message in ("hi", "hello", "more?", None):
        conv.append_message(conv.roles[len(conv.messages) % 2], message)
    assert conv.get_prompt() == f"{SYSTEM_VICUNA} USER: hi ASSISTANT: hello</s>USER: more? ASSISTANT:"


def test_template_copies_are_independent():
    conv = get_conv_template("llava_v1")
    conv.append_message(conv.roles[0], "x")
    assert conv_templates["llava_v1"].messages == []
    assert get_conv_template("llava_v1").messages == []


def test_unknown_conv_mode_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown conv mode 'llava_v9'.*llava_v1.*vicuna_v1"):
        get_conv_template("llava_v9")
    _, model, _ = golden_model(LLAVA15)
    with pytest.raises(ValueError, match="unknown conv mode"):
        family_of(model).format_prompt(model, "q", "nope")


def test_prompt_with_im_start_end_tokens_and_default_template():
    model = SimpleNamespace(config=SimpleNamespace(mm_use_im_start_end=True))
    prompt = get_family("llava").create().format_prompt(model, "Q?", None)  # default template: vicuna_v1 (SPARC's)
    assert prompt == f"{SYSTEM_VICUNA} USER: <im_start><image><im_end>\nQ? ASSISTANT:"


def test_instructblip_prompt_is_the_raw_question():
    assert get_family("instructblip").create().format_prompt(None, "Is there a dog?", "llava_v1") == "Is there a dog?"


# ================================================================================================================
# tokenisation and image span


@pytest.mark.parametrize("conv_mode", ["vicuna_v1", "llava_v1"])
def test_image_placeholder_at_35_with_the_llama2_tokenizer(conv_mode):
    tokenizer, model, _ = golden_model(LLAVA15)
    prompt = family_of(model).format_prompt(model, "Please describe this image in detail.", conv_mode)
    ids = tokenizer_image_token(prompt, tokenizer)
    assert ids.count(IMAGE_TOKEN_INDEX) == 1
    assert ids.index(IMAGE_TOKEN_INDEX) == 35
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize("golden_file", ["sparc_golden.json", "sparc_next_golden.json"])
def test_sparc_golden_input_ids_equal_ours(golden_file):
    data = golden_json(golden_file)
    tokenizer, model, _ = golden_model(data["checkpoint"])
    prompt = family_of(model).format_prompt(model, data["question"], data["conv_mode"])
    ids = tokenizer_image_token(prompt, tokenizer)
    for output in golden_outputs(golden_file):
        assert ids == output["input_ids"], output["image"]
    assert ids.index(IMAGE_TOKEN_INDEX) == data["image_token_start"]


def test_avisc_golden_input_ids_equal_ours():
    data = golden_json("avisc_golden.json")
    tokenizer, model, _ = golden_model(data["checkpoint"])
    prompt = family_of(model).format_prompt(model, data["question"], data["conv_mode"])
    assert tokenizer_image_token(prompt, tokenizer) == data["input_ids"]


def test_tokenizer_image_token_hand_example():
    tokenizer, _, _ = synthetic("llava", 2)
    the, dog, is_, a, cat = tokenizer.convert_tokens_to_ids(["the", "dog", "is", "a", "cat"])
    # each chunk is tokenised alone; only the first chunk's BOS is kept
    assert tokenizer_image_token("the dog <image> is a cat", tokenizer) == [1, the, dog, -200, is_, a, cat]
    assert tokenizer_image_token("<image> the", tokenizer) == [1, -200, the]
    tensor = tokenizer_image_token("the <image> dog", tokenizer, return_tensors="pt")
    assert tensor.dtype == torch.long and tensor.tolist() == [1, the, -200, dog]
    with pytest.raises(ValueError, match="unsupported tensor type"):
        tokenizer_image_token("the <image>", tokenizer, return_tensors="tf")


@pytest.mark.parametrize("conv_mode", ["vicuna_v1", "llava_v1"])
def test_llava15_image_span_is_35_to_610(conv_mode):
    """The span from family.embed, and the embeddings themselves: text embeddings with transformers' own
    ``get_image_features`` output spliced at position 35."""
    tokenizer, model, processor = golden_model(LLAVA15)
    family = family_of(model)
    image = golden_image("img_wide.jpg")
    prompt = family.format_prompt(model, "Please describe this image in detail.", conv_mode)
    pixels = family.pixel_values(model, processor, [image])
    (sequence,) = family.embed(model, tokenizer, [prompt], pixels)
    ids = tokenizer_image_token(prompt, tokenizer)
    assert (sequence.image_start, sequence.image_len) == (35, 576)
    assert sequence.embeds.shape[0] == len(ids) - 1 + 576
    with torch.no_grad():
        features = model.model.get_image_features(
            pixel_values=pixels.pixel_values[0][None], vision_feature_layer=-2, vision_feature_select_strategy="default"
        ).pooler_output[0]
        embed = model.model.language_model.embed_tokens
        expected = torch.cat([embed(torch.tensor(ids[:35])), features, embed(torch.tensor(ids[36:]))])
    torch.testing.assert_close(sequence.embeds, expected, rtol=0, atol=1e-6)


def test_text_only_embedding_drops_the_placeholder():
    tokenizer, model, _ = golden_model(LLAVA15)
    family = family_of(model)
    prompt = family.format_prompt(model, "Is there a dog in the image?", "llava_v1")
    (sequence,) = family.embed(model, tokenizer, [prompt], None)
    ids = [i for i in tokenizer_image_token(prompt, tokenizer) if i != IMAGE_TOKEN_INDEX]
    assert sequence.image_len == 0
    with torch.no_grad():
        torch.testing.assert_close(sequence.embeds, model.model.language_model.embed_tokens(torch.tensor(ids)))


def test_prompt_must_hold_exactly_one_image():
    tokenizer, model, processor = golden_model(LLAVA15)
    family = family_of(model)
    pixels = family.pixel_values(model, processor, [golden_image("img_wide.jpg")])
    with pytest.raises(ValueError, match="exactly one"):
        family.embed(model, tokenizer, ["<image> and <image>"], pixels)
    with pytest.raises(ValueError, match="exactly one"):
        family.embed(model, tokenizer, ["no image here"], pixels)


def test_prefill_left_padding_shifts_the_image_span():
    tokenizer, model, processor = golden_model(LLAVA15)
    batch = make_batch(tokenizer, model, processor, ["Please describe this image in detail.", "Hi?"],
                       [golden_image("img_wide.jpg"), golden_image("img_tall.jpg")])
    prefill = batch.encode()
    lengths = prefill.lengths.tolist()
    pad = lengths[0] - lengths[1]
    assert pad > 0
    assert prefill.image_start.tolist() == [35, 35 + pad]
    assert prefill.image_len.tolist() == [576, 576]
    assert prefill.attention_mask[1, :pad].sum() == 0 and prefill.attention_mask[1, pad:].all()


def _next_spans():
    """One (image, num_image_tokens) per image of the NeXT golden file."""
    spans = {o["image"]: o["num_image_tokens"] for o in golden_outputs("sparc_next_golden.json")}
    return [pytest.param({"image": image, "num_image_tokens": n}, id=image) for image, n in sorted(spans.items())]


@pytest.mark.parametrize("output", _next_spans())
def test_llava_next_span_lengths_equal_golden(output):
    data = golden_json("sparc_next_golden.json")
    tokenizer, model, processor = golden_model(data["checkpoint"])
    family = family_of(model)
    prompt = family.format_prompt(model, data["question"], data["conv_mode"])
    (sequence,) = family.embed(model, tokenizer, [prompt], family.pixel_values(model, processor, [golden_image(output["image"])]))
    assert sequence.image_start == data["image_token_start"] == 35
    assert sequence.image_len == output["num_image_tokens"]
    ids = tokenizer_image_token(prompt, tokenizer)
    assert sequence.embeds.shape[0] == len(ids) - 1 + output["num_image_tokens"]


def test_llava_next_every_golden_output_has_the_same_span_per_image():
    """All cases of the NeXT golden file agree on num_image_tokens per image (the span test above uses the first)."""
    seen: dict[str, int] = {}
    for output in golden_outputs("sparc_next_golden.json"):
        assert seen.setdefault(output["image"], output["num_image_tokens"]) == output["num_image_tokens"]


def test_instructblip_span_is_the_32_queries_first():
    tokenizer, model, processor = synthetic("instructblip", 2)
    family = family_of(model)
    questions = ["Is there a dog?", "Is there a cat in the picture?"]
    images = [random_image(300, 200, 1), random_image(200, 260, 2)]
    sequences = family.embed(model, tokenizer, questions, family.pixel_values(model, processor, images), processor)
    for question, sequence in zip(questions, sequences):
        assert (sequence.image_start, sequence.image_len) == (0, 32)
        with torch.no_grad():
            text = family.embed_tokens(model, torch.tensor(tokenizer(question).input_ids))
        assert sequence.embeds.shape[0] == 32 + text.shape[0]
        torch.testing.assert_close(sequence.embeds[32:], text)
    # the query embeddings depend on the image
    assert not torch.allclose(sequences[0].embeds[:32], sequences[1].embeds[:32])
    text_only = family.embed(model, tokenizer, questions[:1], None, processor)[0]
    assert text_only.image_len == 0 and text_only.embeds.shape[0] == sequences[0].embeds.shape[0] - 32


@pytest.mark.parametrize("words", [5, 126, 127, 208, 670])
def test_the_qformer_reads_the_last_128_bert_tokens_of_the_question(words):
    """LAVIS builds the Q-Former's BERT tokenizer with ``truncation_side="left"`` and calls it with ``truncation=True,
    max_length=128``: a long question keeps its last 126 word pieces between [CLS] and [SEP] there, while the language
    model reads it whole. The expected Q-Former ids are written by hand from the toy vocabulary."""
    tokenizer, model, processor = synthetic("instructblip", 2)
    family = family_of(model)
    vocabulary = ["dog", "cat", "man", "woman", "table", "car", "tree", "sky"]
    question = " ".join(vocabulary[i % len(vocabulary)] for i in range(words))
    ids = processor.qformer_tokenizer.convert_tokens_to_ids(question.split())
    kept = ids[-126:]  # the last 126 words: 128 with [CLS] (2) and [SEP] (3)
    images = family.pixel_values(model, processor, [random_image(300, 200, 1)])
    (sequence,) = family.embed(model, tokenizer, [question], images, processor)
    expected = model.get_image_features(
        torch.stack(images.pixel_values), qformer_input_ids=torch.tensor([[2, *kept, 3]]),
        qformer_attention_mask=torch.ones(1, len(kept) + 2, dtype=torch.long), return_dict=True).pooler_output[0]
    torch.testing.assert_close(sequence.embeds[:32], expected, rtol=0, atol=0)
    assert sequence.embeds.shape[0] == 32 + len(tokenizer(question).input_ids)  # the language model: all of it


# ================================================================================================================
# inputs: Prefill / SequenceInputs / PromptBatch


def test_prefill_from_sequences_hand_example():
    a = SequenceInputs(torch.arange(8.0).view(4, 2), image_start=1, image_len=2)
    b = SequenceInputs(torch.arange(4.0).view(2, 2) + 100, image_start=0, image_len=1)
    prefill = Prefill.from_sequences([a, b])
    assert prefill.inputs_embeds.shape == (2, 4, 2)
    assert prefill.attention_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert prefill.position_ids.tolist() == [[0, 1, 2, 3], [1, 1, 0, 1]]
    assert prefill.image_start.tolist() == [1, 2] and prefill.image_len.tolist() == [2, 1]
    assert prefill.inputs_embeds[1, :2].abs().sum() == 0
    torch.testing.assert_close(prefill.inputs_embeds[1, 2:], b.embeds)
    back = prefill.to_sequences()
    assert [(s.image_start, s.image_len) for s in back] == [(1, 2), (0, 1)]
    torch.testing.assert_close(back[1].embeds, b.embeds)
    assert positions_from_mask(torch.tensor([[0, 1, 1, 1]])).tolist() == [[1, 0, 1, 2]]


def test_input_validation_errors():
    with pytest.raises(ValueError, match="image span"):
        SequenceInputs(torch.zeros(3, 2), image_start=2, image_len=2)
    with pytest.raises(ValueError, match="no sequences"):
        Prefill.from_sequences([])
    tokenizer, model, processor = golden_model(LLAVA15)
    with pytest.raises(ValueError, match="2 prompts but 1 images"):
        PromptBatch(model, tokenizer, processor, ["a", "b"], Images([torch.zeros(3, 4, 4)], [(4, 4)]))


# ================================================================================================================
# preprocessing


@pytest.mark.parametrize("name", golden_image_names())
def test_pad_is_expand_to_square_with_mean_colour_then_clip(name):
    _, _, processor = golden_model(LLAVA15)
    image = golden_image(name)
    (pixels,) = process_images([image], processor, "pad")
    # by hand: int(mean * 255) = (122, 116, 104), centred paste, bicubic to 336, /255, normalise
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), (122, 116, 104))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    expected = clip_normalise(canvas.resize((336, 336), Image.BICUBIC))
    assert pixels.shape == (3, 336, 336) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels.double(), expected, rtol=0, atol=1e-5)


def test_pad_region_holds_the_normalised_mean_colour():
    _, _, processor = golden_model(LLAVA15)
    image = golden_image("img_wide.jpg")  # 480x320: 80 rows of padding above and below, 56 after resizing to 336
    assert image.size == (480, 320)
    (pixels,) = process_images([image], processor, "pad")
    background = torch.tensor([(c / 255 - m) / s for c, m, s in zip((122, 116, 104), CLIP_MEAN, CLIP_STD)])
    band = pixels[:, :50, :].double()  # well inside the padding (bicubic support stays away from the edge)
    torch.testing.assert_close(band, background[:, None, None].expand_as(band), rtol=0, atol=1e-5)
    torch.testing.assert_close(pixels[:, -50:, :].double(), background[:, None, None].expand(3, 50, 336), rtol=0, atol=1e-5)
    assert (pixels[:, 100:236, :].double() - background[:, None, None]).abs().max() > 0.1  # the image itself


def test_expand2square_hand_example():
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    square = expand2square(image, (1, 2, 3))
    assert square.size == (4, 4)
    assert square.getpixel((0, 0)) == (1, 2, 3) and square.getpixel((3, 3)) == (1, 2, 3)
    assert square.getpixel((0, 1)) == (255, 0, 0) and square.getpixel((3, 2)) == (255, 0, 0)
    assert expand2square(image.resize((3, 3)), (0, 0, 0)).size == (3, 3)


@pytest.mark.parametrize("name", golden_image_names())
def test_crop_is_resize_shortest_side_then_center_crop(name):
    _, _, processor = golden_model(LLAVA15)
    image = golden_image(name)
    (pixels,) = process_images([image], processor, "crop")
    width, height = image.size
    if width < height:
        size = (336, int(336 * height / width))
    else:
        size = (int(336 * width / height), 336)
    resized = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - 336) // 2, (size[1] - 336) // 2
    expected = clip_normalise(resized.crop((left, top, left + 336, top + 336)))
    torch.testing.assert_close(pixels.double(), expected, rtol=0, atol=1e-5)


def test_aspect_modes():
    assert aspect_mode_of(None) == "crop"
    assert aspect_mode_of("square") == "crop"
    assert aspect_mode_of("pad") == "pad"
    assert aspect_mode_of(SimpleNamespace(image_aspect_ratio="anyres")) == "anyres"
    with pytest.raises(ValueError, match="unknown image aspect mode"):
        aspect_mode_of("stretch")
    with pytest.raises(ValueError, match="image_grid_pinpoints"):
        process_images([random_image(40, 30)], golden_model(LLAVA15)[2], "anyres")


@pytest.mark.parametrize(
    "size, best",
    [
        ((480, 320), (672, 336)),   # wide: (672,336) keeps all 153600 pixels with the least waste
        ((240, 400), (336, 672)),   # tall
        ((336, 336), (336, 672)),   # square: tie between (336,672) and (672,336), the first wins (strict <)
        ((100, 50), (336, 672)),    # upscaled: all keep 5000 pixels; equal waste for the first two, first wins
        ((1000, 1000), (672, 672)), # large square: 672x672 keeps the most
        ((2000, 500), (1008, 336)), # very wide
        ((500, 2000), (336, 1008)), # very tall
    ],
)
def test_select_best_resolution_hand_examples(size, best):
    assert select_best_resolution(size, [tuple(p) for p in PINPOINTS]) == best


def test_anyres_grid_shape():
    assert get_anyres_image_grid_shape((480, 320), PINPOINTS, 336) == (2, 1)
    assert get_anyres_image_grid_shape((240, 400), PINPOINTS, 336) == (1, 2)
    assert get_anyres_image_grid_shape((1000, 1000), str(PINPOINTS), 336) == (2, 2)


def test_resize_and_pad_places_the_image_centred_on_black():
    image = Image.new("RGB", (100, 50), (200, 10, 20))
    # target (336, 672): scale_w 3.36 < scale_h 13.44 -> 336 x ceil(168) = 168, pasted at y = (672 - 168) // 2 = 252
    padded = resize_and_pad_image(image, (336, 672))
    assert padded.size == (336, 672)
    pixels = torch.from_numpy(np.asarray(padded).copy())
    assert pixels[:252].sum() == 0 and pixels[420:].sum() == 0
    assert (pixels[252:420] == torch.tensor([200, 10, 20], dtype=torch.uint8)).all()
    # target (672, 336) for a tall image: scale_h < scale_w -> ceil(50 * 336 / 100) = 168 wide, x = 252
    tall = resize_and_pad_image(Image.new("RGB", (50, 100), (5, 6, 7)), (672, 336))
    pixels = torch.from_numpy(np.asarray(tall).copy())
    assert pixels[:, :252].sum() == 0 and pixels[:, 420:].sum() == 0
    assert (pixels[:, 252:420] == torch.tensor([5, 6, 7], dtype=torch.uint8)).all()


def test_divide_to_patches_row_by_row():
    image = Image.new("RGB", (4, 4))
    for i, colour in enumerate([(1, 0, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0)]):
        image.paste(colour, ((i % 2) * 2, (i // 2) * 2, (i % 2) * 2 + 2, (i // 2) * 2 + 2))
    patches = divide_to_patches(image, 2)
    assert [p.size for p in patches] == [(2, 2)] * 4
    assert [p.getpixel((0, 0))[0] for p in patches] == [1, 2, 3, 4]


def test_unpad_image_hand_examples():
    tensor = torch.arange(24).view(1, 6, 4)
    # original 4x3 (w x h) is wider than 4x6: rows padded; new_height = int(3 * 4 / 4) = 3, padding (6 - 3) // 2 = 1
    # upstream keeps rows padding .. H - padding, i.e. 4 rows here (the odd remainder stays)
    assert unpad_image(tensor, (4, 3)).tolist() == tensor[:, 1:5, :].tolist()
    # original 2x6 is taller than 4x6: columns padded; new_width = int(2 * 6 / 6) = 2, padding 1
    assert unpad_image(tensor, (2, 6)).tolist() == tensor[:, :, 1:3].tolist()
    # same aspect: nothing removed
    assert unpad_image(tensor, (2, 3)).tolist() == tensor.tolist()


@pytest.mark.parametrize("name", golden_image_names())
def test_anyres_tiles_by_hand(name):
    _, _, processor = golden_model(LLAVA15)
    image = golden_image(name)
    (pixels,) = process_images([image], processor, "anyres", PINPOINTS)
    best = select_best_resolution(image.size, [tuple(p) for p in PINPOINTS])
    columns, rows = best[0] // 336, best[1] // 336
    assert pixels.shape == (1 + columns * rows, 3, 336, 336)
    # base: the whole image squashed to 336x336
    torch.testing.assert_close(pixels[0].double(), clip_normalise(image.resize((336, 336), Image.BICUBIC)), rtol=0, atol=1e-5)
    # tiles: the image resized to fit ``best`` keeping its aspect ratio, centred on black, cut row by row
    width, height = image.size
    scale = min(best[0] / width, best[1] / height)
    new = (min(math.ceil(width * scale), best[0]), min(math.ceil(height * scale), best[1]))
    canvas = Image.new("RGB", best, (0, 0, 0))
    canvas.paste(image.resize(new), ((best[0] - new[0]) // 2, (best[1] - new[1]) // 2))
    for index in range(columns * rows):
        left, top = (index % columns) * 336, (index // columns) * 336
        expected = clip_normalise(canvas.crop((left, top, left + 336, top + 336)))
        torch.testing.assert_close(pixels[1 + index].double(), expected, rtol=0, atol=1e-5)


def test_llava_family_default_modes():
    tokenizer, model, processor = golden_model(LLAVA15)
    image = golden_image("img_tall.jpg")
    family = family_of(model)
    assert torch.equal(family.pixel_values(model, processor, [image]).pixel_values[0],
                       process_images([image], processor, "pad")[0])
    assert torch.equal(family.pixel_values(model, processor, [image], family.preprocessing(model, processor, "crop")).pixel_values[0],
                       process_images([image], processor, "crop")[0])
    _, next_model, next_processor = golden_model(LLAVA16)
    images = family_of(next_model).pixel_values(next_model, next_processor, [image])
    assert images.pixel_values[0].shape == (3, 3, 336, 336) and images.sizes == [(240, 400)]


@pytest.mark.parametrize("golden_file", ["sparc_golden.json", "sparc_next_golden.json"])
def test_decoded_pixels_match_the_golden_hashes(golden_file):
    hashes = {o["image"]: o["image_rgb_sha256"] for o in golden_outputs(golden_file) if "image_rgb_sha256" in o}
    assert hashes
    for name, digest in hashes.items():
        assert hashlib.sha256(load_image(GOLDEN / "images" / name).tobytes()).hexdigest() == digest, name


# ================================================================================================================
# load_image errors


def test_load_image_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    data = (GOLDEN / "images" / "img_wide.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (3, 4, 5)).save(tiny)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    for path in (missing, text, truncated, tiny, empty, folder):
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert str(path) in str(info.value), path
    assert issubclass(ImageLoadError, ValueError)
    big = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(big)
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(big, max_pixels=199)
    assert str(big) in str(info.value)
    assert load_image(big, max_pixels=200).size == (20, 10)


def test_load_image_converts_to_rgb(tmp_path):
    Image.new("L", (4, 3), 7).save(tmp_path / "gray.png")
    Image.new("RGBA", (4, 3), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    gray = load_image(tmp_path / "gray.png")
    assert gray.mode == "RGB" and gray.size == (4, 3) and gray.getpixel((0, 0)) == (7, 7, 7)
    assert load_image(str(tmp_path / "alpha.png")).mode == "RGB"


# ================================================================================================================
# checkpoint loading


def _safetensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("checkpoint, model_class", [(LLAVA15, "LlavaForConditionalGeneration"),
                                                     (LLAVA16, "LlavaNextForConditionalGeneration")])
def test_original_checkpoint_loads_exactly(checkpoint, model_class):
    tokenizer, model, processor = golden_model(checkpoint)
    assert type(model).__name__ == model_class
    assert model.lm_head.weight.shape == (32000, 64)  # not resized for an <image> token
    assert model.model.language_model.embed_tokens.weight.shape[0] == 32000
    assert model.config.output_vocab_size == 32000
    # the CLIP tower: every weight from vision_tower/model.safetensors
    tower = _safetensors(GOLDEN / checkpoint / "vision_tower" / "model.safetensors")
    state = model.model.vision_tower.state_dict()  # transformers 5 drops the "vision_model." prefix
    state = {k if k.startswith("vision_model.") else f"vision_model.{k}": v for k, v in state.items()}
    assert set(tower) == set(state)
    for key, value in tower.items():
        assert torch.equal(state[key], value), key
    # the language model and projector: spot checks against the checkpoint's own tensors
    weights = _safetensors(GOLDEN / checkpoint / "model.safetensors")
    lm = model.model.language_model
    pairs = {
        "lm_head.weight": model.lm_head.weight,
        "model.embed_tokens.weight": lm.embed_tokens.weight,
        "model.layers.0.self_attn.q_proj.weight": lm.layers[0].self_attn.q_proj.weight,
        "model.layers.20.self_attn.v_proj.weight": lm.layers[20].self_attn.v_proj.weight,
        "model.layers.31.mlp.down_proj.weight": lm.layers[31].mlp.down_proj.weight,
        "model.layers.7.input_layernorm.weight": lm.layers[7].input_layernorm.weight,
        "model.norm.weight": lm.norm.weight,
        "model.mm_projector.0.weight": model.model.multi_modal_projector.linear_1.weight,
        "model.mm_projector.0.bias": model.model.multi_modal_projector.linear_1.bias,
        "model.mm_projector.2.weight": model.model.multi_modal_projector.linear_2.weight,
        "model.mm_projector.2.bias": model.model.multi_modal_projector.linear_2.bias,
    }
    if "model.image_newline" in weights:
        pairs["model.image_newline"] = model.model.image_newline
    for key, parameter in pairs.items():
        assert torch.equal(parameter, weights[key]), key
    # settings carried over from the original config
    assert model.config.vision_feature_layer == -2
    assert model.config.vision_feature_select_strategy == "default"
    assert processor.crop_size["height"] == 336 and tokenizer.bos_token_id == 1 and tokenizer.eos_token_id == 2


def test_attention_defaults_eager_on_cpu_and_sdpa_on_request():
    _, model, _ = golden_model(LLAVA15)
    assert model.config.text_config._attn_implementation == "llava_hooked_eager"
    assert model.config.vision_config._attn_implementation == "eager"
    _, sdpa_model, _ = golden_model(LLAVA15, "sdpa")
    assert sdpa_model.config.text_config._attn_implementation == "llava_hooked_sdpa"
    with pytest.raises(ValueError, match="unknown attention implementation"):
        load_pretrained_model(GOLDEN / LLAVA15, device_map="cpu", dtype=torch.float32, attn_implementation="flash")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_pretrained_model(tmp_path, device_map="cpu")
    with pytest.raises(CheckpointError, match="model_base"):
        load_pretrained_model(GOLDEN / LLAVA15, model_base="base", device_map="cpu")


def _greedy(tokenizer, model, processor, questions, images, n=6):
    from llava.generation import GenerationConfig, generate

    batch = make_batch(tokenizer, model, processor, questions, images, "llava_v1")
    return generate(batch, GenerationConfig(max_new_tokens=n)).sequences


@pytest.mark.parametrize("family", ["llava", "llava_next"])
def test_llava_hf_style_checkpoint_round_trip(tmp_path, family):
    tokenizer, model, processor = synthetic(family, 2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    tokenizer2, model2, processor2, _ = load_pretrained_model(tmp_path, device_map="cpu", dtype=torch.float32)
    assert type(model2) is type(model)
    assert model2.config.text_config._attn_implementation == "llava_hooked_eager"
    assert model2.config.image_aspect_ratio == model.config.image_aspect_ratio
    state, state2 = model.state_dict(), model2.state_dict()
    assert set(state) == set(state2) and all(torch.equal(state[k], state2[k]) for k in state)
    questions, images = ["Is there a dog?", "Describe this image."], [random_image(300, 200, 3), random_image(220, 330, 4)]
    assert _greedy(tokenizer2, model2, processor2, questions, images) == _greedy(tokenizer, model, processor, questions, images)


def test_instructblip_checkpoint_round_trip(tmp_path):
    tokenizer, model, processor = synthetic("instructblip", 2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    processor.image_processor.save_pretrained(tmp_path)
    processor.qformer_tokenizer.save_pretrained(tmp_path / "qformer_tokenizer")
    tokenizer2, model2, processor2, _ = load_pretrained_model(tmp_path, device_map="cpu", dtype=torch.float32)
    assert type(model2).__name__ == "InstructBlipForConditionalGeneration"
    assert type(processor2).__name__ == "InstructBlipProcessor"
    state, state2 = model.state_dict(), model2.state_dict()
    assert set(state) == set(state2) and all(torch.equal(state[k], state2[k]) for k in state)
    questions, images = ["is there a dog?", "describe this image ."], [random_image(300, 200, 3), random_image(220, 330, 4)]
    assert _greedy(tokenizer2, model2, processor2, questions, images) == _greedy(tokenizer, model, processor, questions, images)


def test_instructblip_round_trip_keeps_the_qformer_tokenisation(tmp_path):
    """The Q-Former sees the question: a saved and reloaded InstructBLIP must tokenise it the same way.

    Fails today: ``toy_qformer_tokenizer`` (llava/model/synthetic.py) builds a BERT tokenizer with a lower-cased
    vocabulary but no lower-casing normaliser, while ``BertTokenizerFast`` saves ``do_lower_case=True`` and lower-cases
    on reload, so "Is" is [UNK] before the round trip and "is" after it, and the generated tokens differ.
    """
    tokenizer, model, processor = synthetic("instructblip", 2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    processor.image_processor.save_pretrained(tmp_path)
    processor.qformer_tokenizer.save_pretrained(tmp_path / "qformer_tokenizer")
    tokenizer2, model2, processor2, _ = load_pretrained_model(tmp_path, device_map="cpu", dtype=torch.float32)
    question = "Is there a dog in the image?"
    assert processor2.qformer_tokenizer(question).input_ids == processor.qformer_tokenizer(question).input_ids
    images = [random_image(300, 200, 3)]
    assert _greedy(tokenizer2, model2, processor2, [question], images) == _greedy(tokenizer, model, processor, [question], images)


def test_extra_vocabulary_rows_are_never_generated():
    """llava-hf checkpoints append rows to the vocabulary (``<image>``, padding to a multiple of 64) that the original
    model never had; their logits are dropped, so greedy decoding is that of the original 32000-row model."""
    from llava.model.prepare import prepare_model
    from llava.model.toy_tokenizers import toy_tokenizer

    tokenizer, model, processor = synthetic("llava", 2)
    questions, images = ["is there a dog ?"], [random_image(300, 200, 3)]
    expected = _greedy(tokenizer, model, processor, questions, images)
    grown = copy.deepcopy(model)
    grown.resize_token_embeddings(32064)
    with torch.no_grad():  # make every extra row the most likely token by far
        grown.lm_head.weight[32000:] = grown.lm_head.weight[expected[0][0]] * 50
    hf_tokenizer = toy_tokenizer()
    hf_tokenizer.add_tokens(["<image>"], special_tokens=True)
    prepare_model(grown, hf_tokenizer)
    assert grown.config.output_vocab_size == 32000 and grown.lm_head.weight.shape[0] == 32064
    assert _greedy(hf_tokenizer, grown, processor, questions, images) == expected


@pytest.mark.parametrize("text", [" Please describe this image.", "  Is there a dog?", "\nPlease describe this image.",
                                  "Please describe", " \nIs it?", "USER: ", " ASSISTANT:", "a  b   c", " ", "x y"])
def test_tokenizer_keeps_the_leading_space_as_the_checkpoint_pipeline(golden_dir, text):
    """``load_pretrained_model``'s tokenizer tokenises every text as the checkpoint's own ``tokenizer.json`` pipeline
    (Prepend "▁", Replace " " -> "▁"), which is what transformers 4.x did: a leading space keeps its lone "▁"
    (transformers 5's rebuilt Metaspace drops it)."""
    from tokenizers import Tokenizer

    tokenizer, _, _ = golden_model("tiny-llava-v1.5")
    reference = Tokenizer.from_file(str(golden_dir / "tiny-llava-v1.5" / "tokenizer.json"))
    assert tokenizer(text, add_special_tokens=False).input_ids == reference.encode(text, add_special_tokens=False).ids
    if text.startswith(" P"):
        assert tokenizer(text, add_special_tokens=False).input_ids[:2] == [29871, 3529]


@pytest.mark.parametrize("name", ["tiny", "tiny-next", "tiny-instructblip"])
def test_a_random_model_answers_each_image_differently(golden_dir, name):
    """The tiny models stand in for real ones in trials and tests of the image paths (AvisC's masks, VCD's noise,
    M3ID's text branch), so what they generate must depend on the image: the first token's logits for two images
    differ as much as for two prompts."""
    from llava.generation import GenerationConfig, generate
    from llava.model.builder import load_model

    loaded = load_model(name, "cpu", "float32", "eager")
    family, model = loaded.family, loaded.model
    images = [Image.open(golden_dir / "images" / f).convert("RGB") for f in ("img_wide.jpg", "img_tall.jpg")]
    prompt = family.format_prompt(model, "Describe this image.", None)
    batch = PromptBatch(model, loaded.tokenizer, loaded.image_processor, [prompt] * 2,
                        family.pixel_values(model, loaded.image_processor, images))
    scores: list[torch.Tensor] = []
    output = generate(batch, GenerationConfig(max_new_tokens=8),
                      step_callback=lambda step, logits, chosen: scores.append(logits.clone()))
    first = scores[0]
    assert (first[0] - first[1]).abs().max() > 0.05 * first.abs().max()
    assert output.sequences[0] != output.sequences[1]
