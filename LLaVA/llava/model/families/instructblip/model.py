"""InstructBLIP (Vicuna) on transformers' ``InstructBlipForConditionalGeneration``: 32 Q-Former query embeddings
(after ``language_projection``) before the raw question.

The question also goes to the Q-Former, as LAVIS ``blip2_vicuna_instruct.py`` does: its BERT tokenizer is built with
``truncation_side="left"`` and called with ``truncation=True, max_length=128`` (``max_txt_len``), so a long question
keeps only its last tokens there (the language model sees it whole). There is no chat template (as LAVIS and the
AvisC scripts), and one fixed 224 px resize.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from transformers import AutoTokenizer, InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from llava.geometry import TokenGeometry, sequence_geometry
from llava.inputs import Images, SequenceInputs
from llava.mm_utils import Preprocessing, to_rgb
from llava.model.families.base import ModelFamily, build_random, check_no_settings
from llava.model.toy_tokenizers import CLIP_MEAN, CLIP_STD, VOCAB_SIZE, toy_qformer_tokenizer, toy_tokenizer

QFORMER_MAX_TEXT = 128
"""LAVIS ``max_txt_len``: BERT tokens of the question the Q-Former reads (the last ones: left truncation)."""
QFORMER_INIT = 0.2
"""Weight scale of a random Q-Former: at transformers' 0.02 its cross-attention averages the image away and a random
InstructBLIP answers the same whatever the image (tests of the image paths need answers that depend on it)."""


def qformer_processor(image_processor: Any, tokenizer: Any, qformer_tokenizer: Any, num_query_tokens: int) -> Any:
    """The processor :meth:`InstructBlipFamily.embed` takes, its Q-Former tokenizer truncating on the left as LAVIS's
    (``init_tokenizer(truncation_side="left")``)."""
    qformer_tokenizer.truncation_side = "left"
    return InstructBlipProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 qformer_tokenizer=qformer_tokenizer, num_query_tokens=num_query_tokens)


class InstructBlipFamily(ModelFamily):
    """InstructBLIP: the image span is the 32 query embeddings at the start of every sequence."""

    name = "instructblip"

    def load(self, model_path: str, raw: Mapping[str, Any], tokenizer: Any, dtype: torch.dtype, device_map: Any,
             vision_tower: str | None = None) -> tuple[torch.nn.Module, Any]:
        model = InstructBlipForConditionalGeneration.from_pretrained(model_path, dtype=dtype, device_map=device_map)
        processor = qformer_processor(BlipImageProcessorPil.from_pretrained(model_path), tokenizer,
                                      AutoTokenizer.from_pretrained(model_path, subfolder="qformer_tokenizer"),
                                      model.config.num_query_tokens)
        return model, processor

    def build_synthetic(self, shape: str, tokenizer: Any, seed: int, dtype: torch.dtype, device: str | torch.device,
                        num_layers: int | None = None) -> tuple[Any, torch.nn.Module, Any]:
        shapes = self.spec.shapes[shape]
        text = dict(shapes["text"], vocab_size=VOCAB_SIZE, max_position_embeddings=4096, rms_norm_eps=1e-5,
                    bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, model_type="llama")
        if num_layers:
            text["num_hidden_layers"] = num_layers
        qformer = dict(shapes["qformer"], encoder_hidden_size=shapes["vision"]["hidden_size"])
        config = InstructBlipConfig(  # the vision default init (std 1e-10, for loading) would erase the image
            vision_config=dict(shapes["vision"], image_size=224, patch_size=14, initializer_range=0.02),
            qformer_config=dict(qformer, initializer_range=QFORMER_INIT),
            text_config=text,
            num_query_tokens=32,
        )
        model = build_random(InstructBlipForConditionalGeneration, config, seed, dtype, device)
        with torch.no_grad():  # transformers starts the queries at zero (trained checkpoints replace them): 32 equal
            generator = torch.Generator().manual_seed(seed)  # queries would give 32 equal image tokens
            queries = torch.randn(model.query_tokens.shape, generator=generator) * config.initializer_range
            model.query_tokens.copy_(queries.to(model.query_tokens))
        tokenizer = tokenizer or toy_tokenizer()
        processor = qformer_processor(
            BlipImageProcessorPil(size={"height": 224, "width": 224}, image_mean=CLIP_MEAN, image_std=CLIP_STD),
            tokenizer, toy_qformer_tokenizer(qformer["vocab_size"]), 32)
        return tokenizer, model, processor

    def decoder(self, model: Any) -> torch.nn.Module:
        return model.language_model.model

    def lm_head(self, model: Any) -> torch.nn.Module:
        return model.language_model.lm_head

    def format_prompt(self, model: Any, question: str, conv_mode: str | None, tokenizer: Any = None) -> str:
        return question

    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None,
                      **settings: Any) -> Preprocessing:
        check_no_settings(self.name, settings)
        return Preprocessing.of(getattr(image_processor, "image_processor", image_processor), "resize")

    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image],
                     preprocessing: Preprocessing | None = None) -> Images:
        processor = getattr(image_processor, "image_processor", image_processor)
        pixels = processor.preprocess([to_rgb(image) for image in images], return_tensors="pt")["pixel_values"]
        return Images(list(pixels), [image.size for image in images])

    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        token_embeds = [self.embed_tokens(model, torch.tensor(tokenizer(p).input_ids)) for p in prompts]
        if images is None:  # text only: the query embeddings dropped (M3ID's unconditioned branch)
            return [SequenceInputs(e, 0, 0) for e in token_embeds]
        qformer_tokenizer = getattr(image_processor, "qformer_tokenizer", None)
        if qformer_tokenizer is None:
            raise ValueError("InstructBLIP needs its processor (with qformer_tokenizer) as image_processor")
        qformer = qformer_tokenizer(list(prompts), padding=True, truncation=True, max_length=QFORMER_MAX_TEXT,
                                    return_tensors="pt")
        device = model.query_tokens.device
        vision_dtype = next(model.vision_model.parameters()).dtype
        queries = model.get_image_features(
            torch.stack(images.pixel_values).to(device, vision_dtype),
            qformer_input_ids=qformer.input_ids.to(device),
            qformer_attention_mask=qformer.attention_mask.to(device),
            return_dict=True,
        ).pooler_output
        sequences = []
        for query, text in zip(queries, token_embeds):
            query = query.to(text.device, text.dtype)
            sequences.append(SequenceInputs(torch.cat([query, text]), 0, query.shape[0]))
        return sequences

    def geometry(self, model: Any, image_processor: Any, image_size: tuple[int, int],
                 preprocessing: Preprocessing | None = None) -> TokenGeometry:
        return sequence_geometry(image_size, int(model.config.num_query_tokens))
