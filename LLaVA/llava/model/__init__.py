"""Model loading and the per-family registry."""
from llava.model.builder import load_pretrained_model
from llava.model.families import FAMILIES, ModelFamily, family_of

__all__ = ["FAMILIES", "ModelFamily", "family_of", "load_pretrained_model"]
