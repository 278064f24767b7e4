"""The command line of both runners (``eval.caption``, ``eval.vqa``): arguments built from the benchmark specs and the
method registry, turned into one :class:`~eval.run.RunSpec` with every setting checked before a model is loaded.

Flags (dash and the official underscore spellings):

- ``--method NAME`` any registered method; ``--preset NAME`` (default ``paper``); ``--method-args k=v,...`` with the
  method's own parameter names; one flag per parameter name of any method (``--tau``, ``--cd-alpha``, ...) as an
  alias of ``--method-args``. A parameter the chosen method does not have is an error.
- protocol flags (``--conv-mode``, ``--image-aspect``, ``--decoding``, ``--temperature``, ``--top-k``, ``--top-p``,
  ``--max-new-tokens``, ``--seed``, ``--num-beams``, captioning ``--prompt``) override one field of the benchmark's
  protocol each; ``--temperature 0`` is greedy decoding and a temperature > 0 alone means sampling, as the official
  SPARC ``eval.py``.

Nothing heavy is imported here: ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import platform
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from eval.benchmarks import DECODINGS, benchmarks_of, get_benchmark, protocol_table, resolve_run
from eval.files import InputError
from eval.methods import get_method, list_methods, param_type
from eval.pope import DATASETS as POPE_DATASETS
from eval.pope import SETTINGS as POPE_SETTINGS
from llava.constants import ASPECT_MODES, DTYPE_NAMES
from llava.methods import PROTOCOL_FIELDS, STANDARD_PRESETS
from llava.model.families import list_families, synthetic_names

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POPE_SPLITS = [f"{d}/{s}" for d in POPE_DATASETS for s in POPE_SETTINGS]


class StoreOnce(argparse.Action):
    """Store a value, refusing a second one for the same setting (``--tau 1 --tau 2``, ``--cd-alpha 1 --cd_alpha 2``,
    two ``--method-args``): argparse would keep the last silently."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = vars(namespace).setdefault("_given_once", {})
        if self.dest in given:
            parser.error(f"{option_string} is given twice ({given[self.dest]} and {option_string}); give it once")
        given[self.dest] = option_string
        setattr(namespace, self.dest, values)


def add(parser: argparse.ArgumentParser | Any, name: str, *aliases: str, **kwargs: Any) -> None:
    """``add_argument`` with the official underscore spelling of ``--dash-names`` accepted too; a flag that takes a
    value may be given once."""
    names = [name, *aliases]
    underscored = "--" + name[2:].replace("-", "_")
    if "-" in name[2:] and underscored not in names:
        names.append(underscored)
    kwargs.setdefault("action", StoreOnce)
    parser.add_argument(*names, **kwargs)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (true / false)")


def _converter(kind: type) -> Callable[[str], Any]:
    return parse_bool if kind is bool else kind


def method_parameters(methods: Sequence[str] | None = None) -> dict[str, tuple[type, list[str]]]:
    """Every parameter name of the given methods (default: all registered): its type and the methods that have it."""
    params: dict[str, tuple[type, list[str]]] = {}
    for name in methods if methods is not None else list_methods():
        for field in get_method(name).param_fields():
            kind = param_type(field)
            known = params.setdefault(field.name, (kind, []))
            if known[0] is not kind:
                raise TypeError(f"parameter {field.name} has type {known[0].__name__} and {kind.__name__}")
            known[1].append(name)
    return params


def epilog(task: str) -> str:
    methods = "\n".join(
        f"  {name}: " + (", ".join(f"{f.name}={f.default!r}" for f in get_method(name).param_fields()) or "(no parameters)")
        for name in list_methods()
    )
    return (f"benchmark protocols (defaults; a flag overrides one field):\n{protocol_table(task)}\n\n"
            f"methods and their parameters (dataclass defaults; presets change them: python -m eval.methods):\n"
            f"{methods}\n")


def add_method_arguments(parser: argparse.ArgumentParser, methods: Sequence[str], default_method: str) -> None:
    """``--method`` (among ``methods``), ``--preset``, ``--method-args`` and one flag per parameter of those methods."""
    group = parser.add_argument_group("method (python -m eval.methods lists methods, parameters and presets)")
    add(group, "--method", choices=list(methods), default=default_method, help=f"default: {default_method}")
    add(group, "--preset", default=None,
        help=f"the method's named settings ({', '.join(STANDARD_PRESETS)}, ...; default: paper)")
    add(group, "--method-args", default=None, metavar="K=V,...",
        help="the method's parameters under their official names, e.g. tau=2.0,alpha=1.2")
    for name, (kind, owners) in method_parameters(methods).items():
        add(group, f"--{name.replace('_', '-')}", dest=name, type=_converter(kind), default=None,
            help=f"{'/'.join(owners)} parameter (alias of --method-args {name}=...)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and where it runs."""
    group = parser.add_argument_group("model")
    families = ", ".join(spec.display for spec in list_families())
    trials = ", ".join(name for name in synthetic_names() if name.startswith("tiny"))
    add(group, "--model-path", required=True,
        help=f"checkpoint folder or hub id ({families}), or a random model for trials: {trials}")
    add(group, "--vision-tower", default=None, help="override mm_vision_tower of original LLaVA checkpoints")
    add(group, "--dtype", choices=DTYPE_NAMES, default=None, help="default: float16 on GPU, float32 on CPU")
    add(group, "--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    add(group, "--attn", choices=("sdpa", "eager"), default=None, help="default: sdpa on GPU, eager on CPU")


def build_parser(task: str, prog: str, description: str, default_method: str) -> argparse.ArgumentParser:
    """The parser of a runner for ``task`` (``caption`` or ``yesno``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog(task),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    if task == "caption":
        add(data, "--dataset-type", choices=benchmarks_of("caption"), required=True)
        add(data, "--image-folder", required=True, help="COCO val2014 / DOCCI images (also IIW-400's) / any folder")
        add(data, "--annotation-file", default=None, help="IIW-400 data.jsonl or DOCCI docci_descriptions.jsonl(ines)")
        add(data, "--num-samples", type=int, default=None, help="subset size (default: the benchmark's: 500 for coco "
            "and docci, all otherwise)")
        add(data, "--subset-manifest", default=None, help="run exactly the ids of this manifest, in its order")
        add(data, "--prompt", default=None, help="the captioning question (default: the benchmark's)")
    else:
        add(data, "--benchmark", choices=benchmarks_of("yesno"), required=True)
        add(data, "--image-folder", required=True, help="COCO val2014 / GQA images (POPE), MME release folder, AMBER images")
        add(data, "--question-file", default=None,
            help="POPE question file; MME: a jsonl (default: the shipped 240-question hallucination subset) or a "
                 "ground-truth folder (all its questions); AMBER query file (default: the shipped query_all.json)")
        add(data, "--pope-split", choices=POPE_SPLITS, default=None,
            help="use the shipped POPE question file of this dataset/setting (the VCD copies AvisC used)")

    add_method_arguments(parser, list_methods(), default_method)

    protocol = parser.add_argument_group("protocol (default: the benchmark's; each flag overrides one field)")
    add(protocol, "--conv-mode", default=None, help="conversation template")
    add(protocol, "--image-aspect", choices=ASPECT_MODES, default=None, help="image preprocessing (LLaVA)")
    add(protocol, "--min-pixels", type=int, default=None,
        help="Qwen2-VL: fewest pixels of a resized image (default: the checkpoint's processor)")
    add(protocol, "--max-pixels", type=int, default=None,
        help="Qwen2-VL: most pixels of a resized image (default: the checkpoint's processor)")
    add(protocol, "--decoding", choices=DECODINGS, default=None)
    add(protocol, "--temperature", type=float, default=None, help="0 = greedy; > 0 alone = sampling at it")
    add(protocol, "--top-k", type=int, default=None)
    add(protocol, "--top-p", type=float, default=None)
    add(protocol, "--max-new-tokens", type=int, default=None, help="tokens generated at most per answer")
    add(protocol, "--seed", type=int, default=None, help="subset draw and sampling (each sample its own generator)")
    add(protocol, "--num-beams", type=int, default=None, help="beam search width (greedy decoding only)")
    add(protocol, "--text-cut", default=None, help="end each answer before the first occurrence of this text "
        "(OPERA's official protocol: '###'; '' = no cut)")

    add_model_arguments(parser)

    run = parser.add_argument_group("run")
    add(run, "--batch-size", type=int, default=1, help="sequences decoded together (same outputs as 1)")
    add(run, "--limit", type=int, default=None, help="only the first N samples (quick trials; marked in reports)")
    add(run, "--save-path", required=True, help="output folder")
    add(run, "--experiment-name", required=True, help="output file stem")
    add(run, "--overwrite", action="store_true", help="discard earlier outputs of this experiment")
    add(run, "--strict", action="store_true", help="exit non-zero when any sample was skipped")
    add(run, "--check-only", action="store_true",
        help="resolve and check every setting (method, protocol, files, output folder), then exit without loading "
             "the model (the scripts check every method this way before the first run)")
    return parser


def parse_method_args(text: str | None, method: str) -> dict[str, Any]:
    """``"k=v,k2=v2"`` as the parameters of ``method``, each converted to its field's type."""
    if not text:
        return {}
    spec = get_method(method)
    fields = {f.name: f for f in spec.param_fields()}
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise InputError(f"--method-args: {item!r} is not NAME=VALUE")
        if name not in fields:
            raise InputError(f"--method-args: {spec.unknown_param_message(name)}")
        if name in values:
            raise InputError(f"--method-args: {name} is set twice")
        try:
            values[name] = _converter(param_type(fields[name]))(raw.strip())
        except ValueError as e:
            raise InputError(f"--method-args: {name}: {e}") from None
    return values


def method_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The method parameters set on the command line, by ``--method-args`` and by the parameter flags."""
    overrides = parse_method_args(args.method_args, args.method)
    spec = get_method(args.method)
    for name in method_parameters():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in spec.param_names():
            raise InputError(f"--{name.replace('_', '-')}: {spec.unknown_param_message(name)}")
        if name in overrides and overrides[name] != value:
            raise InputError(f"{name} is set twice: --method-args {name}={overrides[name]} and "
                             f"--{name.replace('_', '-')} {value}")
        overrides[name] = value
    return overrides


def protocol_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The protocol fields set on the command line (``--temperature 0`` meaning greedy, as the official eval.py)."""
    overrides = {name: getattr(args, name) for name in PROTOCOL_FIELDS if getattr(args, name, None) is not None}
    if overrides.get("text_cut") == "":  # no cut, recorded as the benchmarks' own no-cut value
        overrides["text_cut"] = None
    temperature = overrides.get("temperature")
    if temperature is not None and temperature < 0:
        raise InputError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if temperature is not None and temperature == 0:
        if overrides.get("decoding", "greedy") != "greedy":
            raise InputError("--temperature 0 means greedy decoding, but --decoding sample was given")
        del overrides["temperature"]
        overrides["decoding"] = "greedy"
    elif temperature is not None:
        overrides.setdefault("decoding", "sample")
    return overrides


def run_spec(args: argparse.Namespace, task: str) -> Any:
    """Every setting of a run resolved and checked (names, values, layers against the checkpoint's config, files,
    the output folder), before any model is loaded. Raises :class:`InputError` with one line."""
    from eval.files import check_output_folder
    from eval.run import DataSettings, ModelSettings, OutputSettings, RunSpec, check_spec
    from llava.model.builder import CheckpointError, inspect_checkpoint, resolve_device

    benchmark = get_benchmark(args.dataset_type if task == "caption" else args.benchmark)
    try:
        info = inspect_checkpoint(args.model_path)
        info.check_settings(args.image_aspect, args.conv_mode, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
        resolved = resolve_run(benchmark, info.family, args.method, args.preset, method_overrides(args),
                               protocol_overrides(args), info.settings, info.num_layers)
        resolve_device(args.device)
    except (CheckpointError, ValueError) as e:
        raise InputError(str(e)) from None
    spec = RunSpec(
        run=resolved,
        model=ModelSettings(args.model_path, args.vision_tower, args.dtype, args.device, args.attn),
        data=DataSettings(
            image_folder=Path(args.image_folder),
            annotation_file=getattr(args, "annotation_file", None),
            question_file=getattr(args, "question_file", None),
            pope_split=getattr(args, "pope_split", None),
            num_samples=getattr(args, "num_samples", None),
            subset_manifest=getattr(args, "subset_manifest", None),
            limit=args.limit,
        ),
        output=OutputSettings(Path(args.save_path), args.experiment_name, args.batch_size, args.overwrite, args.strict),
        num_layers=info.num_layers,
    )
    check_spec(spec)
    check_output_folder(spec.output.save_path)
    return spec


def git_commit() -> str | None:
    """The project's git commit (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def environment(device: Any = None) -> dict[str, Any]:
    """Versions, commit and device for ``_results.json``."""
    import accelerate
    import torch
    import transformers

    import llava

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "llava": llava.__version__,
        "commit": git_commit(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def runner_main(task: str, prog: str, description: str, default_method: str, argv: Sequence[str] | None) -> int:
    """Parse, resolve and check everything, then run (:func:`eval.run.execute`)."""
    args = build_parser(task, prog, description, default_method).parse_args(argv)
    spec = run_spec(args, task)
    if args.check_only:
        print(f"{prog}: settings of {spec.output.experiment_name!r} checked ({spec.run.method}, preset "
              f"{spec.run.preset}, {spec.run.benchmark.name})")
        return 0
    from eval.run import execute

    return execute(spec)


class Terminated(BaseException):
    """SIGTERM (what schedulers send), raised like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not interrupt the first one's cleanup
    raise Terminated


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI ``main``: bad input is one clear line and exit status 2, an interruption one line and 130 (Ctrl-C)
    or 143 (SIGTERM), not a traceback."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = main(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: the answers written so far are kept; rerun the same command to resume", file=sys.stderr)
        code = 130
    except Terminated:
        print("terminated (SIGTERM): the answers written so far are kept; rerun the same command to resume",
              file=sys.stderr)
        code = 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
