"""The exception types that mean "the user gave us bad input" or "this cannot run here".

The CLI turns HarnessInputError into a single line on stderr and exit code 2, without a
traceback. Its message names the bad value and where it came from:
`spec.json: layers[2].rate: 1.5 is not in [0, 1)`. BackendUnavailable (a backend's framework
or device is missing here) becomes `skipped: <reason>` and EXIT_SKIPPED, which `run` records as
a skipped case. Anything else that escapes is a bug in the harness and keeps its traceback.
"""

EXIT_SKIPPED = 3


class HarnessInputError(ValueError):
    """Bad input from the user: a spec file, a variant string, a CLI value, a results folder."""


class BackendUnavailable(HarnessInputError):
    """A backend's framework does not import here, or the device it was asked for is absent."""

EXIT_BAD_INPUT = 2


def report_expected_error(exc: BaseException) -> int | None:
    """For an expected failure, print its one line on stderr and return its exit code (skipped:
    EXIT_SKIPPED; bad input: EXIT_BAD_INPUT); None for anything else (a bug: re-raise it). The
    CLI and the timing worker processes both exit through this, so a worker's exit code and last
    line mean what the CLI's do."""
    import sys

    if isinstance(exc, BackendUnavailable):
        print(f"skipped: {exc}", file=sys.stderr)
        return EXIT_SKIPPED
    if isinstance(exc, HarnessInputError):
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return None
