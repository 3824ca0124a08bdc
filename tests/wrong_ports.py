"""Deliberately wrong Keras ports of small torch models, for the ported-model parity tests (issue #22).

PORTS maps a name to a PortCase: a model pair in the contract of examples/README.md (the attributes
INPUT_SHAPE, INPUT_INTS, CLASSES, make_torch, make_keras, so it can stand in for a pair module), plus
what parity should find once torch's weights are copied into the Keras model:
- first_diverging: the name of the first Keras layer, in execution order, whose output (or, for a
  regularizer, whose gradient) differs from its torch counterpart's in a chained pass from the same
  input. Layers without weights that torch computes functionally (pooling, flatten) have no torch
  module; activations do (nn.ReLU under the Keras layer's name).
- trap: the harness's key for the convention trap behind it (the entry's name, except wrong_stride's
  "stride").
- seen_in: the first check that shows it: "forward" (eval mode), "train_forward" (training mode),
  "bn_statistics" (running statistics after a training-mode forward) or "loss".
flatten_ok and flatten_channels_first_ok are correct ports (first_diverging and trap None): the
controls for flatten_order.

Each torch model has a correct Keras port (a private builder with its defaults); each wrong port
changes one thing. Not a test file: tests import it. Torch and Keras are imported inside the factories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CLASSES = 10
VECTOR_SHAPE = (20,)
IMAGE_SHAPE = (3, 8, 8)
# Non-square and channels != height: a flatten order mixed up between (C, H, W) and (H, W, C) cannot
# come out right by symmetry.
FLATTEN_SHAPE = (3, 4, 6)
FLATTEN_CHANNELS = 5


@dataclass(frozen=True)
class PortCase:
    make_torch: Callable
    make_keras: Callable
    INPUT_SHAPE: tuple[int, ...]
    INPUT_INTS: int | None
    CLASSES: int
    first_diverging: str | None
    trap: str | None
    seen_in: str | None


# ---------------------------------------------------------------------------------------------
# Torch models


def torch_bn_cnn():
    """conv1 (3x3, pad 1, no bias) -> bn1 -> relu1 -> mean over H, W -> fc."""
    from torch import nn

    class BNCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(IMAGE_SHAPE[0], 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.relu1 = nn.ReLU()
            self.fc = nn.Linear(8, CLASSES)

        def forward(self, x):
            return self.fc(self.relu1(self.bn1(self.conv1(x))).mean(dim=(2, 3)))

    return BNCNN()


def torch_strided_cnn():
    """conv1 (3x3, stride 2, pad 1) -> relu1 -> mean over H, W -> fc."""
    from torch import nn

    class StridedCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(IMAGE_SHAPE[0], 8, 3, stride=2, padding=1)
            self.relu1 = nn.ReLU()
            self.fc = nn.Linear(8, CLASSES)

        def forward(self, x):
            return self.fc(self.relu1(self.conv1(x)).mean(dim=(2, 3)))

    return StridedCNN()


def torch_flatten_cnn():
    """conv1 (3x3, pad 1) -> relu1 -> flatten (C, H, W order) -> fc."""
    import torch
    from torch import nn

    channels, height, width = FLATTEN_SHAPE

    class FlattenCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, FLATTEN_CHANNELS, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.fc = nn.Linear(FLATTEN_CHANNELS * height * width, CLASSES)

        def forward(self, x):
            return self.fc(torch.flatten(self.relu1(self.conv1(x)), 1))

    return FlattenCNN()


def torch_mlp():
    """fc1 -> relu1 -> fc2."""
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(VECTOR_SHAPE[0], 32)
            self.relu1 = nn.ReLU()
            self.fc2 = nn.Linear(32, CLASSES)

        def forward(self, x):
            return self.fc2(self.relu1(self.fc1(x)))

    return MLP()


def torch_ln_mlp():
    """fc1 -> norm1 (LayerNorm, eps 1e-5) -> relu1 -> fc2."""
    from torch import nn

    class LNMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(VECTOR_SHAPE[0], 32)
            self.norm1 = nn.LayerNorm(32)
            self.relu1 = nn.ReLU()
            self.fc2 = nn.Linear(32, CLASSES)

        def forward(self, x):
            return self.fc2(self.relu1(self.norm1(self.fc1(x))))

    return LNMLP()


# ---------------------------------------------------------------------------------------------
# Keras ports: builders whose defaults are the correct port, and the wrong variants


def _image_input(keras, shape):
    channels, height, width = shape
    return keras.Input(shape=(height, width, channels), name="image")


def _keras_bn_cnn(momentum=0.9, epsilon=1e-5, trainable=True):
    import keras
    from keras import layers

    inputs = _image_input(keras, IMAGE_SHAPE)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.BatchNormalization(momentum=momentum, epsilon=epsilon, trainable=trainable, name="bn1")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(layers.ReLU(name="relu1")(x))
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc")(x))


def _keras_strided_cnn(same_padding=False, stride=2):
    import keras
    from keras import layers

    inputs = x = _image_input(keras, IMAGE_SHAPE)
    if not same_padding:
        x = layers.ZeroPadding2D(1, name="pad1")(x)
    x = layers.Conv2D(8, 3, strides=stride, padding="same" if same_padding else "valid", name="conv1")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(layers.ReLU(name="relu1")(x))
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc")(x))


def _keras_flatten_cnn(permute=None):
    import keras
    from keras import layers

    inputs = _image_input(keras, FLATTEN_SHAPE)
    x = layers.Conv2D(FLATTEN_CHANNELS, 3, padding="same", name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    if permute:
        x = layers.Permute(permute, name="permute")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc")(x))


def _keras_mlp(relu=True, fc1_l2=None):
    import keras
    from keras import layers

    inputs = keras.Input(shape=VECTOR_SHAPE, name="features")
    regularizer = keras.regularizers.L2(fc1_l2) if fc1_l2 is not None else None
    x = layers.Dense(32, kernel_regularizer=regularizer, name="fc1")(inputs)
    if relu:
        x = layers.ReLU(name="relu1")(x)
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc2")(x))


def _keras_ln_mlp(epsilon=1e-5):
    import keras
    from keras import layers

    inputs = keras.Input(shape=VECTOR_SHAPE, name="features")
    x = layers.Dense(32, name="fc1")(inputs)
    x = layers.ReLU(name="relu1")(layers.LayerNormalization(epsilon=epsilon, name="norm1")(x))
    return keras.Model(inputs, layers.Dense(CLASSES, name="fc2")(x))


def keras_bn_momentum():
    """torch's momentum 0.1 copied as is: Keras weighs the old running value by it (0.9 is right)."""
    return _keras_bn_cnn(momentum=0.1)


def keras_bn_epsilon():
    """Keras's default epsilon 1e-3 against torch's 1e-5."""
    return _keras_bn_cnn(epsilon=1e-3)


def keras_bn_frozen():
    """trainable=False: Keras BatchNormalization then normalizes with its moving statistics even in
    training, where torch's train() mode uses the batch's."""
    return _keras_bn_cnn(trainable=False)


def keras_same_padding_stride2():
    """padding='same' at stride 2 pads bottom/right only; torch's padding=1 pads every side."""
    return _keras_strided_cnn(same_padding=True)


def keras_wrong_stride():
    """Stride 1 where torch has 2: conv1's output is 8x8, not 4x4 (the pooled model still builds)."""
    return _keras_strided_cnn(stride=1)


def keras_flatten_order():
    """Flattens in (W, H, C) order (a Permute swapping height and width): neither torch's (C, H, W)
    nor Keras's (H, W, C), so no mapping of fc's kernel rows meets their features."""
    return _keras_flatten_cnn(permute=(2, 1, 3))


def keras_flatten_ok():
    """Flattens (H, W, C), Keras's own order: the weight mapping permutes fc's kernel rows."""
    return _keras_flatten_cnn()


def keras_flatten_channels_first_ok():
    """Flattens in torch's own (C, H, W) order (a Permute to channels first): fc's kernel rows are
    copied as they are (the harness sees the order in what fc receives)."""
    return _keras_flatten_cnn(permute=(3, 1, 2))


def keras_missing_activation():
    """No ReLU after fc1: fc1's output still matches, fc2's does not."""
    return _keras_mlp(relu=False)


def keras_l2_regularizer():
    """fc1 carries kernel_regularizer=L2(1e-3), which torch's model has not: the forward matches,
    the loss gains 1e-3 * sum(fc1.kernel ** 2) and fc1's kernel gradient 2e-3 * fc1.kernel."""
    return _keras_mlp(fc1_l2=1e-3)


def keras_layernorm_epsilon():
    """Keras's default epsilon 1e-3 against torch's 1e-5."""
    return _keras_ln_mlp(epsilon=1e-3)


PORTS: dict[str, PortCase] = {
    "bn_momentum": PortCase(torch_bn_cnn, keras_bn_momentum, IMAGE_SHAPE, None, CLASSES,
                            "bn1", "bn_momentum", "bn_statistics"),
    "bn_epsilon": PortCase(torch_bn_cnn, keras_bn_epsilon, IMAGE_SHAPE, None, CLASSES,
                           "bn1", "bn_epsilon", "forward"),
    "bn_frozen": PortCase(torch_bn_cnn, keras_bn_frozen, IMAGE_SHAPE, None, CLASSES,
                          "bn1", "bn_frozen", "train_forward"),
    "same_padding_stride2": PortCase(torch_strided_cnn, keras_same_padding_stride2, IMAGE_SHAPE, None, CLASSES,
                                     "conv1", "same_padding_stride2", "forward"),
    "wrong_stride": PortCase(torch_strided_cnn, keras_wrong_stride, IMAGE_SHAPE, None, CLASSES,
                             "conv1", "stride", "forward"),
    "flatten_order": PortCase(torch_flatten_cnn, keras_flatten_order, FLATTEN_SHAPE, None, CLASSES,
                              "fc", "flatten_order", "forward"),
    "flatten_ok": PortCase(torch_flatten_cnn, keras_flatten_ok, FLATTEN_SHAPE, None, CLASSES,
                           None, None, None),
    "flatten_channels_first_ok": PortCase(torch_flatten_cnn, keras_flatten_channels_first_ok, FLATTEN_SHAPE, None,
                                          CLASSES, None, None, None),
    "missing_activation": PortCase(torch_mlp, keras_missing_activation, VECTOR_SHAPE, None, CLASSES,
                                   "fc2", "missing_activation", "forward"),
    "l2_regularizer": PortCase(torch_mlp, keras_l2_regularizer, VECTOR_SHAPE, None, CLASSES,
                               "fc1", "l2_regularizer", "loss"),
    "layernorm_epsilon": PortCase(torch_ln_mlp, keras_layernorm_epsilon, VECTOR_SHAPE, None, CLASSES,
                                  "norm1", "layernorm_epsilon", "forward"),
}
