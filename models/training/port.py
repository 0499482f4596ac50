"""Port the ImageNet MobileNetV3-Small TFLite weights into ``keras.applications.MobileNetV3Small``.

The TFLite file is uint8-quantised with batch normalisation folded into the convolutions. Its 54
convolutions map one to one, in graph order, onto the Keras model's Conv2D/DepthwiseConv2D layers.
Each is dequantised; where the Keras convolution has no bias, the folded bias goes into the following
BatchNormalization layer, which is set to the identity (gamma 1, mean 0, var 1 - epsilon).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.serving.explanation_head import PRE_LOGITS_LAYER

IMAGENET_CLASSES = 1001  # class 0 is "background" in the TF-slim checkpoints
INPUT_SIZE = 224


def _dequantise(tensor: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if scale == 0.0:  # already float
        return np.asarray(tensor, dtype=np.float32)
    return np.asarray((tensor.astype(np.float32) - zero_point) * scale, dtype=np.float32)


def read_tflite_convolutions(tflite_path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Return (op kind, kernel in Keras layout, bias) for every convolution, in graph order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(tflite_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    convolutions = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        weight_index, bias_index = op["inputs"][1], op["inputs"][2]
        kernel = _dequantise(interpreter.get_tensor(weight_index), details[weight_index])
        bias = _dequantise(interpreter.get_tensor(bias_index), details[bias_index])
        if op["op_name"] == "CONV_2D":
            kernel = kernel.transpose(1, 2, 3, 0)  # [out, h, w, in] -> [h, w, in, out]
        else:
            _, h, w, channels = kernel.shape
            kernel = kernel.reshape(h, w, channels, 1)  # [1, h, w, in] -> [h, w, in, multiplier]
        convolutions.append((op["op_name"], kernel, bias))
    return convolutions


def build_imagenet_mobilenet_v3_small(tflite_path: Path, input_size: int = INPUT_SIZE) -> Any:
    """A Keras MobileNetV3-Small (1001 ImageNet classes) carrying the TFLite file's weights; its convolutions fit
    any ``input_size`` (the TFLite file's is 224)."""
    import keras

    model = keras.applications.MobileNetV3Small(
        input_shape=(input_size, input_size, 3),
        weights=None,
        classes=IMAGENET_CLASSES,
        include_preprocessing=True,
    )
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)]
    convolutions = read_tflite_convolutions(tflite_path)
    if len(layers) != len(convolutions):
        raise ValueError(f"{tflite_path}: {len(convolutions)} convolutions, Keras has {len(layers)}")
    for layer, (_, kernel, bias) in zip(layers, convolutions, strict=True):
        keras_kernel = layer.weights[0]
        if tuple(keras_kernel.shape) != kernel.shape:
            raise ValueError(f"{layer.name}: Keras kernel {keras_kernel.shape}, TFLite {kernel.shape}")
        if layer.use_bias:
            layer.set_weights([kernel, bias])
            continue
        layer.set_weights([kernel])
        batch_norm = model.get_layer(f"{layer.name}_bn")
        batch_norm.set_weights(
            [
                np.ones_like(bias),  # gamma
                bias,  # beta: the folded bias
                np.zeros_like(bias),  # moving mean
                np.full_like(bias, 1.0 - batch_norm.epsilon),  # moving variance
            ]
        )
    return model


def save_ported_weights(model: Any, path: Path) -> None:
    """The port's weights as float16 per layer (ImageNet classifier left out): a small file that trains
    the same network on a machine without LiteRT."""
    arrays = {
        f"{layer.name}/{index}": weight.astype(np.float16)
        for layer in model.layers
        if layer.name != "logits"
        for index, weight in enumerate(layer.get_weights())
    }
    np.savez(path, **arrays)


def load_imagenet_mobilenet_v3_small(weights: Path, input_size: int = INPUT_SIZE) -> Any:
    """The ImageNet model from the TFLite file, or from ``save_ported_weights``' ``.npz`` file (the
    ImageNet classifier then stays untrained: training replaces it)."""
    if weights.suffix != ".npz":
        return build_imagenet_mobilenet_v3_small(weights, input_size)
    import keras

    model = keras.applications.MobileNetV3Small(
        input_shape=(input_size, input_size, 3), weights=None, classes=IMAGENET_CLASSES, include_preprocessing=True
    )
    with np.load(weights) as arrays:
        by_layer: dict[str, list[tuple[int, np.ndarray]]] = {}
        for key in arrays.files:
            name, index = key.rsplit("/", 1)
            by_layer.setdefault(name, []).append((int(index), arrays[key].astype(np.float32)))
    for name, indexed in by_layer.items():
        model.get_layer(name).set_weights([array for _, array in sorted(indexed)])
    return model


def pre_logits(model: Any) -> Any:
    """The 1024-wide embedding of a MobileNetV3-Small: the activation right after ``conv_2``.

    Found by position, not by name: Keras numbers unnamed layers per process.
    """
    return _beside_pre_logits(model, 1).output


def last_feature_map(model: Any) -> Any:
    """The last feature map of a MobileNetV3-Small: the input of the global pooling right before ``conv_2``
    (found by position: the recipe's sixth network in one process pools in ``global_average_pooling2d_5``)."""
    import keras

    pooling = _beside_pre_logits(model, -1)
    if not isinstance(pooling, keras.layers.GlobalAveragePooling2D):
        raise ValueError(f"{model.name}: {pooling.name} before {PRE_LOGITS_LAYER} is not the global pooling")
    return pooling.input


def _beside_pre_logits(model: Any, offset: int) -> Any:
    layers = list(model.layers)
    return layers[layers.index(model.get_layer(PRE_LOGITS_LAYER)) + offset]
