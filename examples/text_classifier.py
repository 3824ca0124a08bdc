"""A small text classifier (token ids -> embedding -> Conv1d -> LayerNorm -> mean -> linear), in torch
and as its Keras port.

A model pair for ported-model parity (see examples/README.md for the contract). Torch modules and
Keras layers carry the same names. Torch and Keras are imported inside the factories: importing
this module needs neither.
"""

from __future__ import annotations

SEQUENCE_LENGTH = 40
INPUT_SHAPE = (SEQUENCE_LENGTH,)
INPUT_INTS = 1000
CLASSES = 10

EMBED_DIM = 32
CHANNELS = 64
# torch LayerNorm's default eps; Keras LayerNormalization's default epsilon is 1e-3.
LN_EPSILON = 1e-5


def make_torch():
    import torch
    from torch import nn

    class TextClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(INPUT_INTS, EMBED_DIM)
            self.conv = nn.Conv1d(EMBED_DIM, CHANNELS, 3, padding=1)
            self.relu = nn.ReLU()
            self.norm = nn.LayerNorm(CHANNELS, eps=LN_EPSILON)
            self.fc = nn.Linear(CHANNELS, CLASSES)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            x = self.embed(ids).transpose(1, 2)  # (N, L, C) -> (N, C, L): Conv1d is channels-first
            x = self.relu(self.conv(x)).transpose(1, 2)  # back to (N, L, C): LayerNorm normalizes the last axis
            return self.fc(self.norm(x).mean(dim=1))

    return TextClassifier()


def make_keras():
    import keras
    from keras import layers

    inputs = keras.Input(shape=INPUT_SHAPE, dtype="int32", name="ids")
    x = layers.Embedding(INPUT_INTS, EMBED_DIM, name="embed")(inputs)
    # Channels-last throughout, so no transposes. At stride 1 a kernel-3 'same' pads one step on each
    # side, as torch's padding=1 does.
    x = layers.Conv1D(CHANNELS, 3, padding="same", name="conv")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(CLASSES, name="fc")(x)
    return keras.Model(inputs, outputs, name="text_classifier")
