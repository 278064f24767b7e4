"""AvisC (Woo et al., ACL 2025) and the baselines it is compared with (VCD, M3ID), on the decoding loop of ``llava``."""
from avisc.blind import BlindTokens, find_blind_tokens
from avisc.config import ContrastConfig, preset
from avisc.methods import Avisc, M3id, Vcd, add_diffusion_noise, build_method, diffusion_schedule

__all__ = [
    "Avisc", "BlindTokens", "ContrastConfig", "M3id", "Vcd", "add_diffusion_noise", "build_method",
    "diffusion_schedule", "find_blind_tokens", "preset",
]
