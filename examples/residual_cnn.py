"""A small residual CNN with BatchNorm and global average pooling, in torch and as its Keras port.

A model pair for ported-model parity (see examples/README.md for the contract). Torch modules and
Keras layers carry the same names, so a report that names a layer names it in both. Torch and Keras
are imported inside the factories: importing this module needs neither.
"""

from __future__ import annotations

INPUT_SHAPE = (3, 32, 32)
INPUT_INTS = None
CLASSES = 10

# torch BatchNorm defaults. Keras's momentum is the weight of the *old* running value
# (moving = momentum * moving + (1 - momentum) * batch), torch's the weight of the *new* batch value:
# torch momentum 0.1 is Keras momentum 0.9. Keras's default epsilon is 1e-3, torch's 1e-5.
BN_EPSILON = 1e-5
TORCH_BN_MOMENTUM = 0.1
KERAS_BN_MOMENTUM = 1 - TORCH_BN_MOMENTUM


def make_torch():
    import torch
    from torch import nn

    class ResidualCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16, eps=BN_EPSILON, momentum=TORCH_BN_MOMENTUM)
            self.relu1 = nn.ReLU()
            self.block_conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.block_bn1 = nn.BatchNorm2d(16, eps=BN_EPSILON, momentum=TORCH_BN_MOMENTUM)
            self.block_relu1 = nn.ReLU()
            self.block_conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.block_bn2 = nn.BatchNorm2d(16, eps=BN_EPSILON, momentum=TORCH_BN_MOMENTUM)
            self.block_relu2 = nn.ReLU()
            self.down_conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
            self.down_bn = nn.BatchNorm2d(32, eps=BN_EPSILON, momentum=TORCH_BN_MOMENTUM)
            self.down_relu = nn.ReLU()
            self.fc = nn.Linear(32, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu1(self.bn1(self.conv1(x)))
            y = self.block_relu1(self.block_bn1(self.block_conv1(x)))
            y = self.block_bn2(self.block_conv2(y))
            x = self.block_relu2(x + y)
            x = self.down_relu(self.down_bn(self.down_conv(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return ResidualCNN()


def make_keras():
    import keras
    from keras import layers

    def bn(name: str):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=KERAS_BN_MOMENTUM, name=name)

    channels, height, width = INPUT_SHAPE
    inputs = keras.Input(shape=(height, width, channels), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(bn("bn1")(x))
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="block_conv1")(x)
    y = layers.ReLU(name="block_relu1")(bn("block_bn1")(y))
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="block_conv2")(y)
    y = bn("block_bn2")(y)
    x = layers.ReLU(name="block_relu2")(layers.Add(name="block_add")([x, y]))
    # At stride 1 a 3x3 'same' pads one pixel on every side, as torch's padding=1 does. At stride 2
    # it does not: on an even input Keras 'same' pads 0 top/left and 1 bottom/right (TensorFlow's
    # rule), torch pads 1 on every side, so the output has the same shape but other values. The
    # faithful port pads explicitly and convolves 'valid'.
    x = layers.ZeroPadding2D(1, name="down_pad")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="down_conv")(x)
    x = layers.ReLU(name="down_relu")(bn("down_bn")(x))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(CLASSES, name="fc")(x)
    return keras.Model(inputs, outputs, name="residual_cnn")
