"""OPERA (Huang et al., CVPR 2024): beam search with an over-trust penalty and retrospection-allocation rollback.

Importing the package registers the method ``opera`` (:mod:`sparc.opera.config`, light); the search is
:mod:`sparc.opera.search`, on :mod:`llava.beam_search`.
"""
from sparc.opera.config import OPERA, OperaConfig

__all__ = ["OPERA", "OperaConfig"]
