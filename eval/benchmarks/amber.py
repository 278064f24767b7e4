"""AMBER: all 15,220 queries (``id``, ``image``, ``query``; generative ids 1-1004, discriminative after), shipped as
``eval/data/amber/query_all.json.gz``; the scorer (``eval.amber``) reads the annotations shipped beside it."""
from __future__ import annotations

from pathlib import Path

from eval.benchmarks.protocols import YES_NO
from eval.benchmarks.samples import Sample, SampleSet, unusable
from eval.benchmarks.spec import YESNO, BenchmarkSpec, DataSettings, register_benchmark
from eval.files import Problem, read_json, record_key
from llava.settings import Protocol

QUERY_FILE = Path(__file__).resolve().parents[1] / "data" / "amber" / "query_all.json.gz"


def amber_queries(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
    """AMBER queries of a ``.json`` / ``.json.gz`` list, in file order."""
    query_file = spec.questions(data)
    samples = []
    for index, query in enumerate(read_json(query_file), start=1):
        reason = unusable(query, ("id", "image", "query"), ("image", "query")) if isinstance(query, dict) else "not an object"
        if reason:
            problems.append(Problem(str(query_file), None, None, f"query {index}: {reason}"))
            continue
        fields = {"question_id": query["id"], "prompt": query["query"], "image": query["image"]}
        samples.append(Sample(record_key(query["id"]), data.image_folder / query["image"], query["query"], fields,
                              str(query_file)))
    return SampleSet(samples, None, len(samples))


AMBER = register_benchmark(BenchmarkSpec("amber", "AMBER (all 15,220 queries)", YESNO, amber_queries, "amber", YES_NO,
                                         question_file=QUERY_FILE, needs=("image_folder",)))
