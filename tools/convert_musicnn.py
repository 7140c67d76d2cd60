"""One-off converter: musicnn's TensorFlow checkpoints -> safetensors for ``genre_core.models.musicnn.Musicnn``.

musicnn (Pons & Serra 2019, package ``musicnn`` 0.1.0, ISC licence) ships its pretrained taggers as
TensorFlow 1.x checkpoints inside the wheel. This script builds musicnn's own graph (``models.define_model``
under ``tf.compat.v1``, inference mode), restores each checkpoint, copies every variable into the key layout of
our torch module and records the TF model's outputs on a fixed seeded input, so that the torch port can be
tested without TensorFlow. It writes, per model, ``weights.safetensors``, ``backbone.json`` and ``LICENSE``
into ``models/backbones/musicnn-{msd,mtt}/``.

Neither TensorFlow nor musicnn is a dependency of the project: run this in its own throwaway venv (ignored by
git). From the repository root::

    python3.11 -m venv tools/.venv-musicnn
    tools/.venv-musicnn/bin/pip install "tensorflow-cpu==2.15.1" safetensors
    tools/.venv-musicnn/bin/pip install --no-deps musicnn==0.1.0
    tools/.venv-musicnn/bin/python tools/convert_musicnn.py [--out models/backbones]

TF 2.15 is the last release whose ``tf.compat.v1.layers`` still works out of the box (it uses Keras 2);
musicnn's declared requirements (numpy<1.17, librosa) are skipped with ``--no-deps`` because only its
``models.py`` / ``configuration.py`` and the checkpoint files are used, never its librosa front end.
The script needs no torch: tensors are written with ``safetensors.numpy``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from safetensors.numpy import save as st_save  # noqa: E402

tf.compat.v1.disable_eager_execution()

import musicnn  # noqa: E402
from musicnn import configuration as mconfig  # noqa: E402
from musicnn import models as mmodels  # noqa: E402

N_FRAMES = 187  # musicnn's 3 s patch: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
REFERENCE_SEED = 20190701
REFERENCE_BATCH = 3
REFERENCE_RECIPE = (
    "np.random.default_rng(seed).uniform(0.0, 4.0, size=(batch, n_frames, n_mels)).astype(np.float32)"
    "  # musicnn layout [batch, time, mels]; transpose(0, 2, 1) for Musicnn.forward"
)
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default epsilon

# TF variable scope -> torch module prefix, in graph-construction order (see musicnn/models.py).
CONVS = {
    "conv2d": "timbral74",  # [7, 38] valid, on the input padded by 3 frames each side
    "conv2d_1": "timbral77",  # [7, 67] valid, same padding of the input
    "conv2d_2": "temporal128",  # [128, 1] 'same'
    "conv2d_3": "temporal64",  # [64, 1] 'same'
    "conv2d_4": "temporal32",  # [32, 1] 'same'
    "conv2d_5": "mid1",  # [7, 561] valid over the front-end features padded by 3 frames
    "conv2d_6": "mid2",  # [7, 64]
    "conv2d_7": "mid3",  # [7, 64]
}
BATCH_NORMS = {
    "batch_normalization": "bn_input",
    "batch_normalization_1": "bn_timbral74",
    "batch_normalization_2": "bn_timbral77",
    "batch_normalization_3": "bn_temporal128",
    "batch_normalization_4": "bn_temporal64",
    "batch_normalization_5": "bn_temporal32",
    "batch_normalization_6": "bn_mid1",
    "batch_normalization_7": "bn_mid2",
    "batch_normalization_8": "bn_mid3",
    "batch_normalization_9": "bn_pool",
    "batch_normalization_10": "bn_dense",
}
DENSES = {"dense": "dense", "dense_1": "output"}

MODELS = {
    "MSD_musicnn": ("musicnn-msd", mconfig.MSD_LABELS, "Million Song Dataset (50 most frequent Last.fm tags)"),
    "MTT_musicnn": ("musicnn-mtt", mconfig.MTT_LABELS, "MagnaTagATune (50 most frequent tags)"),
}

PAPER = (
    "Jordi Pons and Xavier Serra. musicnn: Pre-trained convolutional neural networks for music audio tagging. "
    "Late-breaking/demo session, 20th International Society for Music Information Retrieval Conference "
    "(ISMIR), 2019. arXiv:1909.06654"
)


def reference_input(seed: int = REFERENCE_SEED, batch: int = REFERENCE_BATCH) -> np.ndarray:
    """The fixed input the TF outputs are recorded on, in musicnn's [batch, time, mels] layout."""
    return np.random.default_rng(seed).uniform(0.0, 4.0, size=(batch, N_FRAMES, mconfig.N_MELS)).astype(np.float32)


def torch_state_dict(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map TF variable values (by name, no ``:0``) to our module's state-dict keys and torch layouts.

    TF conv2d kernels are [kh, kw, in, out] on NHWC (H = time, W = mels or feature index); the front-end convs
    become torch Conv2d weights [out, 1, kh, kw] on [B, 1, time, mels]; the mid-end convs span the whole
    feature axis, so they become Conv1d weights [out, features, 7] over time. Dense kernels [in, out] become
    Linear weights [out, in]. Adam slots and the optimiser's beta powers are not exported.
    """
    out: dict[str, np.ndarray] = {}
    used = set()
    for scope, name in CONVS.items():
        kernel, bias = values[f"{scope}/kernel"], values[f"{scope}/bias"]
        if name.startswith("mid"):
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)  # [7, C, 1, O] -> [O, C, 7]
        else:
            weight = kernel.transpose(3, 2, 0, 1)  # [kh, kw, 1, O] -> [O, 1, kh, kw]
        out[f"{name}.weight"], out[f"{name}.bias"] = weight, bias
        used |= {f"{scope}/kernel", f"{scope}/bias"}
    for scope, name in BATCH_NORMS.items():
        for tf_key, pt_key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                               ("moving_variance", "running_var")):
            out[f"{name}.{pt_key}"] = values[f"{scope}/{tf_key}"]
            used.add(f"{scope}/{tf_key}")
    for scope, name in DENSES.items():
        out[f"{name}.weight"] = values[f"{scope}/kernel"].T
        out[f"{name}.bias"] = values[f"{scope}/bias"]
        used |= {f"{scope}/kernel", f"{scope}/bias"}
    left = sorted(k for k in values if k not in used and "/Adam" not in k and not k.startswith("beta"))
    if left:
        raise RuntimeError(f"TF variables not mapped to the torch module: {left}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def convert(model: str, out_root: Path) -> dict[str, Any]:
    """Build musicnn's graph for ``model``, restore its checkpoint, write the backbone directory."""
    dirname, labels, dataset = MODELS[model]
    package_dir = Path(musicnn.__file__).parent
    ckpt_prefix = str(package_dir / model) + "/"  # the checkpoint files are named "<dir>/.index" etc.

    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, mconfig.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits, *_features, penultimate = mmodels.define_model(x, is_training, model, len(labels))
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, ckpt_prefix)
        variables = tf.compat.v1.global_variables()
        values = dict(zip([v.name.removesuffix(":0") for v in variables], sess.run(variables), strict=True))
        ref_x = reference_input()
        ref_logits, ref_pen = sess.run([logits, penultimate], feed_dict={x: ref_x, is_training: False})

    tensors = torch_state_dict(values)
    blob = st_save(tensors)
    data_file = package_dir / model / ".data-00000-of-00001"
    meta = {
        "name": dirname,
        "model": "musicnn",
        "source": {
            "package": "musicnn",
            "version": metadata.version("musicnn"),
            "checkpoint": f"musicnn/{model}/",
            "checkpoint_data_sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(),
            "homepage": "github.com/jordipons/musicnn",
            "converted_with": f"tools/convert_musicnn.py, tensorflow {tf.__version__}",
        },
        "licence": "ISC",
        "copyright": "Copyright (c) Music Technology Group, Universitat Pompeu Fabra 2019. "
                     "Code developed by Jordi Pons (www.jordipons.me).",
        "paper": PAPER,
        "training_data": dataset,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "architecture": {
            "n_mels": mconfig.N_MELS,
            "n_frames": N_FRAMES,
            "n_tags": len(labels),
            "timbral_filters": 204,
            "timbral_kernels": [[7, 38], [7, 67]],
            "temporal_filters": 51,
            "temporal_kernels": [128, 64, 32],
            "midend_filters": 64,
            "midend_kernel": 7,
            "backend_units": 200,
            "batch_norm_eps": BN_EPS,
        },
        "tags": list(labels),
        "front_end": {
            "sample_rate": mconfig.SR,
            "n_fft": mconfig.FFT_SIZE,
            "hop_length": mconfig.FFT_HOP,
            "n_mels": mconfig.N_MELS,
            "mel": "librosa.feature.melspectrogram defaults: power 2, slaney mel scale (htk=False), norm='slaney'",
            "compression": "log10(1 + 10000 * mel_power)",
            "note": "musicnn casts the mel power to float16 before the log; patches are 187 frames (3 s)",
            "input_layout": "Musicnn.forward takes [batch, n_mels, n_frames]; musicnn itself [batch, time, mels]",
        },
        "reference": {
            "seed": REFERENCE_SEED,
            "shape": [REFERENCE_BATCH, N_FRAMES, mconfig.N_MELS],
            "layout": "[batch, time, mels]",
            "recipe": REFERENCE_RECIPE,
            "logits": ref_logits.astype(float).tolist(),
            "penultimate": ref_pen.astype(float).tolist(),
        },
    }
    target = out_root / dirname
    target.mkdir(parents=True, exist_ok=True)
    (target / "weights.safetensors").write_bytes(blob)
    (target / "backbone.json").write_text(json.dumps(meta, indent=2) + "\n")
    licence = Path(metadata.distribution("musicnn").locate_file("musicnn-0.1.0.dist-info/LICENSE.md"))
    (target / "LICENSE").write_text(
        "The weights in this directory were converted from the musicnn package (version "
        f"{meta['source']['version']}, checkpoint {meta['source']['checkpoint']}) and are distributed under its "
        "ISC licence, reproduced verbatim below from the package's dist-info/LICENSE.md.\n\n"
        + licence.read_text().strip() + "\n"
    )
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "backbones")
    args = parser.parse_args()
    for model in MODELS:
        meta = convert(model, args.out)
        print(f"{meta['name']}: {len(meta['tags'])} tags, weights sha256 {meta['weights_sha256']}")


if __name__ == "__main__":
    main()
