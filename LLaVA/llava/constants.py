"""Constants shared with upstream LLaVA."""

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
"""Placeholder id spliced into ``input_ids`` where the image features go (never a vocabulary id)."""

DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"

ASPECT_MODES = ("pad", "anyres", "crop")
"""Image preprocessing modes (``llava.mm_utils.process_images``)."""

DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""Model dtypes by name (``llava.model.builder.DTYPES``)."""

MIN_TEMPERATURE = 1e-2
"""The smallest sampling temperature accepted: below it sampling is greedy in effect, and ``logits / temperature``
overflows (inf, then NaN probabilities) long before 1e-45; use greedy decoding instead."""
