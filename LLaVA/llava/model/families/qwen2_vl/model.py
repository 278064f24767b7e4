"""Qwen2-VL and Qwen2.5-VL on transformers' ``Qwen2VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``.

- **Loading**: ``AutoTokenizer`` (with the checkpoint's chat template) and the checkpoint's image processor through
  transformers' PIL backend (``Qwen2VLImageProcessorPil``), whether torchvision is installed or not, so every install
  gives the same inputs (``Qwen2VLProcessor`` itself needs torchvision for its video part, which images never use).
- **Prompt**: the checkpoint's chat template applied to one user message ``[image, text]`` with the generation
  prompt (so the default system prompt is there); its single ``<|image_pad|>`` stands for the image's tokens.
- **Images**: the processor resizes each image to multiples of 28 px within ``min_pixels .. max_pixels``
  (``smart_resize``), rescales and normalises it; :meth:`Qwen2VLFamily.pixel_values` keeps that normalised image
  ``(3, H, W)`` (image space: VCD's noise goes there, before patching), and :meth:`~Qwen2VLFamily.embed` cuts it
  into 14 px patches, each holding the frame twice (temporal patch 2), exactly as the processor does, for the
  vision tower. Every 2x2 patches become one token: the image span is the ``<|image_pad|>`` run of
  ``H/28 * W/28`` tokens, row by row over the image.
- **Positions**: M-RoPE, 3-D: ``get_rope_index`` of each sequence alone (image tokens at their temporal / height /
  width grid position, text tokens counting on from the largest), built per branch and per row; decode steps go on
  from the largest position + 1. The model's shared ``rope_deltas`` state is never used (it would hand one branch's
  positions to another).
- **Decoding**: the benchmark's protocol; only the EOS ids come from the checkpoint's ``generation_config`` (the
  Instruct checkpoints' sampling defaults and repetition penalty are not applied).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from llava.geometry import TokenGeometry, grid_geometry
from llava.inputs import Images, SequenceInputs
from llava.mm_utils import Preprocessing, to_rgb
from llava.model.families import read_json_file
from llava.model.families.base import ModelFamily, build_random
from llava.model.loading import CheckpointError
from llava.model.toy_tokenizers import CLIP_MEAN, CLIP_STD, WORDS, word_vocabulary

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""Qwen2's special tokens, in the order of the real vocabulary (they follow the BPE tokens)."""
TOY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The prompt format of the Instruct checkpoints (default system prompt, the image block before the text), for the
random models' tokenizer; real checkpoints bring their own template."""
TOY_WORDS = ("system", "You", "are", "helpful", "assistant", "user", "Please", "Is", "in", "image")


def toy_qwen_tokenizer(num_tokens: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of ``num_tokens`` ids: a few words, filler, then Qwen2's special tokens (split out of
    any text, as the real tokenizer does), with the Instruct chat template."""
    vocab = word_vocabulary(["<unk>", *TOY_WORDS, *WORDS], num_tokens - len(SPECIAL_TOKENS))
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<unk>")
    tokenizer.chat_template = TOY_CHAT_TEMPLATE
    return tokenizer


def patchify(image: torch.Tensor, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """``(3, H, W)`` -> the processor's flattened patches ``(H/patch * W/patch, 3 * temporal * patch * patch)``:
    2x2-merge blocks row by row, the patches of a block row by row, each patch holding the frame ``temporal`` times
    (``Qwen2VLImageProcessorPil.patchify``)."""
    channels, height, width = image.shape
    rows, cols = height // patch, width // patch
    blocks = image.reshape(channels, rows // merge, merge, patch, cols // merge, merge, patch)
    blocks = blocks.permute(1, 4, 2, 5, 0, 3, 6)[:, :, :, :, :, None]  # (R/m, C/m, m, m, C, 1, P, P)
    blocks = blocks.expand(*blocks.shape[:5], temporal, patch, patch)
    return blocks.reshape(rows * cols, channels * temporal * patch * patch)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch: int, merge: int, temporal: int) -> torch.Tensor:
    """The inverse of :func:`patchify` for one image of ``grid = (rows, cols)`` patches (its first frame)."""
    rows, cols = grid
    channels = patches.shape[1] // (temporal * patch * patch)
    blocks = patches.reshape(rows // merge, cols // merge, merge, merge, channels, temporal, patch, patch)[:, :, :, :, :, 0]
    return blocks.permute(4, 0, 2, 5, 1, 3, 6).reshape(channels, rows * patch, cols * patch)


class Qwen2VLFamily(ModelFamily):
    """Qwen2-VL: the merged vision tokens spliced at the ``<|image_pad|>`` run, 3-D positions."""

    name = "qwen2_vl"
    model_class: type = Qwen2VLForConditionalGeneration
    config_class: type = Qwen2VLConfig

    # -- loading ---------------------------------------------------------------------------------------------

    def load_tokenizer(self, model_path: str) -> Any:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        if tokenizer.chat_template is None:  # older layouts keep it beside the processor
            template = (read_json_file(model_path, "chat_template.json") or {}).get("chat_template")
            if template is None:
                raise CheckpointError(f"{model_path}: no chat template (tokenizer_config.json, chat_template.jinja or "
                                      "chat_template.json): a Qwen2-VL prompt is built with the checkpoint's template")
            tokenizer.chat_template = template
        return tokenizer

    def load(self, model_path: str, raw: Mapping[str, Any], tokenizer: Any, dtype: torch.dtype, device_map: Any,
             vision_tower: str | None = None) -> tuple[torch.nn.Module, Any]:
        if vision_tower is not None:
            raise CheckpointError("--vision-tower is for original LLaVA checkpoints; a Qwen2-VL checkpoint holds its tower")
        model = self.model_class.from_pretrained(model_path, dtype=dtype, device_map=device_map)
        return model, Qwen2VLImageProcessorPil.from_pretrained(model_path)

    def build_synthetic(self, shape: str, tokenizer: Any, seed: int, dtype: torch.dtype, device: str | torch.device,
                        num_layers: int | None = None) -> tuple[Any, torch.nn.Module, Any]:
        shapes = self.spec.shapes[shape]
        text = dict(shapes["text"])
        vocab_size = text.pop("vocab_size")
        if tokenizer is None:
            tokenizer = toy_qwen_tokenizer(min(vocab_size, 151_657))
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": text.pop("mrope_section")}
        text.update(vocab_size=vocab_size, rope_parameters=rope, max_position_embeddings=32768, rms_norm_eps=1e-6,
                    bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
        if num_layers:
            text["num_hidden_layers"] = num_layers
        config = self.config_class(
            text_config=text, vision_config=self.vision_config(shapes["vision"], text["hidden_size"]),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=False,
        )
        model = build_random(self.model_class, config, seed, dtype, device)
        model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
        processor = Qwen2VLImageProcessorPil(min_pixels=shapes["min_pixels"], max_pixels=shapes["max_pixels"],
                                             image_mean=CLIP_MEAN, image_std=CLIP_STD)
        return tokenizer, model, processor

    def vision_config(self, shape: Mapping[str, Any], text_hidden: int) -> dict[str, Any]:
        """Qwen2-VL's ViT: ``hidden_size`` is its output width (the language model's)."""
        return dict(shape, hidden_size=text_hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                    hidden_act="quick_gelu", initializer_range=0.2)

    # -- the language model ----------------------------------------------------------------------------------

    def decoder(self, model: Any) -> torch.nn.Module:
        return model.model.language_model

    def lm_head(self, model: Any) -> torch.nn.Module:
        return model.lm_head

    def eos_token_ids(self, model: Any, tokenizer: Any) -> tuple[int, ...]:
        """The checkpoint's ``generation_config`` EOS ids (``<|im_end|>`` and ``<|endoftext|>``), else the
        tokenizer's."""
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            return super().eos_token_ids(model, tokenizer)
        return tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)

    # -- prompts and images ----------------------------------------------------------------------------------

    def format_prompt(self, model: Any, question: str, conv_mode: str | None, tokenizer: Any = None) -> str:
        if conv_mode is not None:
            raise ValueError(f"{self.spec.display} builds its prompt with the checkpoint's chat template, not a "
                             f"conversation template ({conv_mode!r})")
        if tokenizer is None:
            raise ValueError(f"{self.spec.display} needs the tokenizer (its chat template) to build a prompt")
        message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        return tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=True)

    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None,
                      **settings: Any) -> Preprocessing:
        if aspect is not None:
            raise ValueError(f"--image-aspect {aspect}: a {self.spec.display} model resizes each image to its own grid")
        unknown = sorted(set(settings) - set(self.spec.image_settings))
        if unknown:
            raise ValueError(f"a {self.spec.display} model has no image setting {', '.join(unknown)}")
        size = image_processor.size
        min_pixels = settings.get("min_pixels") or size["shortest_edge"]
        max_pixels = settings.get("max_pixels") or size["longest_edge"]
        factor = image_processor.patch_size * image_processor.merge_size
        return Preprocessing("dynamic", factor, min_pixels=int(min_pixels), max_pixels=int(max_pixels))

    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image],
                     preprocessing: Preprocessing | None = None) -> Images:
        preprocessing = preprocessing or self.preprocessing(model, image_processor)
        size = {"shortest_edge": preprocessing.min_pixels, "longest_edge": preprocessing.max_pixels}
        shape = self.patch_shape(image_processor)
        pixels = []
        for image in images:
            out = image_processor.preprocess([to_rgb(image)], size=size, return_tensors="pt")
            _, rows, cols = out["image_grid_thw"][0].tolist()
            pixels.append(unpatchify(out["pixel_values"], (rows, cols), *shape))
        return Images(pixels, [image.size for image in images])

    @staticmethod
    def patch_shape(image_processor: Any) -> tuple[int, int, int]:
        """``(patch, merge, temporal)`` sizes of the processor (the vision tower's)."""
        return image_processor.patch_size, image_processor.merge_size, image_processor.temporal_patch_size

    def image_features(self, model: Any, image: torch.Tensor, image_processor: Any) -> torch.Tensor:
        """The merged vision tokens ``(H/28 * W/28, D)`` of one normalised image ``(3, H, W)``, encoded alone (its
        features do not depend on the batch)."""
        patch, merge, temporal = self.patch_shape(image_processor)
        grid = torch.tensor([[1, image.shape[1] // patch, image.shape[2] // patch]], device=image.device)
        visual = model.model.visual
        pixels = patchify(image, patch, merge, temporal).to(next(visual.parameters()).device)
        return model.model.get_image_features(pixels, grid.to(pixels.device)).pooler_output[0]

    def special_ids(self, model: Any) -> tuple[int, int, int]:
        """``(vision_start, image_pad, vision_end)`` token ids."""
        config = model.config
        return config.vision_start_token_id, config.image_token_id, config.vision_end_token_id

    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        if images is not None and len(images.pixel_values) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(images.pixel_values)} images")
        start_id, pad_id, end_id = self.special_ids(model)
        sequences = []
        for row, prompt in enumerate(prompts):
            ids = tokenizer(prompt, add_special_tokens=False).input_ids
            if ids.count(pad_id) != 1:
                raise ValueError(f"the prompt must hold exactly one <|image_pad|>: {prompt!r}")
            if images is None:  # text only: the vision block removed, plain positions
                text = [i for i in ids if i not in (start_id, pad_id, end_id)]
                sequences.append(SequenceInputs(self.embed_tokens(model, torch.tensor(text)), 0, 0))
                continue
            features = self.image_features(model, images.pixel_values[row], image_processor)
            start = ids.index(pad_id)
            expanded = ids[:start] + [pad_id] * features.shape[0] + ids[start + 1:]
            embeds = self.embed_tokens(model, torch.tensor(expanded))
            embeds[start : start + features.shape[0]] = features.to(embeds.device, embeds.dtype)
            positions = self.positions(model, torch.tensor(expanded), pad_id, features.shape[0], images.pixel_values[row],
                                       image_processor)
            sequences.append(SequenceInputs(embeds, start, features.shape[0], positions.to(embeds.device)))
        return sequences

    def positions(self, model: Any, ids: torch.Tensor, pad_id: int, num_tokens: int, image: torch.Tensor,
                  image_processor: Any) -> torch.Tensor:
        """``(3, L)`` M-RoPE positions of one sequence (``get_rope_index`` on it alone, which never touches the
        model's shared ``rope_deltas``)."""
        patch = self.patch_shape(image_processor)[0]
        grid = torch.tensor([[1, image.shape[1] // patch, image.shape[2] // patch]])
        types = (ids == pad_id).int()
        positions, _ = model.model.get_rope_index(ids[None], mm_token_type_ids=types[None], image_grid_thw=grid)
        return positions[:, 0]

    def geometry(self, model: Any, image_processor: Any, image_size: tuple[int, int],
                 preprocessing: Preprocessing | None = None) -> TokenGeometry:
        preprocessing = preprocessing or self.preprocessing(model, image_processor)
        width, height = preprocessing.resized_size(image_size)
        rows, cols = height // preprocessing.size, width // preprocessing.size
        notes = {"resized": [width, height], "merged_grid": [rows, cols], "min_pixels": preprocessing.min_pixels,
                 "max_pixels": preprocessing.max_pixels}
        return grid_geometry(image_size, rows, cols, "dynamic", f"merged grid ({rows}x{cols})", notes)


class Qwen25VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL: the same text side and processor; a windowed vision tower with an MLP merger."""

    name = "qwen2_5_vl"
    model_class = Qwen2_5_VLForConditionalGeneration
    config_class = Qwen2_5_VLConfig

    def vision_config(self, shape: Mapping[str, Any], text_hidden: int) -> dict[str, Any]:
        """Qwen2.5-VL's ViT: its own width, ``out_hidden_size`` the language model's."""
        return dict(shape, out_hidden_size=text_hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                    hidden_act="silu", tokens_per_second=2, initializer_range=0.2)
