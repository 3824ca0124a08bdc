"""Measuring ourselves: hand-written training loops with no harness code, next to the harness.

The preset MLP as a user would write it (each backend's reference_step), in the same benchmark
group as the harness's own step of that model, so pytest-benchmark's table shows the harness's
overhead (target: harness / bare <= 1.05; `python -m harness time --reference-loop` measures it
interleaved, with a CI). For TensorFlow also Keras's model.fit, the per-step number users know
(10 steps per call: divide by 10).
"""

from __future__ import annotations

import pytest

from backends import registry
from harness.model.spec import PRESETS
from harness.model.synthetic import synthetic_batch

SPEC = PRESETS["mlp"]
BACKENDS = tuple(name for name, cls in registry().items() if cls.HAS_REFERENCE_LOOP)


def _bench(benchmark, backend, kind, step, steps_per_call=1):
    step()
    benchmark.group = f"reference/{backend}/mlp/cpu"
    benchmark.extra_info.update(backend=backend, model="mlp", variant="baseline", device="cpu", mode=kind,
                                steps_per_call=steps_per_call)
    benchmark.pedantic(step, rounds=30, iterations=5 if steps_per_call == 1 else 1, warmup_rounds=3)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_harness_step(benchmark, backend_factory, backend_name):
    backend = backend_factory(backend_name)
    x, y = synthetic_batch(SPEC)
    _bench(benchmark, backend_name, "harness-eager", backend.build(SPEC).timed_step(x, y))


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bare_loop(benchmark, backend_factory, backend_name):
    backend = backend_factory(backend_name)
    x, y = synthetic_batch(SPEC)
    _bench(benchmark, backend_name, "bare-eager", backend.reference_step(x, y))


def test_keras_fit(benchmark, backend_factory):
    backend_factory("tensorflow")
    import keras
    import numpy as np

    from backends.tensorflow_backend import keras_mlp

    model = keras_mlp()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = [synthetic_batch(SPEC, seed=i) for i in range(10)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])

    def ten_steps():
        model.fit(x, y, batch_size=SPEC.batch_size, epochs=1, shuffle=False, verbose=0)

    _bench(benchmark, "tensorflow", "keras-fit (10 steps per call, compiled)", ten_steps, steps_per_call=10)
