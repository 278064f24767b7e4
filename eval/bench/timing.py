"""The measurements of :mod:`eval.bench` (how they are taken: see its docstring): fixed inputs, one timed decode call,
memory peaks, the per-method rows and their ratios, the table."""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from eval.bench.names import BASELINE, BEAM, BEAM_METHODS, BEAMS, CLOCK_NAMES, BenchError, model_name
from eval.methods import create_method
from llava.model.builder import LoadedModel

PROMPT = "Please describe this image in detail."
IMAGE_SIZES = ((640, 480), (480, 640), (500, 500), (800, 600))  # cycled over the rows of a batch


def synthetic_images(count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` fixed RGB images (smooth gradients plus seeded noise, non-square sizes so padding runs too)."""
    images = []
    for index in range(count):
        width, height = IMAGE_SIZES[index % len(IMAGE_SIZES)]
        rng = np.random.default_rng(seed + index)
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
        pixels = np.clip(base + rng.normal(0, 25, size=(height, width, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, "RGB"))
    return images


def build_method(name: str, family: str, num_layers: int, sparc_tau: float | None = None) -> Any:
    """The decoding method benchmarked as ``name``, with its ``paper`` preset for the family and depth (the
    registry, :mod:`eval.methods`). ``sparc_tau`` overrides SPARC's threshold (a stress setting: random weights give
    near-uniform attention, so the paper's tau selects nothing and the amplification path would never run)."""
    overrides = {"tau": sparc_tau} if name == "sparc" and sparc_tau is not None else {}
    return create_method(name, "paper", family=family, num_layers=num_layers, **overrides)


def load_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The model through the project's one factory (a synthetic name or a checkpoint)."""
    from llava.model.builder import CheckpointError, load_model as load

    name = model_name(args.model_path, args.family)
    try:
        loaded = load(name, device, dtype, args.attn)
    except (CheckpointError, OSError) as e:
        raise BenchError(f"cannot load --model-path {args.model_path!r}: {e}") from e
    if args.family is not None and loaded.family.name != args.family:
        raise BenchError(f"--family {args.family!r} but {args.model_path} is a {loaded.family.name!r} model")
    return loaded


def describe_model(loaded: LoadedModel) -> str:
    if loaded.synthetic:
        return f"synthetic {loaded.model_path} (random weights)"
    return loaded.model_path


def make_batch(loaded: LoadedModel, batch_size: int) -> Any:
    from llava.batch import PromptBatch

    prompt = loaded.family.format_prompt(loaded.model, PROMPT, None, loaded.tokenizer)
    images = loaded.family.pixel_values(loaded.model, loaded.image_processor, synthetic_images(batch_size))
    return PromptBatch(loaded.model, loaded.tokenizer, loaded.image_processor, [prompt] * batch_size, images)


# ---------------------------------------------------------------------------------------------------- measurement


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    """Peak memory of one run: CUDA allocator peak, or the growth of the CPU resident set."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.kind = "cuda_max_memory_allocated" if self.cuda else "cpu_rss_growth"
        self.before = 0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
        else:
            self.resettable = _reset_peak_rss()
            self.before = _proc_status_kb("VmRSS" if self.resettable else "VmHWM") or 0

    def stop(self) -> tuple[float, float]:
        """``(peak_mem_mb, peak_delta_mb)``."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return peak / 2**20, (peak - self.before) / 2**20
        peak_kb = _proc_status_kb("VmHWM") or 0
        delta = max(peak_kb - self.before, 0) / 1024
        return delta, delta


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Sample:
    """One timed run: time to the first token, the clock at every later token, the memory peak."""

    prefill_ms: float
    step_ms: list[float]  # duration of decode steps 2..N (one forward over all branches + combine + choice each)
    total_ms: float
    peak_mem_mb: float
    peak_delta_mb: float
    selections_per_step: float | None = None  # SPARC: image tokens selected per row and decode step
    user_s: float = 0.0  # CPU time of this process in user and system mode during the run (getrusage)
    sys_s: float = 0.0
    wall_s: float = 0.0

    @property
    def ms_per_token(self) -> float:
        """``(total - prefill) / (N - 1)``, both read in this run."""
        return sum(self.step_ms) / len(self.step_ms)


CLOCKS: dict[str, Callable[[], float]] = dict(zip(CLOCK_NAMES, (time.perf_counter, time.process_time)))


def run_once(batch: Any, method_name: str, family: str, new_tokens: int, device: torch.device, seed: int,
             meter: MemoryMeter | None = None, clock: Callable[[], float] = time.perf_counter,
             sparc_tau: float | None = None, sample: bool = False, beams: int = BEAMS) -> Sample:
    """One decode call of exactly ``new_tokens`` tokens (EOS ignored), with a synchronised timestamp at each token:
    ``generate``'s ``step_callback`` (it runs right after the token is chosen, where the loop reads ``finished`` back
    anyway, so on CUDA the extra synchronisation costs nothing the loop does not already pay), or the beam search's
    scorer call of the first prompt (``beam``: plain beam search of ``beams``; OPERA: its own)."""
    from llava.beam_search import BeamMethod, beam_search
    from llava.generation import GenerationConfig, generate

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=sample, eos_token_ids=())
    from llava.model.families import family_of

    num_layers = family_of(batch.model).num_layers(batch.model)
    method = None if method_name == BEAM else build_method(method_name, family, num_layers, sparc_tau)
    rows = len(batch.prompts)
    # sampling: one seeded generator per row on the model's device, as the evaluation runners do
    generators = [torch.Generator(device=device).manual_seed(seed + row) for row in range(rows)] if sample else None
    stamps: list[float] = []

    def stamp(*args: Any) -> None:
        _synchronize(device)
        stamps.append(clock())

    def stamp_first_prompt(record: Any) -> None:
        if record.group == 0:
            stamp()

    torch.manual_seed(seed)  # VCD's noise draws from the global generator when no per-row generators are given
    if meter is not None:
        meter.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _synchronize(device)
    start, wall = clock(), time.perf_counter()
    if method is None or isinstance(method, BeamMethod):
        output = beam_search(batch, config, beams if method is None else method.num_beams, method,
                             on_step=stamp_first_prompt)
    else:
        output = generate(batch, config, method, generators, step_callback=stamp)
    _synchronize(device)
    end, wall = clock(), time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak, delta = meter.stop() if meter is not None else (0.0, 0.0)
    shortest = min(len(s) for s in output.sequences)
    if shortest != new_tokens or len(stamps) != new_tokens:
        raise RuntimeError(
            f"{method_name}: the loop ran {output.steps} steps / {shortest} tokens, expected {new_tokens}")
    steps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
    hook = getattr(method, "hook", None)
    selections = None
    if method_name == "sparc" and hook is not None and new_tokens > 1:  # made at steps 1..N-1, applied at 2..N
        selections = float(hook.counts.sum()) / (hook.counts.shape[0] * (new_tokens - 1))
    return Sample((stamps[0] - start) * 1000, steps, (end - start) * 1000, peak, delta, selections,
                  after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime, wall)


def measure(batch: Any, method_name: str, family: str, new_tokens: int, device: torch.device, seed: int,
            clock: Callable[[], float] = time.perf_counter, sparc_tau: float | None = None,
            sample: bool = False, beams: int = BEAMS) -> Sample:
    """One timed repeat of ``new_tokens`` tokens with its memory peak."""
    return run_once(batch, method_name, family, new_tokens, device, seed, MemoryMeter(device), clock, sparc_tau,
                    sample, beams)


def summarise(method: str, batch_size: int, samples: list[Sample]) -> dict[str, Any]:
    per_token = [s.ms_per_token for s in samples]
    ms_per_token = statistics.median(per_token)
    step_median = statistics.median(t for s in samples for t in s.step_ms)
    row = {
        "method": method,
        "batch_size": batch_size,
        "prefill_ms": round(statistics.median(s.prefill_ms for s in samples), 3),
        "ms_per_token": round(ms_per_token, 4),
        "tokens_per_s": round(batch_size * 1000 / ms_per_token, 2),
        "peak_mem_mb": round(max(s.peak_mem_mb for s in samples), 1),
        "peak_delta_mb": round(max(s.peak_delta_mb for s in samples), 1),
        "ratio_to_baseline": None,
        "step_ms_median": round(step_median, 4),
        "ratio_step_median": None,
        "ms_per_token_repeats": [round(v, 4) for v in per_token],
        "prefill_ms_repeats": [round(s.prefill_ms, 3) for s in samples],
        "spread": round((max(per_token) - min(per_token)) / ms_per_token, 4),
        "wall_s": round(statistics.median(s.wall_s for s in samples), 4),
        "user_s": round(statistics.median(s.user_s for s in samples), 4),
        "sys_s": round(statistics.median(s.sys_s for s in samples), 4),
    }
    selections = [s.selections_per_step for s in samples if s.selections_per_step is not None]
    if selections:
        row["sparc_selections_per_step"] = round(statistics.mean(selections), 3)
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio_to_baseline`` of every row, against the baseline row of the same batch size; beam searches (plain
    ``beam`` and OPERA) also get ``ratio_to_beam``, against plain beam search of the same width."""
    for key, ratio in (("ms_per_token", "ratio_to_baseline"), ("step_ms_median", "ratio_step_median")):
        baseline = {r["batch_size"]: r[key] for r in rows if r["method"] == BASELINE}
        for row in rows:
            base = baseline.get(row["batch_size"])
            row[ratio] = 1.0 if row["method"] == BASELINE else (round(row[key] / base, 4) if base else None)
    beam = {r["batch_size"]: r["ms_per_token"] for r in rows if r["method"] == BEAM}
    for row in rows:
        if row["method"] in BEAM_METHODS and row["batch_size"] in beam:
            row["ratio_to_beam"] = round(row["ms_per_token"] / beam[row["batch_size"]], 4)


def benchmark(loaded: LoadedModel, methods: Sequence[str], batch_sizes: Sequence[int], new_tokens: int, repeats: int,
              warmup: int, device: torch.device, seed: int = 0, log: Callable[[str], None] = print,
              clock: str = "wall", sparc_tau: float | None = None, sample: bool = False,
              beams: int = BEAMS) -> list[dict[str, Any]]:
    """Rows for every method and batch size; methods are interleaved within each repeat (order rotated)."""
    family = loaded.family.name
    rows = []
    for batch_size in batch_sizes:
        batch = make_batch(loaded, batch_size)
        for method in methods:  # always: a short untimed run pays the one-time costs of new shapes
            run_once(batch, method, family, 2, device, seed, sparc_tau=sparc_tau, sample=sample, beams=beams)
        for _ in range(warmup):
            for method in methods:
                run_once(batch, method, family, new_tokens, device, seed, sparc_tau=sparc_tau, sample=sample,
                         beams=beams)
        samples: dict[str, list[Sample]] = {m: [] for m in methods}
        for repeat in range(repeats):
            shift = repeat % len(methods)
            for method in list(methods[shift:]) + list(methods[:shift]):
                samples[method].append(measure(batch, method, family, new_tokens, device, seed, CLOCKS[clock],
                                               sparc_tau, sample, beams))
        for method in methods:
            row = summarise(method, batch_size, samples[method])
            rows.append(row)
            log(f"batch {batch_size} {method}: {row['ms_per_token']:.3f} ms/token, prefill {row['prefill_ms']:.1f} ms")
    add_ratios(rows)
    return rows


# ------------------------------------------------------------------------------------------------------- reporting


def format_table(rows: Sequence[dict[str, Any]], mem_kind: str) -> str:
    mem = "peak MB (CUDA alloc)" if mem_kind.startswith("cuda") else "peak MB (RSS growth)"
    lines = [
        f"| method | batch | prefill ms | ms / token | tokens/s | {mem} | x baseline | x beam | step median ms | "
        "x baseline (step median) | wall s | user s | sys s | spread |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "n/a" if r["ratio_to_baseline"] is None else f"{r['ratio_to_baseline']:.2f}"
        spread = "n/a" if r.get("spread") is None else f"{100 * r['spread']:.0f}%"
        lines.append(
            f"| {r['method']} | {r['batch_size']} | {r['prefill_ms']:.1f} | {r['ms_per_token']:.2f} | "
            f"{_number(r['tokens_per_s'], 1)} | {r['peak_mem_mb']:.0f} | {ratio} | {_number(r.get('ratio_to_beam'), 2)} | "
            f"{r['step_ms_median']:.2f} | {_number(r['ratio_step_median'], 2)} | {r['wall_s']:.2f} | {r['user_s']:.2f} | "
            f"{r['sys_s']:.2f} | {spread} |"
        )
    selections = [f"batch {r['batch_size']}: {r['sparc_selections_per_step']:g}" for r in rows
                  if r.get("sparc_selections_per_step") is not None]
    if selections:
        lines.append(f"\nSPARC image tokens selected per row and step: {', '.join(selections)}")
    return "\n".join(lines)


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
