"""A run folder's plan (plan.json): what the run was started to do, so that --resume can only
continue the same run.

Written once, before the first case runs, so a run killed during its first case (even by
SIGKILL) can still be resumed. The plan is the command (`run` or `study`), the thread count and
every case's id and argv: resuming with another suite, other backends, models, variants, data or
threads changes one of them, and the resume is refused with the first difference named (case ids
alone are not enough: the quick and default suites share ids whose argv differ).
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessInputError
from harness.files import parse_json, read_small_file
from harness.running.case import Case

PLAN_FILE = "plan.json"
PLAN_MAX_BYTES = 16 * 1024 * 1024  # a suite of thousands of cases is a few MB


@dataclass(frozen=True)
class RunPlan:
    command: str  # "run" or "study"
    threads: int | None  # None: chosen per node (Ray)
    cases: dict[str, tuple[str, ...]]  # case_id -> argv, in run order

    @classmethod
    def of(cls, command: str, threads: int | None, cases: Sequence[Case]) -> RunPlan:
        return cls(command, threads, {case.case_id: tuple(case.argv) for case in cases})

    def as_dict(self) -> dict:
        return {"command": self.command, "threads": self.threads,
                "cases": [{"case_id": cid, "argv": list(argv)} for cid, argv in self.cases.items()]}

    @classmethod
    def read(cls, path: Path) -> RunPlan:
        data = parse_json(read_small_file(path, PLAN_MAX_BYTES), str(path))
        try:
            return cls(str(data["command"]), data["threads"],
                       {str(c["case_id"]): tuple(str(t) for t in c["argv"]) for c in data["cases"]})
        except (KeyError, TypeError) as exc:
            raise HarnessInputError(f"{path}: not a run plan ({type(exc).__name__}: {exc})") from None

    def write(self, path: Path) -> None:
        """Write atomically (a killed write leaves no half plan)."""
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(partial, path)

    def difference(self, earlier: RunPlan) -> str:
        """The first way this plan differs from `earlier` (the folder's), or "" when they agree."""
        if self.command != earlier.command:
            return f"the folder holds a `{earlier.command}` run, this is `{self.command}`"
        if self.threads != earlier.threads:
            return f"the folder's run used {earlier.threads} threads, this one {self.threads} (--threads)"
        only_new = [cid for cid in self.cases if cid not in earlier.cases]
        only_old = [cid for cid in earlier.cases if cid not in self.cases]
        if only_new or only_old:
            return "; ".join(f"{len(ids)} case{'' if len(ids) == 1 else 's'} only in {where} "
                             f"({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})"
                             for ids, where in ((only_new, "this plan"), (only_old, "the folder's"))
                             if ids)
        for cid, argv in self.cases.items():
            if argv != earlier.cases[cid]:
                return f"case {cid} is planned differently: {_token_change(earlier.cases[cid], argv)}"
        return ""


def _token_change(before: Sequence[str], after: Sequence[str]) -> str:
    """The first changed stretch of two argv, e.g. "`--variant dropout=0` is now `--variant dropout=0 l2=0`"."""
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    tag, i1, i2, j1, j2 = next(op for op in matcher.get_opcodes() if op[0] != "equal")
    context = 1 if i1 > 0 and j1 > 0 else 0  # the option name in front of a changed value
    was, now = shlex.join(before[i1 - context:i2]), shlex.join(after[j1 - context:j2])
    return f"`{was}` is now `{now}`" if was and now else f"`{was or now}` is {'gone' if was else 'new'}"


def check_plan(out: Path, plan: RunPlan, resume: bool) -> None:
    """Refuse a resume whose plan differs from the folder's, naming the difference (reads only)."""
    path = out / PLAN_FILE
    if not path.exists():
        return
    earlier = RunPlan.read(path)
    if not resume:  # check_run_folder refuses this first; kept for library callers
        raise HarnessInputError(f"--out {out}: this folder already has a run; use --resume or another --out")
    why = plan.difference(earlier)
    if why:
        raise HarnessInputError(f"--resume: {out} holds another plan: {why}. Resume with the same options, "
                                "or start a new --out")


def settle_plan(out: Path, plan: RunPlan, resume: bool) -> None:
    """Before any case runs (under the folder's lock): the plan checked against the folder's, and
    written if the folder has none yet."""
    check_plan(out, plan, resume)
    if not (out / PLAN_FILE).exists():
        plan.write(out / PLAN_FILE)
