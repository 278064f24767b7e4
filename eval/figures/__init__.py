"""Figures of what the methods do, drawn from the traces the methods expose (:class:`sparc.method.SparcTrace`,
:class:`avisc.blind.BlindTokens`): ``python -m eval.figures sparc ...`` and ``python -m eval.figures avisc ...``.

Shared pieces (token geometry, drawing, the CLI plumbing the figures share with the runners) are in
:mod:`eval.figures.common`.
"""
