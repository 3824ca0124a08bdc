"""Hand-written training steps for the preset MLP, with no harness code in them.

They are the yardstick for the harness's own overhead: `time --reference-loop` measures the
harness's step of the `mlp` preset interleaved with the matching loop below, and the benchmark
suite puts them in one group. Each is written as a user of that framework would write it
(784-512-256-10, ReLU, dropout 0.2, softmax cross-entropy, SGD lr 0.01 momentum 0.9), and like
Model.timed_step each call waits for the result (TF: a host read; torch: cuda sync on GPU).
The framework must already be configured (threads) by its backend.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

LABEL = "hand-written loop"


def _torch_step(x: np.ndarray, y: np.ndarray, device: str) -> Callable[[], None]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 256), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(tx), ty)
        loss.backward()
        optimizer.step()
        synchronize()

    return step


def keras_mlp():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(512, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(256, activation="relu"), keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])


def _tensorflow_step(x: np.ndarray, y: np.ndarray, device: str) -> Callable[[], None]:
    import keras
    import tensorflow as tf

    model = keras_mlp()
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tx, ty = tf.constant(x), tf.constant(y)

    def step() -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(ty, model(tx, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        loss.numpy()

    return step


def bare_step(backend: str, x: np.ndarray, y: np.ndarray, device: str = "cpu") -> Callable[[], None]:
    """The hand-written eager step of the preset MLP for this framework."""
    return {"torch": _torch_step, "tensorflow": _tensorflow_step}[backend](x, y, device)
