"""Starting a training run from another trained lesion network instead of the ImageNet port (``--init-from``).

The source is a saved Keras model of the same architecture as ``train.build_classifier``'s: a run's
``model.keras``, or a network of the artifact (``models/artifact/dermoscopic.keras``). The artifact's networks
carry a second output (the feature map of the explanation picture, models/training/export.py) and the
dermoscopy network is two runs averaged (package.average_models): its members are separate networks, so one
of them is chosen (``member``). Their weights are not averaged: two runs fine-tuned from the same start with
other seeds and lengths lie close enough that a weight average still works, but it classified HAM10000's
validation images worse than either member (see the model card, "What was tried").

Every layer with weights takes the same-named source layer's weights, head included (the classes are the
same 7); batch normalisation keeps the ported, folded statistics either way (it never trains).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def member_networks(model: Any) -> list[Any]:
    """The lesion networks inside a saved model: the members of an averaged ensemble, else the model itself."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]


def load_source_network(path: Path, member: int | None) -> Any:
    """The network to start from; ``member`` picks one of an ensemble's members (required when there are several)."""
    import keras

    members = member_networks(keras.saving.load_model(path, compile=False))
    if member is None:
        if len(members) > 1:
            raise ValueError(f"{path} averages {len(members)} networks: choose one with init_member (0-based)")
        return members[0]
    if not 0 <= member < len(members):
        raise ValueError(f"{path} has {len(members)} member network(s), no member {member}")
    return members[member]


def copy_weights(source: Any, target: Any) -> int:
    """Give every layer of ``target`` that has weights the same-named ``source`` layer's weights; returns how many
    layers were copied. Refuses (ValueError) a layer the source lacks or whose weight shapes differ."""
    source_layers = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in target.layers:
        current = layer.get_weights()
        if not current:
            continue
        other = source_layers.get(layer.name)
        if other is None:
            raise ValueError(f"the source network has no layer {layer.name!r}")
        weights = other.get_weights()
        if [w.shape for w in weights] != [w.shape for w in current]:
            shapes = [w.shape for w in weights], [w.shape for w in current]
            raise ValueError(f"layer {layer.name!r}: source weights {shapes[0]}, here {shapes[1]}")
        layer.set_weights(weights)
        copied += 1
    return copied


def start_from(model: Any, path: Path, member: int | None) -> int:
    """Load ``path`` (its ``member``) into ``model``, a freshly built classifier; returns the layers copied."""
    return copy_weights(load_source_network(path, member), model)


def file_digest(path: Path) -> str:
    """SHA-256 of the source file, recorded in the run's train_config.json."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
