"""Keep TensorFlow's C++ log lines off a command's stderr, as `run` does by logging each case.

TensorFlow writes start-up notes ("oneDNN custom operations are on ...", absl's "All log messages
before absl::InitializeLog() ...") straight to file descriptor 2 from C++, before
TF_CPP_MIN_LOG_LEVEL is read, so Python cannot catch them. `native_logs_filtered` points fd 2 at a
temporary file while a command runs, keeps Python's own stderr (progress lines, tracebacks) on the
terminal, and afterwards writes back every native line except the absl-format log lines
(NATIVE_LOG_LINE): nothing a user needs is dropped, only the notes.

Constraints: only where sys.stderr is the process's own stderr (a test's captured stderr is left
alone); the descriptors are restored however the command ends.
"""

from __future__ import annotations

import functools
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# absl's log prefix (severity, date, time, thread, file:line]) and its pre-initialisation notice.
NATIVE_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] |"
                             r"WARNING: All log messages before absl::InitializeLog\(\) is called)")


def without_log_lines(text: str) -> str:
    """`text` without the lines in absl's log format."""
    return "".join(line for line in text.splitlines(keepends=True) if not NATIVE_LOG_LINE.match(line))


@contextmanager
def native_logs_filtered() -> Iterator[None]:
    if sys.stderr is not sys.__stderr__ or sys.__stderr__ is None:
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        python_stderr = sys.stderr
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(terminal), "wb", buffering=0), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        try:
            yield
        finally:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = python_stderr
            os.dup2(terminal, 2)
            os.close(terminal)
            log.seek(0)
            kept = without_log_lines(log.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quiet_native_logs(command: Callable[..., int]) -> Callable[..., int]:
    """A command function run inside native_logs_filtered (its exit code unchanged)."""
    @functools.wraps(command)
    def run(*args, **kwargs) -> int:
        with native_logs_filtered():
            return command(*args, **kwargs)
    return run
