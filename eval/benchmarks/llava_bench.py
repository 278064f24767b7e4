"""LLaVA-Bench (In-the-Wild): 60 open-ended questions on 24 images (``questions.jsonl``: ``question_id``, ``image``,
``text``, ``category`` in conv / detail / complex), generated with AvisC's ``llava_bench_llava.py`` protocol and
scored by an LLM judge against GPT-4's reference answers (``eval.llava_bench``). The data are the Hub dataset
``liuhaotian/llava-bench-in-the-wild`` (users download it; nothing is shipped)."""
from __future__ import annotations

from eval.benchmarks.protocols import OPEN_ENDED
from eval.benchmarks.samples import SampleSet, id_questions
from eval.benchmarks.spec import OPEN, BenchmarkSpec, DataSettings, register_benchmark
from eval.files import Problem
from llava.settings import Protocol

CATEGORIES = ("conv", "detail", "complex")


def llava_bench_questions(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol,
                          problems: list[Problem]) -> SampleSet:
    """The questions in file order; each answer line keeps ``question_id``, ``prompt`` (the question), ``image``,
    ``category`` and an empty ``metadata``, as LLaVA's answer files."""
    return id_questions(spec.questions(data), data.image_folder, problems,
                        lambda record: {"category": record.get("category"), "metadata": {}})


LLAVA_BENCH = register_benchmark(BenchmarkSpec(
    "llava_bench", "LLaVA-Bench (In-the-Wild)", OPEN, llava_bench_questions, "llava_bench", OPEN_ENDED,
    needs=("image_folder", "question_file"),
))
