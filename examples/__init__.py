"""Model pairs for ported-model parity (issue #22): a torch factory and its Keras port per module."""
