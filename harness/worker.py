"""The body every worker process shares (harness/timing_worker.py, harness/study_worker.py): run
the job, write its records to OUT as a JSON list, and exit as the CLI does (2 bad input, 3 the
framework or device is not available here, with the CLI's one line).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from harness.errors import HarnessInputError, report_expected_error
from harness.records import Record


def run_job(produce: Callable[[], Sequence[Record]], out_path: str) -> int:
    try:
        records = produce()
    except HarnessInputError as exc:  # BackendUnavailable too
        return report_expected_error(exc)
    with open(out_path, "w", encoding="utf-8") as out:
        json.dump([record.as_dict() for record in records], out)
    return 0
