"""The order in which the report lists backends: the registry's, each Keras backend beside its engine.

Keras 3 runs on an engine (torch, JAX, TensorFlow); a backend class that is Keras names its engine
in KERAS_ENGINE (backends/_keras_engine.py). `backend_order` lists backends as the registry does
(backends.registry: LOAD_ORDER, then name), except that a Keras backend whose engine is another
backend stands right after that engine (torch, keras_torch, tensorflow, jax, keras_jax), so every
per-backend table, column set and legend puts Keras[torch] beside torch, for any number of backends.

Constraints: names no backend; imports no framework (the registry's classes only); depends on no
other report module, so that plots and tables alike can use it.
"""

from __future__ import annotations

from collections.abc import Iterable

from backends import registry


def keras_engines() -> dict[str, str]:
    """Each Keras backend whose engine is another registered backend: {keras backend: engine backend}."""
    classes = registry()
    engines = {name: getattr(cls, "KERAS_ENGINE", None) for name, cls in classes.items()}
    return {name: engine for name, engine in engines.items() if engine and engine != name and engine in classes}


def backend_order(names: Iterable[str]) -> list[str]:
    """`names` in the registry's order with each Keras backend right after its engine; names the
    registry does not know (older records) last, by name."""
    engines = keras_engines()
    order = []
    for name in registry():
        if name in engines:
            continue
        order += [name, *(keras for keras, engine in engines.items() if engine == name)]
    present = set(names)
    return [n for n in order if n in present] + sorted(present - set(order))


def keras_label(backend: str) -> str:
    """"Keras[torch]" for a Keras backend on the torch engine; the name itself for any other."""
    engine = keras_engines().get(backend)
    return f"Keras[{engine}]" if engine else backend
