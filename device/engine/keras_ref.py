"""Keras twin of an :class:`estimator.arch.Arch`, used to check the engine against TensorFlow (tests,
benchmarks).  TensorFlow is imported inside the functions only, never at module import."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from estimator.arch import Arch, ArchError


def to_keras(arch: Arch, weights: Mapping[str, Sequence[np.ndarray]] | None = None):
    """A ``keras.Sequential`` with the same layers, names and (if given) weights as the engine's model.
    Dropout layers are kept (identity unless called with ``training=True``)."""
    import keras  # noqa: PLC0415 - lazy on purpose

    L = keras.layers
    layers = [keras.Input(shape=tuple(arch.input_shape))]
    for l in arch.layers:
        k, n = l.kind, l.name
        if k == "conv1d":
            layers.append(L.Conv1D(l.filters, l.kernel, padding="valid", use_bias=l.use_bias, name=n))
        elif k == "conv2d":
            layers.append(L.Conv2D(l.filters, (l.kernel, 1), padding="valid", use_bias=l.use_bias, name=n))
        elif k == "dense":
            layers.append(L.Dense(l.units, use_bias=l.use_bias, name=n))
        elif k == "relu":
            layers.append(L.Activation("relu", name=n))
        elif k == "softmax":
            layers.append(L.Activation("softmax", name=n))
        elif k == "avgpool1d":
            layers.append(L.AveragePooling1D(l.pool, strides=l.stride or l.pool, name=n))
        elif k == "maxpool1d":
            layers.append(L.MaxPooling1D(l.pool, strides=l.stride or l.pool, name=n))
        elif k == "avgpool2d":
            layers.append(L.AveragePooling2D((l.pool, 1), strides=(l.stride or l.pool, 1), name=n))
        elif k == "maxpool2d":
            layers.append(L.MaxPooling2D((l.pool, 1), strides=(l.stride or l.pool, 1), name=n))
        elif k == "gap1d":
            layers.append(L.GlobalAveragePooling1D(name=n))
        elif k == "gmp1d":
            layers.append(L.GlobalMaxPooling1D(name=n))
        elif k == "gap2d":
            layers.append(L.GlobalAveragePooling2D(name=n))
        elif k == "gmp2d":
            layers.append(L.GlobalMaxPooling2D(name=n))
        elif k == "flatten":
            layers.append(L.Flatten(name=n))
        elif k == "batchnorm":
            layers.append(L.BatchNormalization(epsilon=l.epsilon, name=n))
        elif k == "dropout":
            layers.append(L.Dropout(l.rate, name=n))
        else:
            raise ArchError(f"layer {n!r}: kind {k!r} has no Keras equivalent here")
    model = keras.Sequential(layers, name=arch.name)
    if weights is not None:
        set_keras_weights(model, weights)
    return model


def set_keras_weights(model, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
    for name, arrs in weights.items():
        model.get_layer(name).set_weights([np.asarray(a, np.float32) for a in arrs])


def keras_weights(model, arch: Arch) -> dict[str, list[np.ndarray]]:
    """Keras-layout weights dict (layer name -> arrays) of a Keras twin built by :func:`to_keras`."""
    return {name: [np.array(a) for a in model.get_layer(name).get_weights()] for name in arch.param_shapes()}
