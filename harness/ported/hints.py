"""Why a port diverges: the first diverging layer, and the convention trap that explains it.

The first failing record in layer order names the layer. Whether the layer also fails *alone*
(fed torch's recorded input) tells a local difference (its configuration) from one inherited
from before it (an activation, pooling, padding or residual between two mapped layers). The
known traps are then tried as hypotheses: a layer's configuration against the torch module's
(BatchNorm momentum m vs 1 - m, epsilon 1e-3 vs 1e-5, a frozen Keras BatchNormalization that runs
in inference mode, 'same' padding at stride 2, strides), a Keras regularizer that adds to the
loss (torch's equivalent is weight decay on the optimizer, 2 x the L2 factor for SGD), and a
missing ReLU (torch's next input is the ReLU of Keras's output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.ported.mapping import LayerPair
from harness.results.records import ParityRecord


@dataclass(frozen=True)
class Hint:
    trap: str  # a key: bn_momentum, bn_epsilon, bn_frozen, same_padding_stride2, stride, ...
    message: str
    layer: str = ""  # the layer it is about, where the failing check names none (the loss)


@dataclass(frozen=True)
class Diagnosis:
    record: ParityRecord
    layer: LayerPair | None
    alone_agrees: bool | None
    hints: tuple[Hint, ...]

    def message(self) -> str:
        r = self.record
        where = f"first diverging layer: {self.layer.describe()}" if self.layer else "first failing check"
        lines = [f"{where}: {r.check} max_rel {r.max_rel_err:.1e} > tol {r.tol:.1e} (max_abs {r.max_abs_err:.1e})"
                 + (f"; {r.detail}" if r.detail else "")]
        if self.alone_agrees is True:
            lines.append("  fed torch's input, the Keras layer agrees: the difference comes from before it (an "
                         "activation, pooling, padding or residual between mapped layers)")
        elif self.alone_agrees is False:
            lines.append("  fed torch's input, the Keras layer still differs: the layer itself differs")
        lines += [f"  likely trap [{h.trap}]: {h.message}" for h in self.hints]
        return "\n".join(lines)


def layer_hints(pair: LayerPair) -> list[Hint]:
    """Configuration differences between a torch module and its Keras layer that are known traps."""
    module, layer, found = pair.torch_module, pair.keras_layer, []
    if pair.kind in ("batchnorm", "layernorm"):
        eps, epsilon = float(module.eps), float(layer.epsilon)
        if not np.isclose(eps, epsilon, rtol=1e-3):
            trap = "bn_epsilon" if pair.kind == "batchnorm" else "layernorm_epsilon"
            found.append(Hint(trap, f"epsilon {epsilon:g} in Keras, {eps:g} in torch (Keras defaults to 1e-3, torch "
                                    f"to 1e-5): set epsilon={eps:g} on the Keras layer"))
    if pair.kind == "batchnorm":
        momentum = module.momentum
        if momentum is not None and not np.isclose(float(layer.momentum), 1.0 - momentum, atol=1e-6):
            found.append(Hint("bn_momentum", f"Keras momentum {float(layer.momentum):g}, torch momentum {momentum:g}: "
                                             f"Keras keeps m of the old statistic, torch replaces m of it, so torch "
                                             f"{momentum:g} is Keras {1.0 - momentum:g}"))
        if not layer.trainable:
            found.append(Hint("bn_frozen", "the Keras BatchNormalization has trainable=False, which makes it run in "
                                           "inference mode (moving statistics) even in training, where torch "
                                           "normalizes with the batch's statistics"))
    if pair.kind in ("conv1d", "conv2d"):
        strides, torch_stride = tuple(layer.strides), tuple(module.stride)
        if strides != torch_stride:
            found.append(Hint("stride", f"strides {strides} in Keras, {torch_stride} in torch"))
        if layer.padding == "same" and max(strides) > 1:
            found.append(Hint("same_padding_stride2", f"padding='same' at stride {max(strides)}: Keras pads the "
                                                      f"bottom/right more than the top/left, torch pads "
                                                      f"{module.padding} on every side; use ZeroPadding(...) then "
                                                      "padding='valid'"))
    return found


def regularizer_hints(pairs: list[LayerPair]) -> list[Hint]:
    found = []
    for pair in pairs:
        for attribute in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "gamma_regularizer",
                          "beta_regularizer", "embeddings_regularizer"):
            regularizer = getattr(pair.keras_layer, attribute, None)
            if regularizer is not None:
                settings = ", ".join(f"{key}={value:g}" for key, value in regularizer.get_config().items()
                                     if isinstance(value, (int, float)))
                described = f"{type(regularizer).__name__}({settings})"
                found.append(Hint("l2_regularizer", f"{pair.name!r} has {attribute}={described}: Keras adds it to "
                                                    "the loss, the torch model has no such term (in torch it is "
                                                    "the optimizer's weight_decay, 2 x the L2 factor for SGD)",
                                  layer=pair.name))
    return found


def missing_relu(pair: LayerPair, torch_input, keras_input) -> list[Hint]:
    """Is what torch feeds this layer the ReLU of what Keras feeds it (both in Keras's layout)?"""
    if torch_input is None or keras_input is None or torch_input.shape != keras_input.shape:
        return []
    if np.allclose(torch_input, keras_input, rtol=1e-4, atol=1e-6):
        return []
    if np.allclose(torch_input, np.maximum(keras_input, 0.0), rtol=1e-4, atol=1e-6):
        return [Hint("missing_activation", f"torch feeds {pair.name!r} the ReLU of what Keras feeds it: the Keras "
                                           "port lacks a ReLU before it (activation='relu' on the layer before, or "
                                           "a ReLU layer)")]
    return []


def flatten_order(pair: LayerPair, torch_input, keras_input) -> list[Hint]:
    """Does a Dense after Flatten receive the same features as torch's, in another order?"""
    if (pair.kind != "dense" or torch_input is None or keras_input is None or torch_input.shape != keras_input.shape
            or np.allclose(torch_input, keras_input, rtol=1e-4, atol=1e-6)):
        return []
    if np.allclose(np.sort(torch_input, axis=-1), np.sort(keras_input, axis=-1), rtol=1e-4, atol=1e-6):
        return [Hint("flatten_order", f"{pair.name!r} receives torch's features in another order: a Flatten (or a "
                                      "Permute/Reshape before it) orders them neither as torch's (C, H, W) nor as "
                                      "Keras's (H, W, C)")]
    return []


def diagnose(records: list[ParityRecord], pairs: list[LayerPair], torch_inputs: dict,
             keras_inputs: dict) -> Diagnosis | None:
    """The first failing check, in layer order for the per-layer checks, with its hints.
    `torch_inputs` / `keras_inputs`: what each layer received in an eval-mode forward, both in
    Keras's layout (mapping.input_as_keras)."""
    failed = [r for r in records if not r.passed]
    if not failed:
        return None
    by_name = {pair.name: pair for pair in pairs}

    def layer_of(record: ParityRecord) -> LayerPair | None:
        inside = record.check.partition("[")[2].rstrip("]").split(".")[0]
        return by_name.get(inside)

    forward = [r for r in failed if r.check.startswith(("forward_", "alone_")) and layer_of(r)]
    first = min(forward, key=lambda r: layer_of(r).index) if forward else failed[0]
    layer = layer_of(first)
    alone = None
    hints = regularizer_hints(pairs) if first.check == "loss" or first.check.startswith("grad") else []
    if layer is None and hints:  # the loss differs by a regularizer: the layer that carries it
        layer = by_name.get(hints[0].layer)
    if layer is not None:
        alone_records = [r for r in records if r.check == f"alone_eval[{layer.name}]"]
        comparable = [r for r in alone_records if not r.info]  # info: torch's input did not fit it alone
        alone = comparable[0].passed if comparable and first.check.startswith("forward_eval") else None
        seen = (layer, torch_inputs.get(layer.name), keras_inputs.get(layer.name))
        hints = layer_hints(layer) + missing_relu(*seen) + flatten_order(*seen) + hints
    return Diagnosis(first, layer, alone, tuple(hints))
