"""PyTorch backend (the reference): builds a ModelSpec as an nn.Module and trains it.

Modes: "eager", and "compiled" = torch.compile of the loss function (forward + loss + penalties;
AOTAutograd compiles the backward with it) and of optimizer.step (PyTorch's recipe for compiling
the optimizer). Conventions translated from the spec (see harness/model/spec.py):
- Layers (BatchNorm momentum, TF-style "same" padding) are built in backends/_torch_layers.py,
  whose docstring lists their conventions.
- L1/L2, l2_style "penalty": added to the loss as l1*sum|w| + l2*sum(w^2), exactly as Keras
  does. A present regularizer with value 0.0 is still computed (as Keras's L2(0.0) is).
- l2_style "weight_decay" (how most PyTorch users write L2): L2 is the optimizer's coupled
  weight_decay = 2*l2 (the gradient of l2*sum(w^2)), in a parameter group holding exactly the
  kernels that carry L2 (not biases, not BatchNorm). torch.optim.SGD/Adam skip the decay term
  when weight_decay == 0, so l2=0 costs nothing there. `loss`, `gradients` and
  `apply_gradients` still speak the canonical objective (cross-entropy + penalties), so parity
  compares both styles with Keras's kernel_regularizer.
- TF32 is off (matmul and cuDNN) so float32 means float32 on Ampere+ GPUs.
- nn.Dropout(p=0) returns its input on CPU and CUDA (aten's dropout skips p == 0), so it adds
  no autograd node: `inspect` shows this rather than assuming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from backends._torch_layers import BUILDERS, spec_net_class
from backends.base import Availability, Backend, GraphCount, Model, Weights, layer_builder
from harness.errors import BackendUnavailable
from harness.model.layers import Conv2D, Dense
from harness.model.spec import PRESETS, ModelSpec, infer_shapes


@functools.cache
def _configure_dynamo(torch) -> None:
    """Dynamo's settings, applied before the first torch.compile. Not in _configure: importing
    torch._dynamo takes 2 s, which every eager-only timing worker process would pay."""
    # Every arm is its own model object, and dynamo guards compiled code on object identity, so
    # a session with many compiled arms recompiles the shared code (SpecNet.forward,
    # Optimizer.step) once per arm. Past recompile_limit dynamo would silently run eager and a
    # "compiled" timing would be a lie: allow enough, and fail loudly beyond.
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    # Trap (torch 2.13): with floats traced symbolically (dynamo's default), recompiling
    # SGD.step for a model whose param group has weight_decay > 0, after one with
    # weight_decay == 0, fails with SpeculationLogDivergence (two optimizers suffice to show
    # it; each alone compiles). Specialized floats (guards on each value) compile every arm;
    # each arm's floats differ anyway, so it recompiles per arm either way.
    torch._dynamo.config.specialize_float = True


class TorchModel(Model):
    def __init__(self, backend: TorchBackend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(spec, mode)
        torch = backend.torch
        self.torch = torch
        self.device = backend.device
        self.dtype = getattr(torch, dtype)
        torch.manual_seed(spec.seed)
        shapes = infer_shapes(spec)
        modules, self._plan = [], []
        for index, layer in enumerate(spec.layers):
            module, pad, pad_value = layer_builder(BUILDERS, layer, backend.name)(torch, shapes.inputs[index], layer)
            activation = getattr(layer, "activation", "linear")
            modules.append(module)
            self._plan.append((pad, pad_value, None if activation == "linear" else getattr(torch, activation)))
        self.net = spec_net_class()(torch.nn.ModuleList(modules), self._plan).to(self.device, self.dtype)
        kernels = [(self.net.layers[i].weight, layer) for i, layer in enumerate(spec.layers)
                   if isinstance(layer, (Dense, Conv2D))]
        decayed = spec.l2_style == "weight_decay"
        # (weight, l1, l2) penalties the loss computes; (weight, l2) L2 the optimizer applies instead.
        self._penalties = [(w, layer.l1, None if decayed else layer.l2) for w, layer in kernels
                           if layer.l1 is not None or (layer.l2 is not None and not decayed)]
        self._decayed = [(w, layer.l2) for w, layer in kernels if decayed and layer.l2 is not None]
        self.optimizer = self._make_optimizer()
        self._loss_fn = self._loss
        self._optimizer_step = self.optimizer.step
        if mode == "compiled":
            self._loss_fn = torch.compile(self._loss)
            self._optimizer_step = torch.compile(self.optimizer.step)

    def _make_optimizer(self):
        opt = self.spec.optimizer
        decayed_ids = {id(weight) for weight, _ in self._decayed}
        params = [{"params": [weight], "weight_decay": 2.0 * l2} for weight, l2 in self._decayed]
        params.append({"params": [p for p in self.net.parameters() if id(p) not in decayed_ids]})
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

    def _load_weights(self, weights: Weights) -> None:
        state = self.net.layers.state_dict()
        with self.torch.no_grad():
            for key, value in weights.items():
                state[key].copy_(self.torch.from_numpy(np.asarray(value)))

    # -- computation ----------------------------------------------------------------------------

    def forward(self, x, training):
        self.net.train(training)
        with self.torch.no_grad():
            return self.net(self._x(x)).cpu().numpy()

    def layer_input(self, x, index):
        self.net.train(False)
        with self.torch.no_grad():
            found = self.net(self._x(x), stop=index).cpu().numpy()
        return found.transpose(0, 2, 3, 1) if found.ndim == 4 else found  # NCHW -> canonical NHWC

    def loss(self, x, y, training):
        self.net.train(training)
        with self.torch.no_grad():
            decayed = sum(float(l2 * weight.square().sum()) for weight, l2 in self._decayed)
            return float(self._loss(self._x(x), self._y(y))) + decayed

    def _decay_gradient(self, parameter):
        """2*l2*w for a kernel whose L2 the optimizer applies (weight_decay), else None."""
        return next((2.0 * l2 * weight.detach() for weight, l2 in self._decayed if weight is parameter), None)

    def gradients(self, x, y, training):
        self.net.train(training)
        self.net.zero_grad(set_to_none=True)
        self._loss(self._x(x), self._y(y)).backward()
        found = {}
        for name, parameter in self.net.layers.named_parameters():
            decay = self._decay_gradient(parameter)
            grad = parameter.grad if decay is None else parameter.grad + decay
            found[name] = grad.detach().cpu().numpy().copy()
        return found

    def apply_gradients(self, gradients):
        for name, parameter in self.net.layers.named_parameters():
            grad = self.torch.from_numpy(np.asarray(gradients[name])).to(self.device, self.dtype)
            decay = self._decay_gradient(parameter)
            parameter.grad = grad if decay is None else grad - decay  # the optimizer adds the decay back
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

        _configure_dynamo(self.torch)
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



class TorchBackend(Backend):
    name = "torch"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu", "cuda")
    IDIOMS = {"l2_style": ("penalty", "weight_decay"), "optimizer_impl": ("stock",)}  # torch.optim is the reference
    LOAD_ORDER = 0  # before TensorFlow: importing TensorFlow first has crashed on import
    DISTRIBUTIONS = ("torch",)
    COLOR = "#d1495b"
    SUPPORTS_FLOAT64 = True
    HAS_REFERENCE_LOOP = True

    @classmethod
    def availability(cls) -> Availability:
        try:
            import torch  # noqa: F401
        except Exception as exc:  # a broken install raises more than ImportError
            return Availability(False, f"torch is not importable: {exc}")
        return Availability(True)

    def _configure(self, device: str, threads: int | None) -> None:
        import torch

        self.torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: this torch build sees no CUDA GPU")
        if threads is not None:
            torch.set_num_threads(threads)
        # float32 means float32: no TF32 on Ampere+ (cuDNN's default is on).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.device = torch.device(device)

    def settings(self) -> dict[str, object]:
        torch = self.torch
        info: dict[str, object] = {
            "framework": self.name,
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

    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> TorchModel:
        if mode == "compiled":
            _configure_dynamo(self.torch)
        return TorchModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        module = self.torch.nn.Dropout(rate).train(training)
        with self.torch.no_grad():
            return module(self.torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.device)).cpu().numpy()

    def reference_step(self, x, y) -> Callable[[], None]:
        """The mlp preset (784-512-256-10, ReLU, dropout 0.2, SGD lr 0.01 momentum 0.9) as a
        PyTorch user writes it: nn.Sequential and a plain loop."""
        torch, nn = self.torch, self.torch.nn
        preset = PRESETS["mlp"]
        torch.manual_seed(preset.seed)
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 256), nn.ReLU(),
                              nn.Dropout(0.2), nn.Linear(256, 10)).to(self.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        synchronize = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(tx), ty)
            loss.backward()
            optimizer.step()
            synchronize()

        return step
