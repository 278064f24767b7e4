"""Every decoding method of this project, by name: ``python -m eval.methods`` lists them with their parameters,
defaults and presets.

Importing this module registers all methods (each package's light config module registers its own, see
:mod:`llava.methods`); use :func:`list_methods`, :func:`get_method` and :func:`create_method` from here.

>>> "sparc" in list_methods() and "avisc" in list_methods()
True
>>> get_method("sparc").resolve("paper", family="llava_next").params["tau"]
4.0
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Any, Sequence

from llava.methods import STANDARD_PRESETS, ByDepth, MethodSpec, create_method, get_method, list_methods
from llava.model.families import family_names

METHOD_MODULES = ("sparc.config", "avisc.config", "sparc.pai.config", "sparc.opera.config")
"""The light modules that register this project's methods, in the order they are listed."""

for _module in METHOD_MODULES:
    importlib.import_module(_module)

__all__ = ["METHOD_MODULES", "create_method", "describe", "get_method", "list_methods", "param_type"]

def param_type(field: dataclasses.Field) -> type:
    """The Python type of a config field (configs use postponed annotations: ``"float"``, ``"int"``, ...)."""
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    types = {"float": float, "int": int, "bool": bool, "str": str}
    if annotation not in types:
        raise TypeError(f"config field {field.name}: unsupported type {annotation!r}")
    return types[annotation]


def _value(value: Any) -> str:
    if isinstance(value, ByDepth):
        return f"<{value.text}>"
    return repr(value) if isinstance(value, str) else str(value)


def describe(spec: MethodSpec) -> str:
    """A method's parameters with their defaults, and every preset with what it sets per model family."""
    lines = [f"{spec.name}: {spec.description}"]
    if spec.source:
        lines.append(f"  follows: {spec.source}")
    params = ", ".join(f"{f.name}={_value(f.default)}" for f in spec.param_fields()) or "(none)"
    lines.append(f"  parameters (defaults): {params}")
    seen: dict[int, str] = {}
    for name, preset in spec.presets.items():
        if id(preset) in seen:
            lines.append(f"  preset {name}: the same as {seen[id(preset)]}")
            continue
        seen[id(preset)] = name
        lines.append(f"  preset {name}: {preset.description}")
        if preset.values:
            lines.append("    " + ", ".join(f"{k}={_value(v)}" for k, v in preset.values.items()))
        for rule in preset.rules:
            values = ", ".join(f"{k}={_value(v)}" for k, v in rule.values.items())
            lines.append(f"    where {rule.label()}: {values}")
    for default in spec.family_defaults:
        values = ", ".join(f"{k}={_value(v)}" for k, v in default.values.items()) or "the presets' values"
        lines.append(f"  on {'|'.join(default.families)} ({default.note}): {values}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.methods", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="methods to describe (default: all)")
    parser.add_argument("--resolve", metavar="PRESET", default=None,
                        help=f"also print the resolved parameters of PRESET ({', '.join(STANDARD_PRESETS)}, ...) "
                             "per family, for --benchmark")
    parser.add_argument("--benchmark", default=None, help="benchmark for --resolve (coco, pope, mme, amber, ...)")
    args = parser.parse_args(argv)
    try:
        specs = [get_method(name) for name in args.names or list_methods()]
        for spec in specs:
            print(describe(spec))
            if args.resolve:
                for family in family_names():
                    params = spec.resolve(args.resolve, family=family, benchmark=args.benchmark).params
                    print(f"  {args.resolve} on {family}: " + (", ".join(f"{k}={_value(v)}" for k, v in params.items())
                                                              or "(no parameters)"))
            print()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
