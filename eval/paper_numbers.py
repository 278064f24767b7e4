"""The published numbers, as data, to print beside ours (``python -m eval.report``).

AvisC (Woo et al., arXiv 2405.17820 v1): the tables of the official repository's ``assets/pope.png``,
``assets/mme-hallucination.png`` and ``assets/amber.png`` (read visually; transcribed in
``shared/spec/avisc-official.md`` section 7). The ACL 2025 / v2 numbers may differ and were not available.
POPE: one sampling run (seed 42); MME-Hallucination: mean and std over several seeds; AMBER: as printed.

SPARC (Jung et al., ICML 2025): only the headline CHAIR-based F1 of LLaVA-1.5 (81.99 -> 83.67) is known to us; the
absolute CHAIR and CLAIR values of the paper's tables, and its rows for the compared methods (VCD, OPERA, PAI,
VOLCANO), could not be retrieved (``shared/spec/sparc-official.md`` section 6), so they are absent, not guessed.

Keys use the model names ``"InstructBLIP"``, ``"LLaVA-1.5"`` and the report's method names (``eval.report``:
``"baseline"`` for plain decoding, ``"VCD"``, ``"M3ID"``, ``"AvisC"``, ``"SPARC"``); all values are percentages (x100)
or MME scores.
"""
from __future__ import annotations

PAPERS: dict[str, str] = {"coco": "SPARC", "iiw": "SPARC", "docci": "SPARC", "pope": "AvisC", "mme": "AvisC",
                          "amber": "AvisC"}
"""Benchmark -> the paper whose tables report it (the report's table titles). AvisC shows LLaVA-Bench examples only,
with no numbers, so LLaVA-Bench has no paper here."""

POPE_METRICS = ("accuracy", "precision", "recall", "f1")

POPE: dict[tuple[str, str, str, str], tuple[float, float, float, float]] = {
    # (model, dataset, setting, method): (accuracy, precision, recall, F1)
    ("InstructBLIP", "coco", "random", "baseline"): (82.27, 82.84, 81.40, 82.11),
    ("InstructBLIP", "coco", "random", "VCD"): (83.37, 83.39, 82.60, 83.24),
    ("InstructBLIP", "coco", "random", "M3ID"): (84.37, 84.62, 84.00, 84.31),
    ("InstructBLIP", "coco", "random", "AvisC"): (88.73, 93.88, 82.87, 88.03),
    ("InstructBLIP", "coco", "popular", "baseline"): (77.77, 74.81, 83.73, 79.02),
    ("InstructBLIP", "coco", "popular", "VCD"): (78.00, 75.12, 83.73, 79.19),
    ("InstructBLIP", "coco", "popular", "M3ID"): (77.30, 74.10, 83.93, 78.71),
    ("InstructBLIP", "coco", "popular", "AvisC"): (83.90, 81.33, 88.00, 84.53),
    ("InstructBLIP", "coco", "adversarial", "baseline"): (73.13, 69.41, 82.60, 75.46),
    ("InstructBLIP", "coco", "adversarial", "VCD"): (75.87, 72.85, 82.47, 77.36),
    ("InstructBLIP", "coco", "adversarial", "M3ID"): (76.03, 72.47, 83.93, 77.79),
    ("InstructBLIP", "coco", "adversarial", "AvisC"): (81.57, 80.37, 83.53, 81.92),
    ("InstructBLIP", "aokvqa", "random", "baseline"): (81.00, 77.71, 86.93, 82.06),
    ("InstructBLIP", "aokvqa", "random", "VCD"): (81.73, 78.67, 87.07, 82.66),
    ("InstructBLIP", "aokvqa", "random", "M3ID"): (82.33, 77.81, 90.47, 83.66),
    ("InstructBLIP", "aokvqa", "random", "AvisC"): (88.47, 87.66, 89.53, 88.59),
    ("InstructBLIP", "aokvqa", "popular", "baseline"): (75.00, 70.14, 87.07, 77.69),
    ("InstructBLIP", "aokvqa", "popular", "VCD"): (75.33, 70.52, 87.07, 77.92),
    ("InstructBLIP", "aokvqa", "popular", "M3ID"): (75.60, 70.40, 88.33, 78.36),
    ("InstructBLIP", "aokvqa", "popular", "AvisC"): (81.77, 77.82, 88.87, 82.98),
    ("InstructBLIP", "aokvqa", "adversarial", "baseline"): (68.80, 63.57, 88.07, 73.84),
    ("InstructBLIP", "aokvqa", "adversarial", "VCD"): (69.70, 64.54, 87.47, 74.27),
    ("InstructBLIP", "aokvqa", "adversarial", "M3ID"): (69.57, 64.21, 88.40, 74.39),
    ("InstructBLIP", "aokvqa", "adversarial", "AvisC"): (72.53, 67.12, 88.33, 76.28),
    ("InstructBLIP", "gqa", "random", "baseline"): (80.00, 77.08, 85.40, 81.02),
    ("InstructBLIP", "gqa", "random", "VCD"): (81.73, 79.35, 85.80, 82.45),
    ("InstructBLIP", "gqa", "random", "M3ID"): (80.57, 76.77, 87.67, 81.85),
    ("InstructBLIP", "gqa", "random", "AvisC"): (86.47, 85.89, 87.27, 86.57),
    ("InstructBLIP", "gqa", "popular", "baseline"): (73.53, 68.80, 86.13, 76.49),
    ("InstructBLIP", "gqa", "popular", "VCD"): (74.10, 69.45, 86.07, 76.87),
    ("InstructBLIP", "gqa", "popular", "M3ID"): (74.57, 69.45, 87.83, 77.53),
    ("InstructBLIP", "gqa", "popular", "AvisC"): (78.00, 73.68, 87.13, 79.84),
    ("InstructBLIP", "gqa", "adversarial", "baseline"): (68.00, 63.49, 84.73, 72.59),
    ("InstructBLIP", "gqa", "adversarial", "VCD"): (70.27, 65.43, 85.93, 74.29),
    ("InstructBLIP", "gqa", "adversarial", "M3ID"): (68.90, 64.06, 86.13, 73.47),
    ("InstructBLIP", "gqa", "adversarial", "AvisC"): (73.07, 67.80, 87.87, 76.54),
    ("LLaVA-1.5", "coco", "random", "baseline"): (84.47, 83.35, 86.13, 84.72),
    ("LLaVA-1.5", "coco", "random", "VCD"): (84.80, 83.00, 87.53, 85.20),
    ("LLaVA-1.5", "coco", "random", "M3ID"): (86.00, 85.11, 87.27, 86.18),
    ("LLaVA-1.5", "coco", "random", "AvisC"): (87.93, 88.24, 87.53, 87.88),
    ("LLaVA-1.5", "coco", "popular", "baseline"): (82.23, 79.72, 86.47, 82.95),
    ("LLaVA-1.5", "coco", "popular", "VCD"): (82.27, 79.19, 87.53, 83.15),
    ("LLaVA-1.5", "coco", "popular", "M3ID"): (82.83, 79.62, 88.27, 83.72),
    ("LLaVA-1.5", "coco", "popular", "AvisC"): (84.33, 81.71, 88.47, 84.96),
    ("LLaVA-1.5", "coco", "adversarial", "baseline"): (77.10, 72.57, 87.13, 79.19),
    ("LLaVA-1.5", "coco", "adversarial", "VCD"): (76.10, 71.50, 86.80, 78.41),
    ("LLaVA-1.5", "coco", "adversarial", "M3ID"): (77.70, 73.23, 87.33, 79.66),
    ("LLaVA-1.5", "coco", "adversarial", "AvisC"): (77.53, 72.82, 87.87, 79.64),
    ("LLaVA-1.5", "aokvqa", "random", "baseline"): (82.73, 77.43, 92.40, 84.26),
    ("LLaVA-1.5", "aokvqa", "random", "VCD"): (81.30, 75.45, 92.80, 83.23),
    ("LLaVA-1.5", "aokvqa", "random", "M3ID"): (83.57, 77.86, 93.80, 85.09),
    ("LLaVA-1.5", "aokvqa", "random", "AvisC"): (84.60, 79.29, 93.67, 85.88),
    ("LLaVA-1.5", "aokvqa", "popular", "baseline"): (76.10, 69.86, 91.80, 79.34),
    ("LLaVA-1.5", "aokvqa", "popular", "VCD"): (75.43, 68.58, 93.87, 79.26),
    ("LLaVA-1.5", "aokvqa", "popular", "M3ID"): (76.80, 70.20, 93.13, 80.06),
    ("LLaVA-1.5", "aokvqa", "popular", "AvisC"): (78.83, 72.10, 94.07, 81.63),
    ("LLaVA-1.5", "aokvqa", "adversarial", "baseline"): (67.90, 62.11, 91.80, 74.09),
    ("LLaVA-1.5", "aokvqa", "adversarial", "VCD"): (67.43, 61.50, 93.20, 74.11),
    ("LLaVA-1.5", "aokvqa", "adversarial", "M3ID"): (68.10, 61.99, 93.60, 74.58),
    ("LLaVA-1.5", "aokvqa", "adversarial", "AvisC"): (68.97, 62.70, 93.67, 75.11),
    ("LLaVA-1.5", "gqa", "random", "baseline"): (82.40, 77.03, 92.33, 83.99),
    ("LLaVA-1.5", "gqa", "random", "VCD"): (82.27, 75.85, 94.67, 84.22),
    ("LLaVA-1.5", "gqa", "random", "M3ID"): (82.83, 76.64, 94.47, 84.62),
    ("LLaVA-1.5", "gqa", "random", "AvisC"): (85.00, 78.81, 95.73, 86.45),
    ("LLaVA-1.5", "gqa", "popular", "baseline"): (72.03, 65.57, 92.80, 76.84),
    ("LLaVA-1.5", "gqa", "popular", "VCD"): (71.77, 64.90, 94.80, 77.05),
    ("LLaVA-1.5", "gqa", "popular", "M3ID"): (72.83, 66.04, 94.00, 77.58),
    ("LLaVA-1.5", "gqa", "popular", "AvisC"): (74.80, 67.46, 95.80, 79.17),
    ("LLaVA-1.5", "gqa", "adversarial", "baseline"): (68.73, 62.54, 93.40, 74.92),
    ("LLaVA-1.5", "gqa", "adversarial", "VCD"): (68.27, 62.00, 94.40, 74.84),
    ("LLaVA-1.5", "gqa", "adversarial", "M3ID"): (68.13, 61.88, 94.47, 74.78),
    ("LLaVA-1.5", "gqa", "adversarial", "AvisC"): (69.20, 62.61, 95.33, 75.58),
}

MME_HALLUCINATION: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    # (model, method): {task: (mean, std)}; "hallucination" is the total of the four tasks
    ("InstructBLIP", "baseline"): {"existence": (170.19, 11.12), "count": (89.52, 11.04), "position": (67.62, 14.04), "color": (114.76, 9.60), "hallucination": (442.09, 31.51)},
    ("InstructBLIP", "VCD"): {"existence": (172.62, 8.92), "count": (98.33, 15.99), "position": (71.90, 13.42), "color": (117.14, 10.70), "hallucination": (459.99, 16.56)},
    ("InstructBLIP", "M3ID"): {"existence": (173.89, 10.52), "count": (89.72, 13.44), "position": (72.72, 14.77), "color": (110.56, 7.20), "hallucination": (446.88, 28.54)},
    ("InstructBLIP", "AvisC"): {"existence": (184.76, 5.56), "count": (82.85, 12.16), "position": (74.76, 6.19), "color": (131.43, 4.76), "hallucination": (473.80, 19.67)},
    ("LLaVA-1.5", "baseline"): {"existence": (173.57, 8.16), "count": (110.00, 15.82), "position": (100.47, 18.78), "color": (125.24, 15.91), "hallucination": (509.28, 30.57)},
    ("LLaVA-1.5", "VCD"): {"existence": (172.14, 8.09), "count": (117.14, 8.76), "position": (103.33, 20.56), "color": (119.52, 8.58), "hallucination": (512.14, 31.82)},
    ("LLaVA-1.5", "M3ID"): {"existence": (178.33, 6.83), "count": (107.22, 14.78), "position": (96.39, 5.52), "color": (127.50, 8.28), "hallucination": (509.44, 22.52)},
    ("LLaVA-1.5", "AvisC"): {"existence": (189.29, 1.82), "count": (104.76, 11.66), "position": (106.19, 13.93), "color": (127.86, 9.13), "hallucination": (528.09, 24.70)},
}

AMBER_METRICS = ("CHAIR", "Cover", "Hal", "Cog", "Acc", "Prec", "Rec", "F1", "AMBER")

AMBER: dict[tuple[str, str], dict[str, float]] = {
    # (model, method): metrics; AMBER = (100 - CHAIR + F1) / 2. The InstructBLIP AvisC precision 72.60 is as
    # printed but inconsistent with its recall and F1 (they imply about 81.3): probably a copy error in the paper.
    ("InstructBLIP", "baseline"): {"CHAIR": 8.40, "Cover": 46.40, "Hal": 31.10, "Cog": 2.60, "Acc": 68.20, "Prec": 79.00, "Rec": 70.70, "F1": 74.60, "AMBER": 83.10},
    ("InstructBLIP", "VCD"): {"CHAIR": 7.60, "Cover": 47.65, "Hal": 29.90, "Cog": 2.20, "Acc": 69.65, "Prec": 80.70, "Rec": 71.60, "F1": 75.90, "AMBER": 84.15},
    ("InstructBLIP", "M3ID"): {"CHAIR": 6.85, "Cover": 47.20, "Hal": 27.50, "Cog": 2.20, "Acc": 69.05, "Prec": 79.70, "Rec": 71.25, "F1": 75.25, "AMBER": 84.20},
    ("InstructBLIP", "AvisC"): {"CHAIR": 6.70, "Cover": 46.65, "Hal": 28.00, "Cog": 2.55, "Acc": 72.60, "Prec": 72.60, "Rec": 76.10, "F1": 78.60, "AMBER": 85.95},
    ("LLaVA-1.5", "baseline"): {"CHAIR": 7.95, "Cover": 44.45, "Hal": 31.00, "Cog": 2.15, "Acc": 67.00, "Prec": 85.45, "Rec": 60.95, "F1": 71.10, "AMBER": 81.58},
    ("LLaVA-1.5", "VCD"): {"CHAIR": 6.70, "Cover": 46.50, "Hal": 27.80, "Cog": 1.95, "Acc": 67.30, "Prec": 86.10, "Rec": 60.55, "F1": 71.10, "AMBER": 82.20},
    ("LLaVA-1.5", "M3ID"): {"CHAIR": 6.00, "Cover": 48.90, "Hal": 26.00, "Cog": 1.45, "Acc": 67.25, "Prec": 86.50, "Rec": 60.05, "F1": 70.90, "AMBER": 82.45},
    ("LLaVA-1.5", "AvisC"): {"CHAIR": 6.25, "Cover": 46.55, "Hal": 25.60, "Cog": 2.00, "Acc": 70.70, "Prec": 85.45, "Rec": 67.55, "F1": 75.45, "AMBER": 84.60},
}

SPARC_CHAIR_F1: dict[tuple[str, str], float] = {
    # (model, method): F1 of precision (1 - CHAIRi) and recall, x100
    ("LLaVA-1.5", "baseline"): 81.99,
    ("LLaVA-1.5", "SPARC"): 83.67,
}
