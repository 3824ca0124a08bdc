"""Recording what each mapped layer of a user's model receives and returns, in both frameworks.

torch: forward hooks on the mapped modules during one forward pass (its first call of each;
a module called twice is refused, as weight sharing cannot be paired by order). Keras: a model
over the same inputs whose outputs are the mapped layers' inputs and outputs (functional models
only). Arrays come back as numpy, torch's already in Keras's layout (harness/ported/mapping.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessInputError
from harness.ported.mapping import TORCH_KINDS, LayerPair, kind_of, to_keras_layout


@dataclass(frozen=True)
class Trace:
    """One forward pass: each mapped layer's input and output (Keras layout) and the logits."""

    inputs: dict[str, np.ndarray]  # by pair name (the Keras layer's name)
    outputs: dict[str, np.ndarray]
    logits: np.ndarray


def torch_call_order(torch, model, x) -> list[tuple[str, Any]]:
    """The mapped modules in the order one eval-mode forward first calls them."""
    order: list[tuple[str, Any]] = []
    seen: set[int] = set()
    handles = []
    for name, module in model.named_modules():
        if kind_of(module, TORCH_KINDS):
            def hook(module, inputs, output, name=name):
                if id(module) in seen:
                    raise HarnessInputError(f"torch module {name!r} is called twice in one forward pass: shared "
                                            "layers cannot be paired with Keras layers by order")
                seen.add(id(module))
                order.append((name, module))
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


def trace_torch(torch, model, pairs: list[LayerPair], x, training: bool) -> Trace:
    """Run the torch model once (train or eval mode), recording every mapped layer."""
    inputs, outputs, handles = {}, {}, []
    for pair in pairs:
        def hook(module, args, output, pair=pair):
            inputs[pair.name] = to_keras_layout(pair.kind, _numpy(args[0]))
            outputs[pair.name] = to_keras_layout(pair.kind, _numpy(output))
        handles.append(pair.torch_module.register_forward_hook(hook))
    try:
        model.train(training)
        with torch.no_grad():
            logits = _numpy(model(x))
    finally:
        for handle in handles:
            handle.remove()
    return Trace(inputs, outputs, logits)


def keras_tracer(keras, model, pairs: list[LayerPair]):
    """A Keras model returning [logits, each mapped layer's input, ... its output, ...]."""
    try:
        taps = [pair.keras_layer.input for pair in pairs] + [pair.keras_layer.output for pair in pairs]
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # as the model is called
        return keras.Model(inputs, [*model.outputs, *taps])
    except (AttributeError, ValueError) as exc:  # a subclassed model, or a layer used twice
        raise HarnessInputError(f"the Keras model's layers cannot be recorded one by one ({exc}); build it with "
                                "the functional API (keras.Input ... keras.Model), each layer used once") from None


def trace_keras(tracer, pairs: list[LayerPair], x, training: bool) -> Trace:
    logits, *taps = tracer(x, training=training)
    taps = [np.asarray(t, dtype=np.float64) for t in taps]
    n = len(pairs)
    return Trace({p.name: taps[i] for i, p in enumerate(pairs)}, {p.name: taps[n + i] for i, p in enumerate(pairs)},
                 np.asarray(logits, dtype=np.float64))


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()
