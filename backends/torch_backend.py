"""PyTorch backend (the reference): builds a ModelSpec as an nn.Module and trains it.

Modes: "eager", and "compiled" = torch.compile of the loss function (forward + loss + penalties;
AOTAutograd compiles the backward with it) and of optimizer.step (PyTorch's recipe for compiling
the optimizer). Conventions translated from the spec (see harness/spec.py):
- BatchNorm momentum: PyTorch's is 1 - Keras's. Epsilon passed explicitly (defaults differ).
- "same" padding is TensorFlow's (odd pixel at bottom/right, any stride): explicit F.pad when
  the padding is asymmetric; PyTorch's own padding="same" rejects strides > 1.
- L1/L2: added to the loss as l1*sum|w| + l2*sum(w^2), exactly as Keras does. A present
  regularizer with value 0.0 is still computed (as Keras's L2(0.0) is): that is the point of
  the l2=0 vs absent comparison. weight_decay is never used (it would be 2*l2, and decoupled
  from L1).
- TF32 is off (matmul and cuDNN) so float32 means float32 on Ampere+ GPUs.
- nn.Dropout(p=0) returns its input on CPU and CUDA (aten's dropout skips p == 0), so it adds
  no autograd node: `inspect` shows this rather than assuming it.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from backends.base import Availability, Backend, GraphCount, Model, Weights
from harness.errors import HarnessInputError
from harness.spec import (
    Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ModelSpec, infer_shapes, same_padding,
)


def _pads(size_hw, window, strides, padding) -> tuple[int, int, int, int] | None:
    """F.pad order (left, right, top, bottom) for TF "same" padding, None for "valid"."""
    if padding != "same":
        return None
    top, bottom = same_padding(size_hw[0], window[0], strides[0])
    left, right = same_padding(size_hw[1], window[1], strides[1])
    return (left, right, top, bottom)


class TorchModel(Model):
    def __init__(self, backend: "TorchBackend", spec: ModelSpec, mode: str, dtype: str):
        super().__init__(spec, mode)
        torch, nn = backend.torch, backend.torch.nn
        self.torch = torch
        self.device = backend.device
        self.dtype = getattr(torch, dtype)
        torch.manual_seed(spec.seed)
        shapes = infer_shapes(spec)
        modules, self._plan = [], []
        for index, layer in enumerate(spec.layers):
            in_shape = shapes.inputs[index]
            pad, pad_value, activation = None, 0.0, getattr(layer, "activation", "linear")
            if isinstance(layer, Dense):
                module = nn.Linear(in_shape[0], layer.units)
            elif isinstance(layer, Conv2D):
                pad = _pads(in_shape[:2], layer.kernel_size, layer.strides, layer.padding)
                symmetric = pad is not None and pad[0] == pad[1] and pad[2] == pad[3]
                module = nn.Conv2d(in_shape[2], layer.filters, layer.kernel_size, layer.strides,
                                   padding=(pad[2], pad[0]) if symmetric else 0)
                pad = None if symmetric else pad
            elif isinstance(layer, MaxPool2D):
                pad = _pads(in_shape[:2], layer.pool_size, layer.effective_strides, layer.padding)
                pad_value = -math.inf  # TF's "same" max pooling ignores the padded pixels
                module = nn.MaxPool2d(layer.pool_size, layer.effective_strides)
            elif isinstance(layer, Flatten):
                module = nn.Flatten()
            elif isinstance(layer, Dropout):
                module = nn.Dropout(layer.rate)
            elif isinstance(layer, BatchNorm):
                norm = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
                # Trap: PyTorch momentum is the weight of the NEW batch statistic; Keras's (the
                # spec's) is the weight of the OLD running value.
                module = norm(in_shape[-1], eps=layer.epsilon, momentum=1.0 - layer.momentum)
            else:  # Activation: applied through the plan below
                module = nn.Identity()
            if isinstance(layer, Activation):
                activation = layer.activation
            modules.append(module)
            function = None if activation == "linear" else getattr(torch, activation)
            self._plan.append((pad, pad_value, function))
        self.net = _spec_net_class()(nn.ModuleList(modules), self._plan).to(self.device, self.dtype)
        self._penalties = [
            (self.net.layers[i].weight, layer.l1, layer.l2)
            for i, layer in enumerate(spec.layers)
            if isinstance(layer, (Dense, Conv2D)) and (layer.l1 is not None or layer.l2 is not None)
        ]
        self.optimizer = self._make_optimizer()
        self._loss_fn = self._loss
        self._optimizer_step = self.optimizer.step
        if mode == "compiled":
            self._loss_fn = torch.compile(self._loss)
            self._optimizer_step = torch.compile(self.optimizer.step)

    def _make_optimizer(self):
        opt = self.spec.optimizer
        params = self.net.parameters()
        if opt.type == "sgd":
            return self.torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum)
        # PyTorch's Adam adds eps to sqrt(v_hat): the spec's convention.
        return self.torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta_1, opt.beta_2), eps=opt.epsilon)

    def _loss(self, x, y):
        loss = self.torch.nn.functional.cross_entropy(self.net(x), y)
        for weight, l1, l2 in self._penalties:
            if l1 is not None:
                loss = loss + l1 * weight.abs().sum()
            if l2 is not None:
                loss = loss + l2 * weight.square().sum()
        return loss

    # -- data ---------------------------------------------------------------------------------

    def _x(self, x: np.ndarray):
        tensor = self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if tensor.ndim == 4:  # channels-last (N, H, W, C) -> PyTorch's NCHW
            tensor = tensor.permute(0, 3, 1, 2).contiguous()
        return tensor.to(self.device, self.dtype)

    def _y(self, y: np.ndarray):
        return self.torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    # -- weights ------------------------------------------------------------------------------

    def get_weights(self) -> Weights:
        state = self.net.layers.state_dict()
        return {k: v.detach().cpu().numpy().copy() for k, v in state.items() if not k.endswith("num_batches_tracked")}

    def set_weights(self, weights: Weights) -> None:
        state = self.net.layers.state_dict()
        expected = {k for k in state if not k.endswith("num_batches_tracked")}
        if set(weights) != expected:
            raise ValueError(f"weights keys differ: missing {sorted(expected - set(weights))}, "
                             f"unexpected {sorted(set(weights) - expected)}")
        with self.torch.no_grad():
            for key, value in weights.items():
                if state[key].shape != value.shape:
                    raise ValueError(f"weights[{key!r}]: shape {value.shape} != {tuple(state[key].shape)}")
                state[key].copy_(self.torch.from_numpy(np.asarray(value)))

    # -- computation ----------------------------------------------------------------------------

    def forward(self, x, training):
        self.net.train(training)
        with self.torch.no_grad():
            return self.net(self._x(x)).cpu().numpy()

    def loss(self, x, y, training):
        self.net.train(training)
        with self.torch.no_grad():
            return float(self._loss(self._x(x), self._y(y)))

    def gradients(self, x, y, training):
        self.net.train(training)
        self.net.zero_grad(set_to_none=True)
        self._loss(self._x(x), self._y(y)).backward()
        return {name: p.grad.detach().cpu().numpy().copy() for name, p in self.net.layers.named_parameters()}

    def apply_gradients(self, gradients):
        for name, parameter in self.net.layers.named_parameters():
            parameter.grad = self.torch.from_numpy(np.asarray(gradients[name])).to(self.device, self.dtype)
        self.optimizer.step()

    def _step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss_fn(x, y)
        loss.backward()
        self._optimizer_step()
        return loss

    def train_step(self, x, y):
        self.net.train(True)
        return float(self._step(self._x(x), self._y(y)).detach())

    def timed_step(self, x, y) -> Callable[[], None]:
        self.net.train(True)
        tx, ty = self._x(x), self._y(y)

        def step() -> None:
            self._step(tx, ty)
            self._sync()

        return step

    def graph_counts(self, x, y) -> list[GraphCount]:
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.net.train(True)
        tx, ty = self._x(x), self._y(y)
        counts = [_count_autograd(self._loss(tx, ty))]
        captured: dict[str, object] = {}

        def keep(name):
            def compiler(graph_module, example_inputs):
                captured[name] = graph_module
                return make_boxed_func(graph_module.forward)
            return compiler

        aot = aot_autograd(fw_compiler=keep("aot_forward"), bw_compiler=keep("aot_backward"))

        def dynamo_backend(graph_module, example_inputs):
            captured["dynamo"] = graph_module
            return aot(graph_module, example_inputs)

        self.torch._dynamo.reset()
        compiled = self.torch.compile(self._loss, backend=dynamo_backend, fullgraph=True)
        compiled(tx, ty).backward()
        self.torch._dynamo.reset()
        for name in ("dynamo", "aot_forward", "aot_backward"):
            counts.append(_count_fx(name, captured[name]))
        return counts


def _count_autograd(loss) -> GraphCount:
    """Every node reachable from the loss's grad_fn (backward functions and AccumulateGrad)."""
    seen, stack = set(), [loss.grad_fn]
    ops: dict[str, int] = {}
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        ops[type(node).__name__] = ops.get(type(node).__name__, 0) + 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    return GraphCount("autograd", len(seen), dict(sorted(ops.items())))


def _count_fx(name: str, graph_module) -> GraphCount:
    """Operation nodes of an FX graph (placeholders, constants and the output are not work)."""
    ops: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op in ("call_function", "call_method", "call_module"):
            target = getattr(node.target, "__name__", str(node.target))
            ops[target] = ops.get(target, 0) + 1
    return GraphCount(name, sum(ops.values()), dict(sorted(ops.items())))


@functools.cache
def _spec_net_class():
    import torch

    functional = torch.nn.functional

    class SpecNet(torch.nn.Module):
        """Runs spec layers in order; per layer an optional pad before and activation after."""

        def __init__(self, layers, plan):
            super().__init__()
            self.layers = layers
            self.plan = plan

        def forward(self, x):
            for module, (pad, pad_value, activation) in zip(self.layers, self.plan):
                if pad is not None:
                    x = functional.pad(x, pad, value=pad_value)
                x = module(x)
                if activation is not None:
                    x = activation(x)
            return x

    return SpecNet


class TorchBackend(Backend):
    name = "torch"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu", "cuda")
    SUPPORTS_FLOAT64 = True

    @classmethod
    def availability(cls) -> Availability:
        try:
            import torch  # noqa: F401
        except Exception as exc:  # a broken install raises more than ImportError
            return Availability(False, f"torch is not importable: {exc}")
        return Availability(True)

    def __init__(self, device: str = "cpu", threads: int | None = None):
        import torch

        self.torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise HarnessInputError("--device cuda: this torch build sees no CUDA GPU")
        if device not in self.DEVICES:
            raise HarnessInputError(f"--device: {device!r} is not one of {', '.join(self.DEVICES)}")
        if threads is not None:
            torch.set_num_threads(threads)
        # Every arm is its own model object, and dynamo guards compiled code on object identity, so
        # a session with many compiled arms recompiles the shared code (SpecNet.forward,
        # Optimizer.step) once per arm. Past recompile_limit dynamo would silently run eager and a
        # "compiled" timing would be a lie: allow enough, and fail loudly beyond.
        torch._dynamo.config.recompile_limit = 64
        torch._dynamo.config.fail_on_recompile_limit_hit = True
        # float32 means float32: no TF32 on Ampere+ (cuDNN's default is on).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.device = torch.device(device)

    def settings(self) -> dict[str, object]:
        torch = self.torch
        info: dict[str, object] = {
            "framework": "torch",
            "version": torch.__version__,
            "device": str(self.device),
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "mkldnn": torch.backends.mkldnn.is_available(),
        }
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info

    def build(self, spec: ModelSpec, mode: str = "eager", dtype: str = "float32") -> TorchModel:
        if mode not in self.MODES:
            raise HarnessInputError(f"--mode: torch has no mode {mode!r} (modes: {', '.join(self.MODES)})")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {dtype!r} is not float32 or float64")
        return TorchModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        module = self.torch.nn.Dropout(rate).train(training)
        with self.torch.no_grad():
            return module(self.torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.device)).cpu().numpy()
