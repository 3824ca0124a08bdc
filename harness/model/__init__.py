"""The framework-neutral model: what every backend builds and every command measures.

`spec` (ModelSpec, presets, parsing and shape inference), `fields` (typed decoding of a spec's
JSON fields), `layers` (one frozen dataclass per layer type), `variants` (the variant axes that
transform a spec), `resources` (will a spec fit in this machine's memory), `synthetic` (the
synthetic batches timing and parity use), `spin` (busy-waiting for a known time). Nothing here
imports a framework, and nothing here knows about timing, running or reporting.
"""
