"""Our maintained LLaVA fork on transformers 5.

Upstream's public surface where it matters (``constants``, ``conversation``, ``mm_utils``,
``model.builder.load_pretrained_model``) with the same behaviour, plus what the methods build on: one registry of
per-family facts (``llava.model.families``), one hook point inside attention (``llava.attention``) and our own
decoding loop with batched branches (``llava.generation``).
"""
__version__ = "1.2.2.post1+tf5"
