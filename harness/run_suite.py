"""`python -m harness run`: turn a suite into cases, run each in its own process, then report.

Each case is one `python -m harness parity|time|inspect ... --json {json}` command, so the run
measures exactly what those commands measure; harness/case_runner.py makes the results durable
and resumable. What each backend can do (modes, devices, a hand-written reference loop, parity
against the reference) comes from the backend registry (backends/__init__.py); a backend whose
framework is missing (checked once, in a subprocess: this process never imports one) has its
cases recorded as skipped. Timing, per-call and calibration cases replicate their comparisons
across worker processes within the suite's budgets (harness/replication.py). After a timing case, the answers to the timing questions
(harness/questions.py) are computed from that session's paired times by harness.timing.compare,
the function `time` itself uses.

Nothing in an existing run folder is written until the run is known to proceed: the options,
the variants and the folder (its type, writability, existing results, --resume) are checked
first. SIGTERM is handled like Ctrl-C: the case in flight is killed and recorded, finished cases
are kept, and the resume command is printed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from backends import REFERENCE, backend_class, parity_partners
from harness.calibration import KNOWN_COST_BUDGET_FACTOR
from harness.case_runner import (
    CASES_DIR, LOCK_FILE, LOGS_DIR, THREADS_TOKEN, Case, CasesInterrupted, LocalExecutor, ResultsNotWritten,
    latest_case_status, lock_run_dir, run_cases,
)
from harness.cli_checks import checked_variants
from harness.environment import ENVIRONMENT_FILE, available_cores, write_environment
from harness.errors import HarnessInputError
from harness.questions import INJECTED_SLOWDOWN, TIMING_QUESTIONS
from harness.records import RESULTS_FILE, from_dict, read_results
from harness.spec import PRESETS
from harness.suites import SUITES
from harness.timing import compare, floor_for, noise_floors
from harness.variants import BASELINE, variant_spec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = {"parity": 900, "inspect": 600}  # timing cases: _timeout(their budget)
PERCALL_MODEL = "mlp"  # per-call costs and calibration are measured on this preset
AVAILABILITY_TIMEOUT_S = 120
_AVAILABILITY_CODE = ("import json, sys; from backends import backend_class; "
                      "a = backend_class(sys.argv[1]).availability(); print(json.dumps([a.ok, a.reason]))")


def _command(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "harness", *args, "--json", "{json}")


def plan_cases(args, unavailable: dict[str, str] | None = None) -> list[Case]:
    """The cases of a run. `unavailable` maps a backend whose framework cannot be had here to the
    reason: its cases are planned as skipped. Raises HarnessInputError for options that cannot
    make a case (a variant that does not parse, a backend left with no mode)."""
    unavailable = unavailable or {}
    suite = SUITES[args.suite]
    variants = tuple(checked_variants(args.variants or suite.timing_variants, "--variants", merge=True))
    modes = tuple(dict.fromkeys(args.modes or suite.modes))
    devices = tuple(dict.fromkeys(args.devices or suite.devices))
    if "cuda" in devices and args.devices is None:
        devices = tuple(d for d in devices if d != "cuda" or _cuda_present())
    backends, models = tuple(dict.fromkeys(args.backends)), tuple(dict.fromkeys(args.models or suite.models))
    for backend in backends:
        cls = backend_class(backend)
        if not any(m in cls.MODES for m in modes):
            raise HarnessInputError(f"--modes {' '.join(modes)}: {backend} has none of these modes "
                                    f"(its modes: {', '.join(cls.MODES)})")
    threads = THREADS_TOKEN  # the executor's choice (harness/case_process.py)
    cases = []
    if REFERENCE in backends:
        for partner in (b for b in parity_partners() if b in backends):
            for model in models:
                argv = _command("parity", "--against", partner, "--model", model, "--threads", threads,
                                *(a for v in suite.parity_variants for a in ("--variant", v)))
                cases.append(Case(f"parity/{partner}/{model}", argv, TIMEOUT_S["parity"],
                                  f"parity {REFERENCE}-{partner} {model}",
                                  8.0 + 4.0 * len(suite.parity_variants) * (2 if model == "cnn" else 1),
                                  unavailable.get(REFERENCE) or unavailable.get(partner, ""), exclusive=False))
    for backend in backends:
        cls = backend_class(backend)
        backend_modes = [m for m in modes if m in cls.MODES]
        skip = unavailable.get(backend, "")
        for model in models:
            model_variants = distinct_variants(cls, PRESETS[model], variants)
            for device in (d for d in devices if d in cls.DEVICES):
                reference_loop = (cls.HAS_REFERENCE_LOOP and model == "mlp" and "eager" in backend_modes
                                  and BASELINE in model_variants)
                argv = _command("time", "--backend", backend, "--model", model, "--device", device,
                                "--threads", threads, *_replication_args(suite, suite.budget_s), "--aa",
                                "--inject-slowdown", str(INJECTED_SLOWDOWN),
                                *(("--reference-loop",) if reference_loop else ()),
                                *(a for m in backend_modes for a in ("--mode", m)),
                                *(a for v in model_variants for a in ("--variant", v)))
                cases.append(Case(f"time/{backend}/{model}/{device}/{'+'.join(backend_modes)}", argv,
                                  _timeout(suite.budget_s), f"time {backend} {model} {device} {'+'.join(backend_modes)}",
                                  suite.budget_s, skip))
            for layer in suite.percall_layers if model == PERCALL_MODEL else ():
                for mode in backend_modes:
                    argv = _command("percall", "--backend", backend, "--model", model, "--layer", layer, "--mode", mode,
                                    "--threads", threads, "--budget", f"{suite.percall_budget_s:g}")
                    cases.append(Case(f"percall/{backend}/{model}/{mode}/{layer}", argv, _timeout(suite.percall_budget_s),
                                      f"percall {backend} {model} {mode} {layer}", suite.percall_budget_s, skip))
            argv = _command("inspect", "--backend", backend, "--model", model, "--threads", threads,
                            *(a for v in suite.inspect_variants for a in ("--variant", v)))
            cases.append(Case(f"inspect/{backend}/{model}", argv, TIMEOUT_S["inspect"], f"inspect {backend} {model}",
                              6.0 + 3.0 * len(suite.inspect_variants), skip, exclusive=False))
        if suite.calibration:
            budget_s = suite.calibration_budget_s or cls.TIMING_BUDGET_S
            argv = _command("calibrate", "--backend", backend, "--model", PERCALL_MODEL, "--threads", threads,
                            "--comparisons", str(suite.calibration), "--budget", f"{budget_s:g}")
            expected = (suite.calibration + KNOWN_COST_BUDGET_FACTOR) * budget_s
            cases.append(Case(f"calibrate/{backend}/{PERCALL_MODEL}", argv, _timeout(expected),
                              f"calibrate {backend} {PERCALL_MODEL}", expected, unavailable.get(backend, ""),
                              ok_returncodes=(0, 1)))  # 1: a target missed; its records say which
    if suite.study:
        from harness.study_run import plan_study_cases
        from harness.study_suites import STUDY_SUITES

        cases += plan_study_cases(STUDY_SUITES[suite.study], backends, unavailable)
    return cases


def _replication_args(suite, budget_s: float) -> tuple[str, ...]:
    """A timing case's replication options: the suite's budget and process settings (its many arms
    need fewer instances and shorter rounds than `time`'s defaults; precision: the default ±1%).
    Per-call and calibration cases keep the commands' defaults but for the budget."""
    return ("--budget", f"{budget_s:g}", "--process-seconds", f"{suite.process_s:g}",
            "--instances", str(suite.instances), "--round-seconds", f"{suite.round_s:g}")


def _timeout(budget_s: float) -> float:
    """A timing case's limit: its budget, plus room for the process that the budget let start
    late and for the imports and compilation the budget already counts."""
    return 2 * budget_s + 300.0


def distinct_variants(backend, spec, variants) -> tuple[str, ...]:
    """The variants this backend builds as written on this model: one that asks for an idiom the
    backend builds as another (torch's weight_decay in Keras, the matched Adam in torch) would
    time a duplicate arm."""
    return tuple(text for text in variants if backend.builds_as_written(variant_spec(spec, text)[1]))


def unavailable_backends(names) -> dict[str, str]:
    """{backend: why not} for the backends whose framework cannot be imported here. Each is tried
    in a subprocess, so this process imports no framework and survives one that crashes; the
    subprocesses run at once (importing TensorFlow alone takes ~8 s here), before any case."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(names)
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        reasons = list(pool.map(_unavailable_reason, names))
    return {name: reason for name, reason in zip(names, reasons) if reason}


def _unavailable_reason(name: str) -> str:
    """Why `name`'s framework cannot be used here, or "" if it can."""
    try:
        done = subprocess.run([sys.executable, "-c", _AVAILABILITY_CODE, name], capture_output=True, text=True,
                              timeout=AVAILABILITY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"importing it took longer than {AVAILABILITY_TIMEOUT_S} s"
    if done.returncode < 0:
        return f"importing it crashed ({signal.Signals(-done.returncode).name})"
    if done.returncode != 0:
        return f"checking it failed: {(done.stderr.strip().splitlines() or ['no message'])[-1]}"
    ok, reason = json.loads(done.stdout.strip().splitlines()[-1])
    return "" if ok else reason


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse a run folder this run cannot use, before anything in it is written."""
    if out.exists() and not out.is_dir():
        raise HarnessInputError(f"--out {out}: is a file, not a folder")
    for name, is_folder in ((RESULTS_FILE, False), (ENVIRONMENT_FILE, False), (LOCK_FILE, False),
                            (LOGS_DIR, True), (CASES_DIR, True)):
        path = out / name
        if path.exists() and path.is_dir() != is_folder:
            raise HarnessInputError(f"--out {out}: {name} is a {'folder' if path.is_dir() else 'file'}; "
                                    f"a run needs it to be a {'folder' if is_folder else 'file'}")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HarnessInputError(f"--out {out}: {existing} is not writable")
    results = out / RESULTS_FILE
    has_results = results.is_file() and results.stat().st_size > 0
    if has_results and not resume:
        raise HarnessInputError(f"--out {out}: this folder already has results; use --resume to continue that run, "
                                "or another --out")
    if resume and not has_results:
        raise HarnessInputError(f"--resume: {out} has no {RESULTS_FILE} to resume")
    if resume:
        found = read_results(results)  # raises on a damaged file, naming the line
        latest_case_status(found.records[:found.finished], str(results))  # raises on a case record without case_id


def _cuda_present() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None


def question_comparisons(case: Case, records: list[dict]) -> list[dict]:
    """The timing questions answered from one timing session's records."""
    if not case.case_id.startswith("time/"):
        return []
    timings = [from_dict(r) for r in records if r.get("kind") == "timing"]
    if not timings:
        return []
    floors = noise_floors(timings)
    arms = {(t.variant, t.mode): t for t in timings if t.role in ("arm", "reference")}
    modes = sorted({t.mode for t in timings})
    found = []
    for question in TIMING_QUESTIONS:
        # A question with fixed modes (compiled vs eager) is asked once; others once per mode.
        mode_pairs = [(question.a_mode, question.b_mode)] if question.a_mode else [(m, m) for m in modes]
        for a_mode, b_mode in mode_pairs:
            a = arms.get((question.a_variant, a_mode))
            b = arms.get((question.b_variant, b_mode))
            if a is not None and b is not None:
                found.append(compare(a, b, floor_for(floors, a, b), question.key).as_dict())
    return found


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does; the dict it yields
    names the signal that stopped the run (empty for Ctrl-C)."""
    received: dict = {}

    def handler(number, frame):
        received.update(number=number, name=f"stopped by {signal.Signals(number).name}")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _options_without_out(argv: list[str]) -> list[str]:
    """The user's `run` options minus --out/--resume, to repeat in the resume hint."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--out":
            skip = True
        elif not token.startswith("--out=") and token != "--resume":
            kept.append(token)
    return kept


def run_suite(args) -> int:
    """The `run` command: check, plan, lock the run folder, run the cases, write the report."""
    out = Path(args.out) if args.out else PROJECT_ROOT / "reports" / "runs" / (
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{args.suite}")
    plan_cases(args)  # bad options fail here, before the folder is looked at
    check_run_folder(out, args.resume)
    executor = make_executor(args)
    cases = plan_cases(args, skip_reasons(executor, args.backends))
    again = shlex.join(["python", "-m", "harness", "run", *_options_without_out(sys.argv[2:]), "--out", str(out),
                        "--resume"])
    return run_and_report(cases, out, args.resume, again, executor, f"{args.suite} suite", question_comparisons)


def make_executor(args):
    """The --executor's executor. --threads unset: the cores here (local), or per node (Ray)."""
    if getattr(args, "executor", "local") == "ray":
        from harness.ray_executor import RayExecutor  # only this path imports Ray

        return RayExecutor(args.ray_address, threads=args.threads)
    return LocalExecutor(args.threads or available_cores() or 1)


def skip_reasons(executor, backends) -> dict[str, str]:
    """{backend: why not} for the cases to plan as skipped: frameworks missing here. On Ray the
    cases run elsewhere, so none is judged from here: a case whose node lacks its framework
    exits 3 and is recorded as skipped there."""
    return {} if executor.name == "ray" else unavailable_backends(dict.fromkeys(backends))


def run_and_report(cases, out: Path, resume: bool, again: str, executor, label: str, postprocess=None) -> int:
    """Run planned cases into the run folder `out` (locked; the environment written once), then
    write its report. Ctrl-C or SIGTERM: the cases in flight are recorded, `again` is printed."""
    from harness.report import build_report

    with lock_run_dir(out), _sigterm_as_interrupt() as received:
        if not (out / ENVIRONMENT_FILE).exists():  # a resumed run keeps the machine it started on
            write_environment(out, getattr(executor, "threads", None))
        where = f" on the Ray cluster at {executor.address}" if executor.name == "ray" else ""
        print(f"run: {len(cases)} cases ({label}) into {out}{where}", file=sys.stderr)
        try:
            tally = run_cases(cases, out, resume=resume, postprocess=postprocess, executor=executor)
        except CasesInterrupted as exc:
            finished = f"{exc.tally.ok} case{'' if exc.tally.ok == 1 else 's'} finished"
            print(f"{received.get('name', 'interrupted')}; {finished}, resume with: {again}", file=sys.stderr)
            return 128 + received.get("number", signal.SIGINT)
        except ResultsNotWritten as exc:
            print(f"error: {exc}. Every case recorded before it is intact; {exc.case_id} is lost. "
                  f"Make room, then resume with: {again}", file=sys.stderr)
            return 1
        paths = build_report([out])
    print(f"{tally.ok} ok, {tally.failed} failed, {tally.timeout} timed out, {tally.skipped} skipped "
          f"(framework or device not available here), {tally.already_ok} already ok from an earlier run; "
          f"{tally.total_s:.0f} s")
    print(f"report: {paths.markdown}\n        {paths.html}")
    return 0 if tally.failed == 0 and tally.timeout == 0 else 1
