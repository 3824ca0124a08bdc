"""A suite turned into the cases of a run (`python -m harness run`).

Each case is one `python -m harness parity|time|percall|calibrate|inspect ... --json {json}`
command (or a study seed: harness/study/plan.py), so the run measures exactly what those
commands measure. What each backend can do (modes, devices, a hand-written reference loop,
parity against the reference) comes from the backend registry (backends/__init__.py); a backend
whose framework is missing here has its cases planned as skipped. Timing, per-call and
calibration cases replicate their comparisons across worker processes within the suite's budgets
(harness/timing/replication.py). Planning reads a RunRequest, never the command line.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from backends import REFERENCE, backend_class, parity_partners
from harness.errors import HarnessInputError
from harness.model.spec import PRESETS
from harness.model.variants import BASELINE, variant_spec
from harness.running.case import THREADS_TOKEN, Case
from harness.study.plan import plan_study_cases
from harness.study.suites import STUDY_SUITES
from harness.suite.suites import INJECTED_SLOWDOWN, Suite
from harness.timing.calibration import KNOWN_COST_BUDGET_FACTOR

TIMEOUT_S = {"parity": 900, "inspect": 600}  # timing cases: _timeout(their budget)
PERCALL_MODEL = "mlp"  # per-call costs and calibration are measured on this preset
# The progress display's estimates (seconds), measured on 2 cores: a parity case starts in about
# 8 s and checks a variant in about 4 s (the cnn twice that); an inspect case, 6 s and 3 s.
PARITY_START_S, PARITY_PER_VARIANT_S, CNN_FACTOR = 8.0, 4.0, 2
INSPECT_START_S, INSPECT_PER_VARIANT_S = 6.0, 3.0


@dataclass(frozen=True)
class RunRequest:
    """What `run` was asked for, every option resolved and checked (harness/cli/run.py)."""

    suite: Suite
    backends: tuple[str, ...]
    models: tuple[str, ...]
    variants: tuple[str, ...]  # timing variants, each parsed once and given once
    devices: tuple[str, ...]
    modes: tuple[str, ...]


def resolve_devices(suite: Suite, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The devices asked for, or the suite's (cuda only where a GPU is found)."""
    if asked:
        return tuple(dict.fromkeys(asked))
    return tuple(d for d in suite.devices if d != "cuda" or shutil.which("nvidia-smi") is not None)


def check_request(request: RunRequest) -> None:
    """Refuse options that cannot make a case (a backend left with no mode)."""
    for backend in request.backends:
        cls = backend_class(backend)
        if not any(m in cls.MODES for m in request.modes):
            raise HarnessInputError(f"--modes {' '.join(request.modes)}: {backend} has none of these modes "
                                    f"(its modes: {', '.join(cls.MODES)})")


def plan_cases(request: RunRequest, unavailable: dict[str, str] | None = None) -> list[Case]:
    """The cases of a run. `unavailable` maps a backend whose framework cannot be had here to the
    reason: its cases are planned as skipped."""
    unavailable = unavailable or {}
    check_request(request)
    cases = _parity_cases(request, unavailable)
    for backend in request.backends:
        cases += _backend_cases(request, backend, unavailable.get(backend, ""))
    if request.suite.study:
        cases += plan_study_cases(STUDY_SUITES[request.suite.study], request.backends, unavailable)
    return cases


def _command(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "harness", *args, "--json", "{json}")


def _repeated(option: str, values) -> tuple[str, ...]:
    return tuple(arg for value in values for arg in (option, value))


def _parity_cases(request: RunRequest, unavailable: dict[str, str]) -> list[Case]:
    if REFERENCE not in request.backends:
        return []
    suite, cases = request.suite, []
    for partner in (b for b in parity_partners() if b in request.backends):
        for model in request.models:
            argv = _command("parity", "--against", partner, "--model", model, "--threads", THREADS_TOKEN,
                            *_repeated("--variant", suite.parity_variants))
            expected = PARITY_START_S + PARITY_PER_VARIANT_S * len(suite.parity_variants) * (
                CNN_FACTOR if model == "cnn" else 1)
            cases.append(Case(f"parity/{partner}/{model}", argv, TIMEOUT_S["parity"],
                              f"parity {REFERENCE}-{partner} {model}", expected,
                              unavailable.get(REFERENCE) or unavailable.get(partner, ""), exclusive=False))
    return cases


def _backend_cases(request: RunRequest, backend: str, skip: str) -> list[Case]:
    """One backend's timing, per-call, inspection and calibration cases."""
    suite, cls = request.suite, backend_class(backend)
    modes = [m for m in request.modes if m in cls.MODES]
    cases = []
    for model in request.models:
        variants = distinct_variants(cls, PRESETS[model], request.variants)
        for device in (d for d in request.devices if d in cls.DEVICES):
            cases.append(_timing_case(suite, cls, backend, model, device, modes, variants, skip))
        for layer in suite.percall_layers if model == PERCALL_MODEL else ():
            for mode in modes:
                argv = _command("percall", "--backend", backend, "--model", model, "--layer", layer, "--mode", mode,
                                "--threads", THREADS_TOKEN, "--budget", f"{suite.percall_budget_s:g}")
                cases.append(Case(f"percall/{backend}/{model}/{mode}/{layer}", argv, _timeout(suite.percall_budget_s),
                                  f"percall {backend} {model} {mode} {layer}", suite.percall_budget_s,
                                  skip or cls.PERCALL_UNMEASURABLE.get(mode, "")))
        argv = _command("inspect", "--backend", backend, "--model", model, "--threads", THREADS_TOKEN,
                        *_repeated("--variant", suite.inspect_variants))
        cases.append(Case(f"inspect/{backend}/{model}", argv, TIMEOUT_S["inspect"], f"inspect {backend} {model}",
                          INSPECT_START_S + INSPECT_PER_VARIANT_S * len(suite.inspect_variants), skip,
                          exclusive=False))
    if suite.calibration:
        budget_s = suite.calibration_budget_s or cls.TIMING_BUDGET_S
        argv = _command("calibrate", "--backend", backend, "--model", PERCALL_MODEL, "--threads", THREADS_TOKEN,
                        "--comparisons", str(suite.calibration), "--budget", f"{budget_s:g}")
        expected = (suite.calibration + KNOWN_COST_BUDGET_FACTOR) * budget_s
        cases.append(Case(f"calibrate/{backend}/{PERCALL_MODEL}", argv, _timeout(expected),
                          f"calibrate {backend} {PERCALL_MODEL}", expected, skip,
                          ok_returncodes=(0, 1)))  # 1: a target missed; its records say which
    return cases


def _timing_case(suite: Suite, cls, backend: str, model: str, device: str, modes: list[str],
                 variants: tuple[str, ...], skip: str) -> Case:
    reference_loop = cls.HAS_REFERENCE_LOOP and model == "mlp" and "eager" in modes and BASELINE in variants
    argv = _command("time", "--backend", backend, "--model", model, "--device", device,
                    "--threads", THREADS_TOKEN, *_replication_args(suite), "--aa",
                    "--inject-slowdown", str(INJECTED_SLOWDOWN),
                    *(("--reference-loop",) if reference_loop else ()),
                    *_repeated("--mode", modes), *_repeated("--variant", variants))
    return Case(f"time/{backend}/{model}/{device}/{'+'.join(modes)}", argv, _timeout(suite.budget_s),
                f"time {backend} {model} {device} {'+'.join(modes)}", suite.budget_s, skip)


def _replication_args(suite: Suite) -> tuple[str, ...]:
    """A timing case's replication options: the suite's budget and process settings (its many arms
    need fewer instances and shorter rounds than `time`'s defaults; precision: the default ±1%).
    Per-call and calibration cases keep the commands' defaults but for the budget."""
    return ("--budget", f"{suite.budget_s:g}", "--process-seconds", f"{suite.process_s:g}",
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
