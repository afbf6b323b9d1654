"""The three published network stacks with seeded random weights, as plain ``tf.Module`` s.

Layer tables from ``shared/reference/tfhub_models.md`` (VGGish ``vggish_slim.py``, YAMNet
``yamnet.py``, humpback ``humpback_model.py``). Weights are He-normal draws from a seeded numpy
generator; batch-norm layers are centre-only with moving mean 0 and variance 1, as in the published
configurations (``scale=False``). These networks give the real shapes and the real compute cost;
their outputs mean nothing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

BN_EPSILON = 1e-4


class WeightMaker:
    """Creates named, seeded variables."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def he(self, shape: tuple[int, ...], fan_in: int, name: str) -> tf.Variable:
        std = np.sqrt(2.0 / fan_in)
        value = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        return tf.Variable(value, name=name)

    def zeros(self, shape: tuple[int, ...], name: str, trainable: bool = True) -> tf.Variable:
        return tf.Variable(np.zeros(shape, np.float32), name=name, trainable=trainable)

    def ones(self, shape: tuple[int, ...], name: str, trainable: bool = True) -> tf.Variable:
        return tf.Variable(np.ones(shape, np.float32), name=name, trainable=trainable)


class Conv(tf.Module):
    """k x k convolution, SAME padding unless ``padding`` says otherwise, optional bias."""

    def __init__(self, b: WeightMaker, k: int, cin: int, cout: int, stride: int = 1,
                 bias: bool = False, padding: str = "SAME", name: str | None = None):
        super().__init__(name=name)
        self.kernel = b.he((k, k, cin, cout), k * k * cin, "kernel")
        self.bias = b.zeros((cout,), "bias") if bias else None
        self.stride = stride
        self.padding = padding

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, self.kernel, self.stride, self.padding)
        return y + self.bias if self.bias is not None else y


class DepthwiseConv(tf.Module):
    """3 x 3 depthwise convolution (multiplier 1), SAME, no bias."""

    def __init__(self, b: WeightMaker, channels: int, stride: int, name: str | None = None):
        super().__init__(name=name)
        self.kernel = b.he((3, 3, channels, 1), 9, "depthwise_kernel")
        self.stride = stride

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.depthwise_conv2d(x, self.kernel, [1, self.stride, self.stride, 1], "SAME")


class BatchNorm(tf.Module):
    """Inference batch norm with centre only (``scale=False``), epsilon 1e-4."""

    def __init__(self, b: WeightMaker, channels: int, name: str | None = None):
        super().__init__(name=name)
        self.beta = b.zeros((channels,), "beta")
        self.moving_mean = b.zeros((channels,), "moving_mean", trainable=False)
        self.moving_variance = b.ones((channels,), "moving_variance", trainable=False)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return (x - self.moving_mean) * tf.math.rsqrt(self.moving_variance + BN_EPSILON) + self.beta


class Dense(tf.Module):
    """Fully connected layer with bias."""

    def __init__(self, b: WeightMaker, cin: int, cout: int, name: str | None = None):
        super().__init__(name=name)
        self.kernel = b.he((cin, cout), cin, "kernel")
        self.bias = b.zeros((cout,), "bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.kernel) + self.bias


def _max_pool(x: tf.Tensor, size: int) -> tf.Tensor:
    return tf.nn.max_pool2d(x, size, 2, "SAME")


class VGGishNetwork(tf.Module):
    """VGGish: [B, 96, 64] log-mel patches -> [B, 128] pre-activation embeddings (72.1 M params)."""

    def __init__(self, rng: np.random.Generator):
        super().__init__(name="vggish")
        b = WeightMaker(rng)
        self.conv1 = Conv(b, 3, 1, 64, bias=True, name="conv1")
        self.conv2 = Conv(b, 3, 64, 128, bias=True, name="conv2")
        self.conv3_1 = Conv(b, 3, 128, 256, bias=True, name="conv3_1")
        self.conv3_2 = Conv(b, 3, 256, 256, bias=True, name="conv3_2")
        self.conv4_1 = Conv(b, 3, 256, 512, bias=True, name="conv4_1")
        self.conv4_2 = Conv(b, 3, 512, 512, bias=True, name="conv4_2")
        self.fc1_1 = Dense(b, 6 * 4 * 512, 4096, name="fc1_1")
        self.fc1_2 = Dense(b, 4096, 4096, name="fc1_2")
        self.fc2 = Dense(b, 4096, 128, name="fc2")

    def __call__(self, patches: tf.Tensor) -> tf.Tensor:
        x = patches[..., tf.newaxis]
        x = _max_pool(tf.nn.relu(self.conv1(x)), 2)
        x = _max_pool(tf.nn.relu(self.conv2(x)), 2)
        x = _max_pool(tf.nn.relu(self.conv3_2(tf.nn.relu(self.conv3_1(x)))), 2)
        x = _max_pool(tf.nn.relu(self.conv4_2(tf.nn.relu(self.conv4_1(x)))), 2)
        x = tf.reshape(x, [-1, 6 * 4 * 512])
        x = tf.nn.relu(self.fc1_1(x))
        x = tf.nn.relu(self.fc1_2(x))
        return self.fc2(x)


# YAMNet layer table: (kind, stride, filters) for layer1..layer14.
YAMNET_LAYERS = ((("conv", 2, 32),) + (("sep", 1, 64), ("sep", 2, 128), ("sep", 1, 128),
                 ("sep", 2, 256), ("sep", 1, 256), ("sep", 2, 512)) + (("sep", 1, 512),) * 5
                 + (("sep", 2, 1024), ("sep", 1, 1024)))


class _SeparableBlock(tf.Module):
    def __init__(self, b: WeightMaker, cin: int, cout: int, stride: int, name: str):
        super().__init__(name=name)
        self.depthwise = DepthwiseConv(b, cin, stride, name="depthwise_conv")
        self.depthwise_bn = BatchNorm(b, cin, name="depthwise_conv_bn")
        self.pointwise = Conv(b, 1, cin, cout, name="pointwise_conv")
        self.pointwise_bn = BatchNorm(b, cout, name="pointwise_conv_bn")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.nn.relu(self.depthwise_bn(self.depthwise(x)))
        return tf.nn.relu(self.pointwise_bn(self.pointwise(x)))


class YAMNetNetwork(tf.Module):
    """YAMNet MobileNet-v1: [B, 96, 64] -> embeddings [B, 1024] and logits [B, 521] (3.75 M)."""

    def __init__(self, rng: np.random.Generator, num_classes: int = 521):
        super().__init__(name="yamnet")
        b = WeightMaker(rng)
        self.layers = []
        cin = 1
        for i, (kind, stride, filters) in enumerate(YAMNET_LAYERS, start=1):
            if kind == "conv":
                conv = Conv(b, 3, cin, filters, stride=stride, name=f"layer{i}_conv")
                self.layers.append((conv, BatchNorm(b, filters, name=f"layer{i}_conv_bn")))
            else:
                self.layers.append((_SeparableBlock(b, cin, filters, stride, f"layer{i}"),))
            cin = filters
        self.logits = Dense(b, cin, num_classes, name="logits")

    def embed(self, patches: tf.Tensor) -> tf.Tensor:
        """[B, 96, 64] -> [B, 1024] global-average-pooled ReLU features."""
        x = patches[..., tf.newaxis]
        for layer in self.layers:
            if len(layer) == 2:
                x = tf.nn.relu(layer[1](layer[0](x)))
            else:
                x = layer[0](x)
        return tf.reduce_mean(x, axis=[1, 2])


class _Bottleneck(tf.Module):
    def __init__(self, b: WeightMaker, cin: int, inner: int, cout: int, stride: int, name: str):
        super().__init__(name=name)
        widen = cin != cout
        self.conv_bottleneck = Conv(b, 1, cin, inner, stride=stride,
                                    padding="VALID" if widen else "SAME", name="conv_bottleneck")
        self.bn_bottleneck = BatchNorm(b, inner, name="batch_normalization_bottleneck")
        self.conv = Conv(b, 3, inner, inner, name="conv")
        self.bn = BatchNorm(b, inner, name="batch_normalization")
        self.conv_output = Conv(b, 1, inner, cout, name="conv_output")
        self.bn_output = BatchNorm(b, cout, name="batch_normalization_output")
        if widen:
            self.conv_residual = Conv(b, 1, cin, cout, stride=stride, padding="VALID",
                                      name="conv_residual")
            self.bn_residual = BatchNorm(b, cout, name="batch_normalization_residual")
        else:
            self.conv_residual = None

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.relu(self.bn_bottleneck(self.conv_bottleneck(x)))
        y = tf.nn.relu(self.bn(self.conv(y)))
        y = self.bn_output(self.conv_output(y))
        shortcut = self.bn_residual(self.conv_residual(x)) if self.conv_residual is not None else x
        return tf.nn.relu(y + shortcut)


# Humpback ResNet-50 variant groups: (blocks, inner, out, stride).
HUMPBACK_GROUPS = ((3, 64, 256, 1), (4, 128, 512, 2), (6, 256, 1024, 2), (3, 512, 2048, 2))


class HumpbackEmbedNetwork(tf.Module):
    """Humpback ResNet-50 variant: PCEN [B, 128, 64] -> [B, 2048] features (23.5 M with head)."""

    def __init__(self, rng: np.random.Generator):
        super().__init__(name="embed")
        b = WeightMaker(rng)
        self.stem = Conv(b, 7, 1, 64, name="conv")
        self.stem_bn = BatchNorm(b, 64, name="batch_normalization")
        self.blocks = []
        cin = 64
        for g, (blocks, inner, cout, stride) in enumerate(HUMPBACK_GROUPS):
            for i in range(blocks):
                name = f"group_{g}_block_{'widen' if i == 0 else i}"
                self.blocks.append(_Bottleneck(b, cin, inner, cout, stride if i == 0 else 1, name))
                cin = cout

    def __call__(self, pcen_windows: tf.Tensor) -> tf.Tensor:
        x = pcen_windows[..., tf.newaxis]
        x = tf.nn.relu(self.stem_bn(self.stem(x)))
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for block in self.blocks:
            x = block(x)
        return tf.reduce_mean(x, axis=[1, 2])


def count_parameters(module: tf.Module) -> int:
    """Total number of scalars in all variables of ``module``."""
    return int(sum(np.prod(v.shape) for v in module.variables))
