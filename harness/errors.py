"""The one exception type that means "the user gave us bad input".

The CLI turns it into a single line on stderr and exit code 2, without a traceback. Its message
names the bad value and where it came from: `spec.json: layers[2].rate: 1.5 is not in [0, 1)`.
Anything else that escapes is a bug in the harness and keeps its traceback.
"""


class HarnessInputError(ValueError):
    """Bad input from the user: a spec file, a variant string, a CLI value, a results folder."""
