"""Progress of a run's cases on stderr: a rich bar with the case label, elapsed time and an ETA on
a terminal, one plain line per case otherwise (logs, CI).

It only displays: it reads each case's `case_id`, `label` and `expected_s` (the planner's
estimate, scaled by how long the finished cases really took) and never touches results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from harness.results.records import CaseRecord
from harness.running.case import Case


def case_progress(todo: Sequence[Case], already_ok: int):
    """The progress display for these cases: a bar on a terminal, one line per case otherwise."""
    if already_ok:
        print(f"resuming: {already_ok} cases already ok, {len(todo)} to run", file=sys.stderr)
    return _BarProgress(todo) if sys.stderr.isatty() else _PlainProgress(todo)


class _PlainProgress:
    """One line per case, for logs and CI: `[3/12] time/torch/mlp/cpu/eager ... ok (14.2 s)`.
    With several cases in flight (the Ray executor), a case that finishes while another's line is
    open gets a line of its own."""

    def __init__(self, todo: Sequence[Case]):
        self.total = len(todo)
        self.numbers: dict[str, int] = {}
        self.open: str | None = None  # the case whose line waits for its status

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def start(self, case: Case) -> None:
        self.numbers[case.case_id] = len(self.numbers) + 1
        if self.open is None:
            print(self._prefix(case), end="", file=sys.stderr, flush=True)
            self.open = case.case_id

    def finish(self, case: Case, status: str, elapsed_s: float) -> None:
        if self.open == case.case_id:
            print(f"{status} ({elapsed_s:.1f} s)", file=sys.stderr, flush=True)
        else:
            if self.open is not None:
                print(file=sys.stderr)  # end the open line; that case gets its own when it finishes
            print(f"{self._prefix(case)}{status} ({elapsed_s:.1f} s)", file=sys.stderr, flush=True)
        self.open = None

    def _prefix(self, case: Case) -> str:
        return f"[{self.numbers.get(case.case_id, 0)}/{self.total}] {case.case_id} ... "


class _EtaColumn(ProgressColumn):
    """Time left, from the expected time of the cases not yet finished.

    The estimates are scaled by actual/expected time of the finished cases, once there are any.
    """

    def render(self, task) -> Text:
        fields = task.fields
        if not fields.get("case_started"):
            return Text("")
        scale = fields["actual_s"] / fields["expected_done_s"] if fields["expected_done_s"] else 1.0
        in_case = time.monotonic() - fields["case_started"]
        left = scale * fields["expected_after_s"] + max(0.0, scale * fields["expected_now_s"] - in_case)
        minutes, seconds = divmod(int(left), 60)
        return Text(f"ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}", style="progress.remaining")


class _BarProgress:
    """A rich progress bar on stderr: case i/N, the case's label, elapsed time and ETA."""

    def __init__(self, todo: Sequence[Case]):
        self.todo = list(todo)
        self.index = 0
        self.progress = Progress(
            TextColumn("case {task.fields[number]}/{task.total:.0f}"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task("", total=len(self.todo), number=0, actual_s=0.0,
                                           expected_done_s=0.0, case_started=None)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc_info):
        self.progress.stop()
        return False

    def start(self, case: Case) -> None:
        remaining = self.todo[self.index + 1:]
        self.progress.update(
            self.task, description=case.label, number=self.index + 1,
            case_started=time.monotonic(),
            expected_now_s=case.expected_s,
            expected_after_s=sum(c.expected_s for c in remaining))

    def finish(self, case: Case, status: str, elapsed_s: float) -> None:
        self.index += 1
        fields = self.progress.tasks[0].fields
        self.progress.update(
            self.task, advance=1,
            actual_s=fields["actual_s"] + elapsed_s,
            expected_done_s=fields["expected_done_s"] + case.expected_s)
        if status != CaseRecord.OK:
            self.progress.console.print(f"{case.case_id}: {status} ({elapsed_s:.1f} s)")
