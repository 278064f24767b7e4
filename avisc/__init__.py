"""AvisC (Woo et al., ACL 2025) and the baselines it is compared with (VCD, M3ID), on the decoding loop of ``llava``.

Importing the package registers the methods ``avisc``, ``vcd`` and ``m3id`` (:mod:`avisc.config`, light); the
implementations live in :mod:`avisc.methods` and :mod:`avisc.blind`.
"""
from avisc.config import AVISC, M3ID, VCD, AviscConfig, ContrastConfig, M3idConfig, VcdConfig

__all__ = ["AVISC", "M3ID", "VCD", "AviscConfig", "ContrastConfig", "M3idConfig", "VcdConfig"]
