"""Cross-framework comparison harness: the library behind `python -m harness` (README: Layout).

`harness.assert_parity(torch_model, keras_model, example_input)` checks a user's own port from a
test suite (harness/ported/api.py); it is loaded on first use, so importing harness stays light.
"""


def __getattr__(name: str):
    if name == "assert_parity":
        from harness.ported.api import assert_parity

        return assert_parity
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
