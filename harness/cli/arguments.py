"""The parser pieces every command shares: model, threads and executor options, help layout,
and the choices the backend registry offers (backends, modes, devices)."""

from __future__ import annotations

import argparse
import textwrap

from backends import backend_names, registry
from harness.cli.options import bounded_int
from harness.model.spec import PRESETS
from harness.model.variants import AXES, BASELINE, SHORTHANDS
from harness.results.environment import available_cores

DEFAULT_THREADS = available_cores() or 1


def choices() -> tuple[list[str], list[str], list[str]]:
    """The backends, modes and devices the registry offers (for argparse `choices`)."""
    modes = list(dict.fromkeys(m for cls in registry().values() for m in cls.MODES))
    devices = list(dict.fromkeys(d for cls in registry().values() for d in cls.DEVICES))
    return backend_names(), modes, devices


def add_model_args(parser, default_all: bool = False) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", choices=list(PRESETS),
                       help="a built-in preset: mlp (784-512-256-10) or cnn (the Keras MNIST CNN)"
                            + (" (default: both)" if default_all else " (default: mlp)"))
    group.add_argument("--spec", metavar="FILE", help="a JSON or TOML model spec file (README: Model spec)")


def add_pair_args(parser) -> None:
    """Your own models: a torch factory, its Keras port's, and the data the harness feeds them
    (harness/ported/pair.py; checked by harness.cli.options.pair_source)."""
    own = parser.add_argument_group("your own models (instead of --model/--spec; README: Your own models)")
    own.add_argument("--torch", metavar="MODULE:FUNCTION", help="a function returning your torch.nn.Module")
    own.add_argument("--keras", metavar="MODULE:FUNCTION", help="a function returning its Keras port (functional)")
    own.add_argument("--input-shape", metavar="DIMS", help="one example's shape in torch's layout, e.g. 3,32,32 "
                                                           "(Keras gets float inputs channels-last)")
    own.add_argument("--input-ints", type=bounded_int(2, 10**9), metavar="V",
                     help="inputs are integer ids in [0, V) (e.g. tokens) instead of normal floats")
    own.add_argument("--classes", type=bounded_int(2, 10**6), metavar="N", help="the number of logits")
    own.add_argument("--batch", type=bounded_int(2, 4096), default=8, metavar="N", help="batch size (default: 8)")
    own.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=0, metavar="S", help="(default: 0)")


def add_threads(parser, per_node: bool = False, default_text: str = "") -> None:
    """--threads; `per_node`: a command whose cases may run on a Ray cluster leaves it unset
    (None) by default, so that each case takes the cores of the node it lands on. `default_text`:
    what the default is, where the command decides it otherwise."""
    default = default_text or ((f"{DEFAULT_THREADS}, the cores available; with --executor ray the cores of the node "
                                "a timing case owns, 1 for the others") if per_node
                               else f"{DEFAULT_THREADS}, the cores available")
    parser.add_argument("--threads", type=bounded_int(1, 1 << 20), default=None if per_node else DEFAULT_THREADS,
                        help=f"intra-op threads for each framework, set before first use (default: {default}; "
                             "more than the cores here needs --oversubscribe)")
    parser.add_argument("--oversubscribe", action="store_true", help="allow --threads above the cores available")


def add_executor(parser) -> None:
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: the cases on this machine (default; one after another, but `study` trains --jobs "
                             "at once); ray: each case a Ray "
                             "task on the cluster at --ray-address, timing cases each on a node of its own "
                             "(README: Running on a Ray cluster; needs the ray extra)")
    parser.add_argument("--ray-address", metavar="ADDR", default="auto",
                        help="the Ray cluster to use with --executor ray: host:port of its head, or auto (the "
                             "cluster this machine belongs to; default: auto)")


class LineKeepingFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so its line breaks are kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        def hanging(line: str) -> str:  # an indented line continues 4 columns further in
            depth = len(line) - len(line.lstrip())
            return indent + " " * (depth + 4 if depth else 0)

        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hanging(line),
                                        break_on_hyphens=False) for line in text.splitlines())


def epilog(*examples: str, variants: bool = True) -> dict:
    lines = ["examples:", *(f"  python -m harness {example}" for example in examples)]
    if variants:
        lines += ["", f"variants: '{BASELINE}' or comma-separated key=value settings, e.g. 'dropout=0,bn=before':",
                  *(f"  {axis.key}={axis.help}" for axis in AXES), f"  shorthands: {', '.join(SHORTHANDS)}"]
    return {"epilog": "\n".join(lines), "formatter_class": LineKeepingFormatter}


def subcommand(sub, name: str, func, **options) -> argparse.ArgumentParser:
    """A command's parser, bound to the function that runs it."""
    parser = sub.add_parser(name, **options)
    parser.set_defaults(func=func)
    return parser
