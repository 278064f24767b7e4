"""The command line of :mod:`eval.bench`: arguments, checks, and the run (the timing itself is in
:mod:`eval.bench.timing`, imported only once the arguments are good, so ``--help`` does not load torch)."""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
from typing import Callable, Sequence

from eval.bench.names import BASELINE, BEAM, BEAMS, CLOCK_NAMES, BenchError, model_name
from eval.methods import list_methods
from llava.constants import DTYPE_NAMES
from llava.model.families import family_names

def _package_doc() -> str:
    import eval.bench

    return eval.bench.__doc__ or ""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def bench_methods() -> list[str]:
    """What the benchmark can time: every registered method, and plain beam search (``beam``)."""
    return [*list_methods(), BEAM]


def _method_list(text: str) -> list[str]:
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in bench_methods()]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(bench_methods())}")
    return list(dict.fromkeys(values))


def _positive(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench", description=_package_doc().split("\n\n")[0],
        epilog="Synthetic models: tiny, 7b, or <shape>-<family> (tiny-llava_next, 7b-instructblip, 7b-qwen2-vl, ...). "
               "Timing: one generate(N) per repeat with a timestamp per token; prefill = time to the first token, "
               "ms/token = (total - prefill) / (N - 1); medians over --repeats; ratio = ms/token over the baseline's at "
               "the same batch size, same run.",
    )
    parser.add_argument("--model-path", "--model_path", required=True,
                        help="tiny | 7b | <shape>-<family> (synthetic random model) or a checkpoint folder / hub id")
    parser.add_argument("--methods", type=_method_list, default=bench_methods(),
                        help=f"comma-separated, from {','.join(bench_methods())} (default: all; {BASELINE} is always "
                             f"added; {BEAM} is plain beam search of --beams, the reference of OPERA)")
    parser.add_argument("--beams", type=_positive(2), default=BEAMS,
                        help=f"width of the plain beam search row (default {BEAMS}, OPERA's)")
    parser.add_argument("--batch-sizes", "--batch_sizes", type=_int_list, default=[1, 8, 16], help="default: 1,8,16")
    parser.add_argument("--new-tokens", "--new_tokens", type=_positive(2), default=128,
                        help="generated tokens per run, EOS ignored (>= 2; default 128)")
    parser.add_argument("--repeats", type=_positive(1), default=3, help="timed repeats, medians reported (default 3)")
    parser.add_argument("--warmup", type=_positive(0), default=1,
                        help="untimed full-length runs per method and batch size, after one untimed 2-token run "
                             "that is always done (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                        help="default: float16 on cuda, float32 on cpu")
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa",
                        help="language-model attention behind the hook point (default sdpa)")
    parser.add_argument("--family", choices=family_names(), default=None,
                        help="family of a synthetic model (default llava); checked against a loaded checkpoint")
    parser.add_argument("--threads", type=_positive(1), default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=CLOCK_NAMES, default="wall",
                        help="wall: elapsed time (default); process: CPU time of this process (CPU only; with "
                             "--threads 1 it ignores time lost to other processes on a shared machine)")
    parser.add_argument("--sample", action="store_true",
                        help="sample at temperature 1 with one seeded generator per row (the AvisC/VCD/M3ID paper "
                             "setting) instead of greedy decoding for every method")
    parser.add_argument("--sparc-tau", "--sparc_tau", type=_finite, default=None,
                        help="override SPARC's tau (stress test: random weights have near-uniform attention and the "
                             "paper's tau selects nothing; 0 selects about half the image tokens, -1 all of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as json here (atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch  # after parsing: --help and argument errors stay fast
    import transformers

    from eval.bench.timing import (
        MemoryMeter, benchmark, describe_model, device_description, format_table, load_model,
    )
    from eval.provenance import git_commit
    from eval.files import write_json_atomic
    from llava.model.builder import resolve_dtype

    device_name = args.device or ("cpu" if args.clock == "process" or not torch.cuda.is_available() else "cuda")
    if args.clock == "process" and device_name != "cpu":
        parser.error("--clock process measures CPU time and is only meaningful with --device cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but this torch build sees no CUDA device")
    device = torch.device(device_name)
    dtype = resolve_dtype(args.dtype, device)
    if device.type == "cpu" and dtype == torch.float16:
        print("warning: float16 on the CPU is slow and not representative", file=sys.stderr)
    try:
        model_name(args.model_path, args.family)
    except BenchError as e:
        parser.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods if BASELINE in args.methods else [BASELINE, *args.methods]
    if methods is not args.methods:
        print(f"note: {BASELINE} added (the ratios are measured against it in the same run)", file=sys.stderr)

    try:
        loaded = load_model(args, device, dtype)
        rows = benchmark(loaded, methods, args.batch_sizes, args.new_tokens, args.repeats, args.warmup, device,
                         args.seed, log=lambda line: print(line, file=sys.stderr), clock=args.clock,
                         sparc_tau=args.sparc_tau, sample=args.sample, beams=args.beams)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mem_kind = MemoryMeter(device).kind
    result = {
        "device": device_description(device),
        "dtype": str(dtype).removeprefix("torch."),
        "model": describe_model(loaded),
        "family": loaded.family.name,
        "attn": args.attn,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "git_commit": git_commit(),
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "decoding": ("sampling (temperature 1, one generator per row)" if args.sample else "greedy") + ", EOS ignored",
        "clock": args.clock,
        "sparc_tau": args.sparc_tau,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "memory": mem_kind,
        "timing": "per repeat one generate(N) with a synchronised timestamp per token: prefill_ms = time to the "
                  "first token, ms_per_token = (total - prefill) / (N - 1); medians over repeats; tokens_per_s = "
                  "batch_size * 1000 / ms_per_token; step_ms_median = median single decode step over all repeats",
        "rows": rows,
    }
    sys.stderr.flush()
    print(f"# {result['model']} on {result['device']}, {result['dtype']}, attn {args.attn}, "
          f"{args.new_tokens} new tokens, median of {args.repeats}, {args.clock} clock\n")
    print(format_table(rows, mem_kind))
    if args.out:
        write_json_atomic(args.out, result)
    return 0

