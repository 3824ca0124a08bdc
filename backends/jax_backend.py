"""JAX backend: builds a ModelSpec as pure JAX functions (no Flax) and trains it with optax.

The model is data: `params`, `bn_state` (BatchNorm running statistics), `opt_state` (optax's) and
`key` (dropout's), each a pytree, and one pure step (params, opt_state, bn_state, key, x, y) ->
(params, opt_state, bn_state, key, loss). Modes:
- "eager": that step called as Python, no jit: each jax operation of the forward pass, of
  jax.value_and_grad's backward and of the optax update is dispatched on its own (one cached XLA
  computation per primitive; a jnp function that is itself jitted runs as one call).
- "compiled": jax.jit of the whole step, its state arguments donated (their buffers reused for
  the outputs): XLA compiles and fuses forward, backward and update into one program.
forward, layer_input, loss, gradients and apply_gradients run eagerly in both modes. Conventions:
- Layers, layouts, dropout and BatchNorm (PyTorch's unbiased running variance) are built in
  backends/_jax_layers.py, whose docstring lists their conventions.
- Dropout keys: jax.random.key(seed) folded with the layer count, split functionally once per
  training call into the next key and one key per active (rate > 0) dropout layer; a model with
  no active dropout splits nothing (a rate-0 layer consumes no key and adds no equation).
- L1/L2, l2_style "penalty": l1*sum|w| + l2*sum(w^2) added to the loss (0.0 is still computed).
  "weight_decay": optax.add_decayed_weights(2*l2), masked to that kernel, chained before the
  optimizer: PyTorch's coupled weight_decay, except that optax computes g + 0*w at l2 = 0.
  loss/gradients/apply_gradients speak the canonical objective either way (as torch's backend).
- Adam: optax.adam adds eps to sqrt(v_hat) (eps_root, inside the sqrt, stays 0): PyTorch's
  placement, the spec's. So optax's stock Adam is already "matched": optimizer_impl "matched" is
  built as "stock" (IDIOMS). Trap: optax computes the bias correction 1 - beta^t in the
  parameters' dtype (float32), as Keras does; parity's float64 oracle measures that rounding.
  SGD: optax.sgd's trace t <- g + mu*t, w -= lr*t is PyTorch's momentum buffer.
- float64 (SUPPORTS_FLOAT64, parity's oracle): jax_enable_x64 is process-global and changes
  JAX's default dtypes, so it is never set globally; a float64 model builds and runs inside
  `jax.enable_x64(True)` (a thread-local context; jit caches key on it), and a float32 model
  names float32/int32 for every array it creates. Hyperparameters stay Python floats (weakly
  typed): exact in a float64 model.
- Threads: PJRT_NPROC, set before JAX creates its CPU client (XLA_FLAGS has no thread count:
  backends/_jax_xla.py); a different count once the client exists is refused, as TensorFlow's is.
- Device: CPU only (DEVICES): arrays are placed on jax.devices("cpu")[0] explicitly, so a GPU
  jaxlib's default device is never used by accident.
- graph_counts: the step's jaxpr (top-level: what eager dispatches; inlined: what jit hands XLA)
  and the optimized HLO XLA compiles (backends/_jax_xla.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable

import numpy as np

from backends._jax_layers import BUILDERS, apply_layers, dropout, weight_layouts
from backends._jax_xla import configure_pool, count_hlo, count_jaxpr, count_jaxpr_inlined, thread_settings
from backends.base import Availability, Backend, GraphCount, Model, Weights, layer_builder
from harness.model.layers import KERNEL_LAYERS
from harness.model.spec import ModelSpec, infer_shapes


class JaxModel(Model):
    def __init__(self, backend: JaxBackend, spec: ModelSpec, mode: str, dtype: str):
        super().__init__(spec, mode)
        self.jax, self.optax = backend.jax, backend.optax
        self.device = backend.device
        self.dtype = np.dtype(dtype)
        self._x64 = self.dtype == np.float64
        with self._precision():
            self._build(backend)

    def _precision(self):
        """The dtype regime every jax call of this model runs in (module docstring: float64)."""
        return self.jax.enable_x64(True) if self._x64 else contextlib.nullcontext()

    def _build(self, backend: JaxBackend) -> None:
        jax, spec = self.jax, self.spec
        shapes = infer_shapes(spec)
        init_key = jax.random.key(spec.seed)
        self._layers = [layer_builder(BUILDERS, layer, backend.name)(jax, layer, i, shapes.inputs[i], init_key,
                                                                       self.dtype)
                        for i, layer in enumerate(spec.layers)]
        self._layouts = weight_layouts(spec.layers, shapes)
        self.params = self._put({k: v for layer in self._layers for k, v in layer.params.items()})
        self.bn_state = self._put({k: v for layer in self._layers for k, v in layer.state.items()})
        self.key = jax.random.fold_in(init_key, len(spec.layers))  # distinct from every layer's init key
        self._key_count = sum(layer.key_count for layer in self._layers)
        kernels = [(f"{i}.weight", layer) for i, layer in enumerate(spec.layers) if isinstance(layer, KERNEL_LAYERS)]
        decayed = spec.l2_style == "weight_decay"
        # (key, l1, l2) penalties the loss computes; (key, l2) L2 the optimizer applies instead.
        self._penalties = [(key, layer.l1, None if decayed else layer.l2) for key, layer in kernels
                           if layer.l1 is not None or (layer.l2 is not None and not decayed)]
        self._decayed = [(key, layer.l2) for key, layer in kernels if decayed and layer.l2 is not None]
        self.optimizer = self._make_optimizer()
        self.opt_state = self.optimizer.init(self.params)
        self._step_fn = self._step
        if self.mode == "compiled":
            self._step_fn = jax.jit(self._step, donate_argnums=(0, 1, 2, 3))

    def _make_optimizer(self):
        optax, opt = self.optax, self.spec.optimizer
        if opt.type == "sgd":
            base = optax.sgd(opt.lr, momentum=opt.momentum or None)
        else:  # eps added to sqrt(v_hat): PyTorch's placement, see the module docstring
            base = optax.adam(opt.lr, b1=opt.beta_1, b2=opt.beta_2, eps=opt.epsilon, eps_root=0.0)
        decays = [optax.add_decayed_weights(2.0 * l2, mask={k: k == key for k in self.params})
                  for key, l2 in self._decayed]
        return optax.chain(*decays, base) if decays else base

    @property
    def optimizer_class(self) -> str:
        return f"optax.{self.spec.optimizer.type}"

    # -- pure functions (jitted whole in "compiled" mode) --------------------------------------------

    def _objective(self, params, state, x, y, training: bool, keys):
        """(mean cross-entropy + penalties, the new BatchNorm state)."""
        jnp = self.jax.numpy
        logits, state = apply_layers(self._layers, params, state, x, training, keys)
        loss = self.optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        for key, l1, l2 in self._penalties:
            if l1 is not None:
                loss = loss + l1 * jnp.sum(jnp.abs(params[key]))
            if l2 is not None:
                loss = loss + l2 * jnp.sum(jnp.square(params[key]))
        return loss, state

    def _split(self, key):
        """(the next key, one key per active dropout layer): no split without active dropout."""
        if not self._key_count:
            return key, ()
        keys = self.jax.random.split(key, self._key_count + 1)
        return keys[0], keys[1:]

    def _step(self, params, opt_state, state, key, x, y):
        key, keys = self._split(key)
        (loss, state), grads = self.jax.value_and_grad(self._objective, has_aux=True)(params, state, x, y, True, keys)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return self.optax.apply_updates(params, updates), opt_state, state, key, loss

    # -- data and weights ----------------------------------------------------------------------

    def _put(self, tree):
        return self.jax.device_put(tree, self.device)

    def _tensors(self, x, y=None):
        tx = self._put(np.asarray(x, dtype=self.dtype))
        return tx if y is None else (tx, self._put(np.asarray(y, dtype=np.int32)))

    def _take_keys(self):
        self.key, keys = self._split(self.key)
        return keys

    def get_weights(self) -> Weights:
        found = {**self.params, **self.bn_state}
        return {k: np.array(layout.to_canonical(np.asarray(found[k])), dtype=self.dtype)
                for k, layout in self._layouts.items()}

    def _load_weights(self, weights: Weights) -> None:
        with self._precision():
            converted = {k: self._put(np.ascontiguousarray(layout.to_jax(np.asarray(weights[k], dtype=self.dtype))))
                         for k, layout in self._layouts.items()}
            self.params = {k: converted[k] for k in self.params}
            self.bn_state = {k: converted[k] for k in self.bn_state}

    def _decay(self, key):
        """2*l2*w (JAX layout) for a kernel whose L2 the optimizer applies (weight_decay), else None."""
        return next((2.0 * l2 * self.params[k] for k, l2 in self._decayed if k == key), None)

    # -- computation ---------------------------------------------------------------------------

    def forward(self, x, training):
        with self._precision():
            logits, state = apply_layers(self._layers, self.params, self.bn_state, self._tensors(x), training,
                                        self._take_keys() if training else ())
            if training:
                self.bn_state = state
            return np.asarray(logits)

    def layer_input(self, x, index):
        with self._precision():
            found, _ = apply_layers(self._layers, self.params, self.bn_state, self._tensors(x), False, (), stop=index)
            return np.asarray(found)

    def loss(self, x, y, training):
        with self._precision():
            keys = self._take_keys() if training else ()
            loss, state = self._objective(self.params, self.bn_state, *self._tensors(x, y), training, keys)
            if training:
                self.bn_state = state
            jnp = self.jax.numpy
            return float(loss) + sum(float(l2 * jnp.sum(jnp.square(self.params[k]))) for k, l2 in self._decayed)

    def gradients(self, x, y, training):
        with self._precision():
            keys = self._take_keys() if training else ()
            grad_fn = self.jax.grad(self._objective, has_aux=True)
            grads, state = grad_fn(self.params, self.bn_state, *self._tensors(x, y), training, keys)
            if training:
                self.bn_state = state
            found = {}
            for key, grad in grads.items():
                decay = self._decay(key)
                found[key] = np.array(self._layouts[key].to_canonical(
                    np.asarray(grad if decay is None else grad + decay)), dtype=self.dtype)
            return found

    def apply_gradients(self, gradients):
        with self._precision():
            grads = {}
            for key in self.params:
                grad = self._put(np.ascontiguousarray(self._layouts[key].to_jax(
                    np.asarray(gradients[key], self.dtype))))
                decay = self._decay(key)
                grads[key] = grad if decay is None else grad - decay  # the optimizer adds the decay back
            updates, self.opt_state = self.optimizer.update(grads, self.opt_state, self.params)
            self.params = self.optax.apply_updates(self.params, updates)

    def _run_step(self, tx, ty):
        self.params, self.opt_state, self.bn_state, self.key, loss = self._step_fn(
            self.params, self.opt_state, self.bn_state, self.key, tx, ty)
        return loss

    def train_step(self, x, y):
        with self._precision():
            return float(self._run_step(*self._tensors(x, y)))

    def timed_step(self, x, y) -> Callable[[], None]:
        with self._precision():
            tx, ty = self._tensors(x, y)
        block = self.jax.block_until_ready

        def step() -> None:
            loss = self._run_step(tx, ty)
            block((loss, self.params, self.opt_state, self.bn_state))  # JAX dispatches asynchronously: wait

        if not self._x64:
            return step

        def step64() -> None:
            with self._precision():
                step()

        return step64

    def graph_counts(self, x, y) -> list[GraphCount]:
        """The step's jaxpr: its top-level equations (what an eager step dispatches, a nested jit as
        one call) and every equation with nested jaxprs inlined (what jit hands XLA); and the
        instructions of the optimized HLO module XLA compiles for a jitted step, fused computations'
        included (parameters and constants are not work)."""
        with self._precision():
            arguments = (self.params, self.opt_state, self.bn_state, self.key, *self._tensors(x, y))
            jaxpr = self.jax.make_jaxpr(self._step)(*arguments).jaxpr
            hlo = self.jax.jit(self._step).lower(*arguments).compile().as_text()
        return [count_jaxpr(jaxpr), count_jaxpr_inlined(jaxpr), count_hlo(hlo)]


class JaxBackend(Backend):
    name = "jax"
    MODES = ("eager", "compiled")
    DEVICES = ("cpu",)
    LOAD_ORDER = 20
    DISTRIBUTIONS = ("jax", "jaxlib", "optax")
    COLOR = "#6a4c93"
    SUPPORTS_FLOAT64 = True
    BN_BIASED_RUNNING_VAR = False  # PyTorch's unbiased running variance (backends/_jax_layers.py)
    IDIOMS = {"l2_style": ("penalty", "weight_decay"), "optimizer_impl": ("stock",)}  # optax's Adam is PyTorch's
    # On the 2-core Xeon (2026-12-06) a `time` worker process of 4 mlp arms, two of them eager
    # (a 20-25 ms step), took 27-40 s, start and compilation included: 60 s held fewer rounds than a
    # verdict's 4 processes need.
    TIMING_BUDGET_S = 120.0

    @classmethod
    def availability(cls) -> Availability:
        for package in ("jax", "optax"):
            if importlib.util.find_spec(package) is None:
                return Availability(False, f"{package} is not installed (pip install -e \".[jax]\")")
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
        except Exception as exc:  # a broken install raises more than ImportError
            return Availability(False, f"jax/optax is not importable: {exc}")
        return Availability(True)

    def _configure(self, device: str, threads: int | None) -> None:
        import jax
        import optax
        from jax._src import xla_bridge

        self.jax, self.optax = jax, optax
        if threads is not None:
            configure_pool(threads, xla_bridge.backends_are_initialized())  # module docstring: Threads
        self.device = jax.devices("cpu")[0]

    def settings(self) -> dict[str, object]:
        import jaxlib

        return {
            "framework": self.name,
            "version": self.jax.__version__,
            "jaxlib": jaxlib.__version__,
            "optax": self.optax.__version__,
            "device": str(self.device),
            **thread_settings(),
        }

    def _build(self, spec: ModelSpec, mode: str, dtype: str) -> JaxModel:
        return JaxModel(self, spec, mode, dtype)

    def dropout_probe(self, rate, x, training):
        jax = self.jax
        tx = jax.device_put(np.asarray(x, dtype=np.float32), self.device)
        return np.asarray(dropout(jax, rate, tx, training, jax.random.key(1234)))
