"""Measuring ourselves: hand-written training loops with no harness code, next to the harness.

Per framework, the preset MLP (784-512-256-10, dropout 0.2, SGD 0.01 momentum 0.9, batch 32)
as a user would write it, in the same benchmark group as the harness's own step of that model,
so pytest-benchmark's table shows the harness overhead (target: harness / bare <= 1.05).
For TensorFlow also Keras's model.fit, the per-step number users know (10 steps per call).
"""

from __future__ import annotations

import pytest

from harness.data import synthetic_batch
from harness.spec import PRESETS

SPEC = PRESETS["mlp"]


def _bench(benchmark, backend, kind, step, steps_per_call=1):
    step()
    benchmark.group = f"reference/{backend}/mlp/cpu"
    benchmark.extra_info.update(backend=backend, model="mlp", variant="baseline", device="cpu", mode=kind,
                                steps_per_call=steps_per_call)
    benchmark.pedantic(step, rounds=30, iterations=5 if steps_per_call == 1 else 1, warmup_rounds=3)


def test_harness_step_torch(benchmark, backend_factory):
    backend = backend_factory("torch")
    x, y = synthetic_batch(SPEC)
    _bench(benchmark, "torch", "harness-eager", backend.build(SPEC).timed_step(x, y))


def test_bare_loop_torch(benchmark, backend_factory):
    backend_factory("torch")  # configures threads, or skips
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 256), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = (torch.from_numpy(a) for a in synthetic_batch(SPEC))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    _bench(benchmark, "torch", "bare-eager", step)


def _keras_mlp():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(512, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])


def test_harness_step_tensorflow(benchmark, backend_factory):
    backend = backend_factory("tensorflow")
    x, y = synthetic_batch(SPEC)
    _bench(benchmark, "tensorflow", "harness-eager", backend.build(SPEC).timed_step(x, y))


def test_bare_loop_tensorflow(benchmark, backend_factory):
    backend_factory("tensorflow")
    import keras
    import tensorflow as tf

    model = _keras_mlp()
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = (tf.constant(a) for a in synthetic_batch(SPEC))

    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        loss.numpy()

    _bench(benchmark, "tensorflow", "bare-eager", step)


@pytest.mark.slow
def test_keras_fit_tensorflow(benchmark, backend_factory):
    backend_factory("tensorflow")
    import keras
    import numpy as np

    model = _keras_mlp()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = [synthetic_batch(SPEC, seed=i) for i in range(10)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])

    def ten_steps():
        model.fit(x, y, batch_size=SPEC.batch_size, epochs=1, shuffle=False, verbose=0)

    _bench(benchmark, "tensorflow", "keras-fit (10 steps per call, compiled)", ten_steps, steps_per_call=10)
