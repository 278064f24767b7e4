"""The command line of both runners (``eval.caption``, ``eval.vqa``): arguments built from the benchmark specs and the
method registry, turned into one :class:`~eval.run.RunSpec` with every setting checked before a model is loaded.

Flags (dash and the official underscore spellings):

- data: the flags of the runner's task kinds (captioning: ``--dataset-type``, ``--annotation-file``,
  ``--num-samples``, ``--subset-manifest``, ``--prompt``; questions: ``--benchmark``, ``--question-file``, and a
  benchmark's split flag such as ``--pope-split``);
- ``--method NAME`` any registered method; ``--preset NAME`` (default ``paper``); ``--method-args k=v,...`` with the
  method's own parameter names; one flag per parameter of **the chosen method** (``--tau``, ``--cd-alpha``, ...) as
  an alias of ``--method-args`` (``--method sparc --help`` lists SPARC's). A parameter of another method is an error
  that says whose it is; one method's parameter types never touch another's flags.
- protocol flags (``--conv-mode``, ``--image-aspect``, ``--min-pixels``, ``--max-pixels``, ``--decoding``,
  ``--temperature``, ``--top-k``, ``--top-p``, ``--max-new-tokens``, ``--seed``, ``--num-beams``, ``--text-cut``)
  override one field of the benchmark's protocol each; ``--temperature 0`` is greedy decoding and a temperature > 0
  alone means sampling, as the official SPARC ``eval.py``.

Nothing heavy is imported here: ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from eval.benchmarks import DataSettings, benchmarks_of, get_benchmark, protocol_table, resolve_run
from eval.files import InputError, exit_status
from eval.methods import get_method, list_methods, param_type
from llava.constants import ASPECT_MODES, DTYPE_NAMES
from llava.methods import STANDARD_PRESETS
from llava.model.families import list_families, synthetic_names
from llava.settings import DECODINGS, PROTOCOL_FIELDS


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


def parameter_flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def other_methods_flags(method: str) -> dict[str, str]:
    """Flag spelling (dash and underscore) -> parameter name, for the parameters of every method but ``method``."""
    own = set(get_method(method).param_names())
    flags = {}
    for name in list_methods():
        for param in get_method(name).param_names():
            if param not in own:
                flags[parameter_flag(param)] = flags[f"--{param}"] = param
    return flags


def epilog(runner: str, method: str) -> str:
    spec = get_method(method)
    params = ", ".join(f"{f.name}={f.default!r}" for f in spec.param_fields()) or "(no parameters)"
    return (f"benchmark protocols (defaults; a flag overrides one field):\n{protocol_table(runner)}\n\n"
            f"methods: {', '.join(list_methods())} (python -m eval.methods lists their parameters and presets; "
            f"--method NAME --help shows its flags)\nthe chosen method's parameters (dataclass defaults; presets "
            f"change them):\n  {method}: {params}\n")


def add_method_arguments(parser: argparse.ArgumentParser, methods: Sequence[str], method: str,
                         default: str | None = None) -> None:
    """``--method`` (among ``methods``; ``method`` is the one chosen, ``default`` the runner's), ``--preset``,
    ``--method-args`` and one flag per parameter of ``method``."""
    group = parser.add_argument_group("method (python -m eval.methods lists every method's parameters and presets)")
    add(group, "--method", choices=list(methods), default=method, help=f"default: {default or method}")
    add(group, "--preset", default=None,
        help=f"the method's named settings ({', '.join(STANDARD_PRESETS)}, ...; default: paper)")
    add(group, "--method-args", default=None, metavar="K=V,...",
        help="the method's parameters under their official names, e.g. tau=2.0,alpha=1.2")
    for field in get_method(method).param_fields():
        add(group, parameter_flag(field.name), dest=field.name, type=_converter(param_type(field)), default=None,
            help=f"{method} parameter (alias of --method-args {field.name}=...; default {field.default!r})")


def chosen_method(argv: Sequence[str], default: str) -> str:
    """The ``--method`` of ``argv`` (before the full parse, whose flags depend on it); ``default`` when absent, and
    when the value is not a method (the full parse then reports it)."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--method", default=default)
    known, _ = probe.parse_known_args(list(argv))
    return known.method if known.method in list_methods() else default


def refuse_other_methods_flags(argv: Sequence[str], method: str) -> None:
    """A parameter flag of another method is an :class:`InputError` naming the parameter and the chosen method's own
    (argparse would only say "unrecognized arguments")."""
    flags = other_methods_flags(method)
    for item in argv:
        flag = item.split("=", 1)[0]
        if flag in flags:
            raise InputError(f"{flag}: {get_method(method).unknown_param_message(flags[flag])}")


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


def add_data_arguments(parser: argparse.ArgumentParser, runner: str) -> None:
    """The data flags of the benchmarks ``runner`` runs (see the module docstring)."""
    specs = [get_benchmark(name) for name in benchmarks_of(runner)]
    selector = specs[0].task.selector
    data = parser.add_argument_group("data")
    add(data, selector, dest="benchmark", choices=[spec.name for spec in specs], required=True)
    add(data, "--image-folder", required=True, help="the benchmark's images (see its README section)")
    if any(not spec.task.own_question for spec in specs):
        add(data, "--annotation-file", default=None, help="IIW-400 data.jsonl or DOCCI docci_descriptions.jsonl(ines)")
        add(data, "--num-samples", type=int, default=None, help="subset size (default: the benchmark's: 500 for coco "
            "and docci, 400 for iiw, all for folder)")
        add(data, "--subset-manifest", default=None, help="run exactly the ids of this manifest, in its order")
        add(data, "--prompt", default=None, help="the captioning question (default: the benchmark's)")
    if any(spec.task.own_question for spec in specs):
        add(data, "--question-file", default=None,
            help="the benchmark's questions (POPE question file; MME: a jsonl, default the shipped 240-question "
                 "hallucination subset, or a ground-truth folder; AMBER: default the shipped query_all.json; "
                 "LLaVA-Bench: questions.jsonl)")
    for spec in specs:
        if spec.split is not None:
            add(data, spec.split.flag, dest="split", choices=list(spec.split.choices), default=None,
                help=f"{spec.name}: {spec.split.help}")


def build_parser(runner: str, prog: str, description: str, method: str,
                 default_method: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``runner`` (``eval.caption`` or ``eval.vqa``), with the flags of ``method``'s parameters."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog(runner, method),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, runner)
    add_method_arguments(parser, list_methods(), method, default_method)

    protocol = parser.add_argument_group("protocol (default: the benchmark's; each flag overrides one field)")
    add(protocol, "--conv-mode", default=None, help="conversation template (LLaVA)")
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


def parse_args(runner: str, prog: str, description: str, default_method: str,
               argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse a runner's command line: the method first (its parameters are the flags), then everything."""
    argv = list(sys.argv[1:] if argv is None else argv)
    method = chosen_method(argv, default_method)
    refuse_other_methods_flags(argv, method)
    return build_parser(runner, prog, description, method, default_method).parse_args(argv)


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
    for name in get_method(args.method).param_names():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in overrides and overrides[name] != value:
            raise InputError(f"{name} is set twice: --method-args {name}={overrides[name]} and "
                             f"{parameter_flag(name)} {value}")
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


def run_spec(args: argparse.Namespace) -> Any:
    """Every setting of a run resolved and checked (names, values, layers against the checkpoint's config, files,
    the output folder), before any model is loaded. Raises :class:`InputError` with one line."""
    from eval.files import check_output_folder
    from eval.run import ModelSettings, OutputSettings, RunSpec, check_spec
    from llava.model.builder import CheckpointError, inspect_checkpoint, resolve_device

    benchmark = get_benchmark(args.benchmark)
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
            split=getattr(args, "split", None),
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


def runner_main(runner: str, prog: str, description: str, default_method: str, argv: Sequence[str] | None) -> int:
    """Parse, resolve and check everything, then run (:func:`eval.run.execute`)."""
    args = parse_args(runner, prog, description, default_method, argv)
    spec = run_spec(args)
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
        code = exit_status(lambda: main(argv),
                           "interrupted: the answers written so far are kept; rerun the same command to resume")
    except Terminated:
        print("terminated (SIGTERM): the answers written so far are kept; rerun the same command to resume",
              file=sys.stderr)
        code = 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)
