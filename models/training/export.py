"""Exporting trained Keras networks into the artifact (training side, needs TensorFlow): the served files
(LiteRT, Keras), each with its last feature map beside the logits for the explanation picture, and the head's
weights (models/serving/explanation_head.py).

    python -m models.training.export export [--artifact models/artifact]   # re-export an artifact's networks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.serving.explanation_head import (
    EXPLANATION_FILE,
    LOGITS_LAYER,
    PRE_LOGITS_LAYER,
    ExplanationHead,
)
from models.serving.inference import ARTIFACT_DIR, ArtifactMetadata, artifact_version, read_metadata
from models.serving.preprocessing import INPUT_SIZE
from models.training.port import last_feature_map
from models.training.warm_start import member_networks


def export_network(model: Any, artifact_dir: Path, files: dict[str, str]) -> None:
    import tensorflow as tf

    model.save(artifact_dir / files["keras"])
    # Batch 1: the workers classify one photo per invoke; a fixed shape lets XNNPACK plan once.
    signature = [tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="image")]
    model.export(str(artifact_dir / files["litert"]), format="litert", input_signature=signature, verbose=False)


def explainable_network(model: Any) -> tuple[Any, ExplanationHead]:
    """The served Keras network with a second output, its last feature map (members concatenated), and the
    head's weights. ``model``: one trained network, models.training.package.average_models' ensemble, or a
    network this function made before (an artifact's: made again from its logits)."""
    import keras

    if len(model.outputs) > 1:
        model = keras.Model(model.inputs, model.outputs[0], name=model.name)
    members = member_networks(model)
    image = keras.Input(model.input_shape[1:], name="image")
    logits, maps, heads = [], [], []
    for index, member in enumerate(members):
        feature_map = last_feature_map(member)
        branch = keras.Model(member.inputs, [member.outputs[0], feature_map], name=f"member_{index}")
        member_logits, member_map = branch(image)
        logits.append(member_logits)
        maps.append(member_map)
        pre_kernel, pre_bias = member.get_layer(PRE_LOGITS_LAYER).get_weights()
        dense_kernel, dense_bias = member.get_layer(LOGITS_LAYER).get_weights()
        heads.append((pre_kernel.reshape(pre_kernel.shape[-2:]), pre_bias, dense_kernel, dense_bias))
    joined_logits = keras.layers.Average(name="mean_logits")(logits) if len(logits) > 1 else logits[0]
    joined_maps = keras.layers.Concatenate(name="feature_maps")(maps) if len(maps) > 1 else maps[0]
    network = keras.Model(image, [joined_logits, joined_maps], name=model.name)
    head = ExplanationHead(*(np.stack(parts).astype(np.float32) for parts in zip(*heads, strict=True)))
    return network, head


def export_explainable(artifact_dir: Path) -> None:
    """Re-export each kind's network with its feature map, write explanation.npz and the new version."""
    import keras

    metadata = read_metadata(artifact_dir)
    arrays: dict[str, np.ndarray] = {}
    for kind, settings in metadata.kinds.items():
        model = keras.saving.load_model(artifact_dir / settings.network_files["keras"], compile=False)
        network, head = explainable_network(model)
        export_network(network, artifact_dir, {runtime: name for runtime, name in settings.network_files.items()})
        arrays.update(head.arrays(kind.value))
    np.savez(artifact_dir / EXPLANATION_FILE, **arrays)  # type: ignore[arg-type]
    raw = json.loads((artifact_dir / "metadata.json").read_text())
    raw["explanation_file"] = EXPLANATION_FILE
    files = read_metadata_files(raw)
    raw["version"] = artifact_version(artifact_dir, files)
    (artifact_dir / "metadata.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(f"exported explainable networks; artifact version {raw['version']}")
    del metadata


def read_metadata_files(raw: dict[str, Any]) -> list[str]:
    return ArtifactMetadata.model_validate(raw).model_files()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["export"])
    parser.add_argument("--artifact", type=Path, default=ARTIFACT_DIR)
    args = parser.parse_args(argv)
    export_explainable(args.artifact)


if __name__ == "__main__":
    main()
