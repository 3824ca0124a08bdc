"""Command line: a thin layer over the library. `python -m harness COMMAND --help` for each.

Exit codes: 0 success; 1 a parity check failed (or a run had failed cases); 2 bad input (one
line on stderr, no traceback); 3 skipped: the backend's framework or the device is not available
here; 130 interrupted by Ctrl-C, 143 stopped by SIGTERM (both unwind alike: workers killed,
temporary files removed, a run's finished cases kept). Each command module (parity, time,
percall, calibrate, run, sweep, report) adds its parser; backend, mode and device choices come from the registry.
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness.cli import calibrate, parity, percall, report, run, sweep, time
from harness.cli.arguments import LineKeepingFormatter
from harness.cli.options import allocation_failure, check_threads
from harness.errors import HarnessInputError, report_expected_error
from harness.running.stopping import sigterm_as_interrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", formatter_class=LineKeepingFormatter,
        description="Cross-framework (PyTorch vs TensorFlow/Keras 3) parity and per-training-step timing.\n"
                    "Exit codes: 0 ok; 1 a parity check or a case failed; 2 bad input; 3 skipped (framework or "
                    "device not available here); 130 interrupted (Ctrl-C); 143 stopped by SIGTERM.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parity.add_parsers(sub)
    time.add_parser(sub)
    percall.add_parser(sub)
    calibrate.add_parser(sub)
    run.add_parsers(sub)
    sweep.add_parser(sub)
    report.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt() as received:
            if getattr(args, "threads", None) is not None:
                check_threads(args.threads, args.oversubscribe)
            return args.func(args)
    except HarnessInputError as exc:  # BackendUnavailable too
        return report_expected_error(exc)
    except KeyboardInterrupt:
        print(received.get("name", "interrupted"), file=sys.stderr)
        return 128 + received.get("number", signal.SIGINT)
    except Exception as exc:
        if not allocation_failure(exc):
            raise
        where = getattr(args, "spec", None) or f"--model {getattr(args, 'model', None) or 'mlp'}"
        print(f"error: {where}: the framework could not allocate memory for this model "
              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", file=sys.stderr)
        return 2
