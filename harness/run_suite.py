"""`python -m harness run`: turn a suite into cases, run each in its own process, then report.

Each case is one `python -m harness parity|time|inspect ... --json {json}` command, so the run
measures exactly what those commands measure; harness/case_runner.py makes the results durable
and resumable. What each backend can do (modes, devices, a hand-written reference loop, parity
against the reference) comes from the backend registry (backends/__init__.py); a backend whose
framework is missing has its cases recorded as skipped. After a timing case, the answers to the
timing questions (harness/questions.py) are computed from that session's paired times by
harness.timing.compare, the function `time` itself uses.
"""

from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path

from backends import REFERENCE, backend_class, parity_partners
from harness.case_runner import Case, CasesInterrupted, lock_run_dir, run_cases
from harness.environment import write_environment
from harness.errors import HarnessInputError
from harness.questions import INJECTED_SLOWDOWN, TIMING_QUESTIONS
from harness.records import RESULTS_FILE, from_dict
from harness.suites import SUITES
from harness.timing import compare, floor_for, noise_floors
from harness.variants import BASELINE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = {"parity": 900, "time": 900, "inspect": 600}


def _command(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "harness", *args, "--json", "{json}")


def plan_cases(args) -> list[Case]:
    suite = SUITES[args.suite]
    variants = tuple(args.variants or suite.timing_variants)
    modes = tuple(args.modes or suite.modes)
    devices = tuple(args.devices or suite.devices)
    if "cuda" in devices and args.devices is None:
        devices = tuple(d for d in devices if d != "cuda" or _cuda_present())
    threads = str(args.threads)
    cases = []
    if REFERENCE in args.backends:
        for partner in (b for b in parity_partners() if b in args.backends):
            for model in args.models:
                argv = _command("parity", "--against", partner, "--model", model, "--threads", threads,
                                *(a for v in suite.parity_variants for a in ("--variant", v)))
                cases.append(Case(f"parity/{partner}/{model}", argv, TIMEOUT_S["parity"],
                                  f"parity {REFERENCE}-{partner} {model}",
                                  8.0 + 4.0 * len(suite.parity_variants) * (2 if model == "cnn" else 1)))
    for backend in args.backends:
        cls = backend_class(backend)
        backend_modes = [m for m in modes if m in cls.MODES]
        for model in args.models:
            for device in (d for d in devices if d in cls.DEVICES):
                reference_loop = (cls.HAS_REFERENCE_LOOP and model == "mlp" and "eager" in backend_modes
                                  and BASELINE in variants)
                argv = _command("time", "--backend", backend, "--model", model, "--device", device,
                                "--threads", threads, "--rounds", str(suite.rounds),
                                "--round-seconds", str(suite.round_s), "--aa",
                                "--inject-slowdown", str(INJECTED_SLOWDOWN),
                                *(("--reference-loop",) if reference_loop else ()),
                                *(a for m in backend_modes for a in ("--mode", m)),
                                *(a for v in variants for a in ("--variant", v)))
                arms = (len(variants) * len(backend_modes) + 3)
                cases.append(Case(f"time/{backend}/{model}/{device}/{'+'.join(backend_modes)}", argv,
                                  TIMEOUT_S["time"], f"time {backend} {model} {device} {'+'.join(backend_modes)}",
                                  8.0 + arms * (suite.rounds * suite.round_s + 1.0 + 12.0 * ("compiled" in backend_modes))))
            argv = _command("inspect", "--backend", backend, "--model", model, "--threads", threads,
                            *(a for v in suite.inspect_variants for a in ("--variant", v)))
            cases.append(Case(f"inspect/{backend}/{model}", argv, TIMEOUT_S["inspect"], f"inspect {backend} {model}",
                              6.0 + 3.0 * len(suite.inspect_variants)))
    return cases


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
    """The `run` command: plan, lock the run folder, run the cases, write the report."""
    from harness.report import build_report

    out = Path(args.out) if args.out else PROJECT_ROOT / "reports" / "runs" / (
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{args.suite}")
    if args.resume and not (out / RESULTS_FILE).exists():
        raise HarnessInputError(f"--resume: {out} has no {RESULTS_FILE} to resume")
    cases = plan_cases(args)
    with lock_run_dir(out):
        write_environment(out, args.threads)
        print(f"run: {len(cases)} cases ({args.suite} suite) into {out}", file=sys.stderr)
        try:
            tally = run_cases(cases, out, resume=args.resume, postprocess=question_comparisons)
        except CasesInterrupted as exc:
            again = ["python", "-m", "harness", "run", *_options_without_out(sys.argv[2:]), "--out", str(out),
                     "--resume"]
            finished = f"{exc.tally.ok} case{'' if exc.tally.ok == 1 else 's'} finished"
            print(f"interrupted; {finished}, resume with: {shlex.join(again)}", file=sys.stderr)
            return 130
        paths = build_report([out])
    print(f"{tally.ok} ok, {tally.failed} failed, {tally.timeout} timed out, {tally.skipped} skipped "
          f"(framework or device not available here), {tally.already_ok} already ok from an earlier run; "
          f"{tally.total_s:.0f} s")
    print(f"report: {paths.markdown}\n        {paths.html}")
    return 0 if tally.failed == 0 and tally.timeout == 0 else 1
