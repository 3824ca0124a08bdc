"""How a ModelSpec's layers become PyTorch modules: one builder per layer type (BUILDERS) and
SpecNet, the nn.Module that runs them in order with each layer's pad and activation.

Conventions translated here from the spec (harness/model/spec.py, Keras's conventions):
- BatchNorm momentum: PyTorch's is 1 - Keras's. Epsilon passed explicitly (defaults differ).
- "same" padding is TensorFlow's (odd pixel at bottom/right, any stride): explicit F.pad when
  the padding is asymmetric; PyTorch's own padding="same" rejects strides > 1. Max pooling pads
  with -inf, as TF's ignores padded pixels.
Constraints: torch is never imported at module level (it is passed in, or imported inside the
function that needs it), so importing this module, as the backend registry does, costs nothing.
It builds modules only: loss, optimizer, modes and timing are backends/torch_backend.py's.
"""

from __future__ import annotations

import functools
import math

from harness.model.layers import (
    Activation,
    BatchNorm,
    BusyWait,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    same_padding,
)
from harness.model.spin import SpinIdentity


def _pads(size_hw, window, strides, padding) -> tuple[int, int, int, int] | None:
    """F.pad order (left, right, top, bottom) for TF "same" padding, None for "valid"."""
    if padding != "same":
        return None
    top, bottom = same_padding(size_hw[0], window[0], strides[0])
    left, right = same_padding(size_hw[1], window[1], strides[1])
    return (left, right, top, bottom)


# Builders: (torch, in_shape, layer) -> (module, pad, pad_value). `pad` is an explicit F.pad
# before the module (F.pad order: left, right, top, bottom), for TF-style asymmetric "same".


def _dense(torch, in_shape, layer):
    return torch.nn.Linear(in_shape[0], layer.units), None, 0.0


def _conv2d(torch, in_shape, layer):
    pad = _pads(in_shape[:2], layer.kernel_size, layer.strides, layer.padding)
    symmetric = pad is not None and pad[0] == pad[1] and pad[2] == pad[3]
    module = torch.nn.Conv2d(in_shape[2], layer.filters, layer.kernel_size, layer.strides,
                             padding=(pad[2], pad[0]) if symmetric else 0)
    return module, None if symmetric else pad, 0.0


def _maxpool2d(torch, in_shape, layer):
    pad = _pads(in_shape[:2], layer.pool_size, layer.effective_strides, layer.padding)
    # TF's "same" max pooling ignores the padded pixels: pad with -inf.
    return torch.nn.MaxPool2d(layer.pool_size, layer.effective_strides), pad, -math.inf


def _batchnorm(torch, in_shape, layer):
    norm = torch.nn.BatchNorm2d if len(in_shape) == 3 else torch.nn.BatchNorm1d
    # Trap: PyTorch momentum is the weight of the NEW batch statistic; Keras's (the spec's) is the
    # weight of the OLD running value.
    return norm(in_shape[-1], eps=layer.epsilon, momentum=1.0 - layer.momentum), None, 0.0


@functools.cache
def _busywait_class(torch):
    class BusyWaitModule(SpinIdentity, torch.nn.Module):
        """The identity that spins a known time per forward call (harness.model.layers.BusyWait)."""

        def forward(self, x):
            return self.pass_through(x)

    return BusyWaitModule


BUILDERS = {
    Dense: _dense,
    Conv2D: _conv2d,
    MaxPool2D: _maxpool2d,
    Flatten: lambda torch, in_shape, layer: (torch.nn.Flatten(), None, 0.0),
    Dropout: lambda torch, in_shape, layer: (torch.nn.Dropout(layer.rate), None, 0.0),
    BatchNorm: _batchnorm,
    Activation: lambda torch, in_shape, layer: (torch.nn.Identity(), None, 0.0),  # applied by the plan
    BusyWait: lambda torch, in_shape, layer: (_busywait_class(torch)(layer.microseconds * 1e-6), None, 0.0),
}


@functools.cache
def spec_net_class():
    import torch

    functional = torch.nn.functional

    class SpecNet(torch.nn.Module):
        """Runs spec layers in order; per layer an optional pad before and activation after."""

        def __init__(self, layers, plan):
            super().__init__()
            self.layers = layers
            self.plan = plan

        def forward(self, x, stop: int | None = None):
            """The network's output, or with `stop` the output of its first `stop` layers."""
            for module, (pad, pad_value, activation) in zip(self.layers[:stop], self.plan[:stop]):
                if pad is not None:
                    x = functional.pad(x, pad, value=pad_value)
                x = module(x)
                if activation is not None:
                    x = activation(x)
            return x

    return SpecNet
