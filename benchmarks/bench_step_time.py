"""The benchmark matrix: backend x model x variant x device x mode, one training step each.

`pytest --benchmark-only` runs it; `--suite quick|default|full` sizes it (harness/suite/suites.py: the
suite's timing variants and modes, for every backend of the registry that has the mode).
Benchmarks are grouped by backend/model/device/mode, so pytest-benchmark's table puts the
variants of one group side by side (dropout present vs removed, BN before vs after, l2
absent vs 0 vs > 0). The device is synchronized inside every timed step (Model.timed_step);
the first step (compile/trace) and warm-up rounds are excluded by benchmark.pedantic.
"""

from __future__ import annotations

from backends import registry
from harness.model.spec import PRESETS, model_cost
from harness.model.synthetic import synthetic_batch
from harness.model.variants import variant_spec
from harness.suite.planning import distinct_variants
from harness.suite.suites import SUITES


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    suite = SUITES[metafunc.config.getoption("--suite")]
    cases = [
        (backend, model, variant, device, mode)
        for backend, cls in registry().items()
        for model in PRESETS
        for device in cls.DEVICES
        for mode in suite.modes if mode in cls.MODES
        for variant in distinct_variants(cls, PRESETS[model], suite.timing_variants)
    ]
    metafunc.parametrize("case", cases, ids=["-".join(c) for c in cases])


def test_step(benchmark, backend_factory, case):
    backend_name, model_name, variant_text, device, mode = case
    backend = backend_factory(backend_name, device)
    variant, spec = variant_spec(PRESETS[model_name], variant_text)
    x, y = synthetic_batch(spec)
    step = backend.build(spec, mode).timed_step(x, y)
    step()  # compile / trace outside the measurement
    params, flops = model_cost(spec)
    benchmark.group = f"{backend_name}/{model_name}/{device}/{mode}"
    benchmark.extra_info.update(backend=backend_name, model=model_name, variant=variant.label, device=device,
                                mode=mode, threads=backend.settings()["intra_op_threads"], params=params,
                                flops_per_step=flops)
    benchmark.pedantic(step, rounds=20, iterations=5, warmup_rounds=2)
