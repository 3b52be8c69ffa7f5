"""The image tower as an int8 ONNX Runtime model, for indexing on a CPU (``--precision int8``).

The checkpoint's vision tower (pixels -> pooled image features) is exported to ONNX from the same
transformers model :class:`~groundzero.model.backbone.Backbone` runs, and the weights of its
encoder blocks' MLPs quantised to int8 with ONNX Runtime's dynamic quantisation (activations
quantised per call at run time, so no calibration data is needed; the attention projections, the
patch embedding and the pooling head stay float32: :func:`_kept_in_float`), at a cosine of 0.999
or better with the float32 features (``tests/model/test_onnx_tower.py``). How much faster than float32 depends on the CPU's int8
instructions (VNNI or not); ``bench/embed_cost.py`` measures it.

The quantised model is built once per checkpoint and frame size and kept in
``$GROUNDZERO_CACHE_DIR/onnx/`` (default ``~/.cache/groundzero/onnx``), named by the weights'
fingerprint; it is written under a temporary name and renamed, so concurrent builders (several
embed actors) never read a half-written file. Fixed-resolution checkpoints only: a NaFlex tower's
input changes shape with each video. Frames run one at a time (:meth:`Backbone.embed_images
<groundzero.model.backbone.Backbone.embed_images>`): activations are quantised per call, and a
frame's embedding must not depend on the frames batched with it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from groundzero.errors import ConfigError, ModelNotFoundError

log = logging.getLogger(__name__)

#: what an index embedded with this runtime records (:attr:`ModelIdentity.runtime`)
INT8_RUNTIME = "onnx-int8"
_ONNX_OPSET = 17
_build_lock = threading.Lock()


def cache_dir() -> Path:
    base = os.environ.get("GROUNDZERO_CACHE_DIR") or Path.home() / ".cache" / "groundzero"
    return Path(base) / "onnx"


def int8_path(fingerprint: str, image_size: int) -> Path:
    """Where the int8 tower of the checkpoint with this weights fingerprint is kept."""
    return cache_dir() / f"siglip-vision-{fingerprint[:32]}-{image_size}px-int8mlp.onnx"


def build_int8(model, image_size: int, out: Path) -> Path:
    """Export ``model``'s vision tower (a transformers SigLIP model, float32, CPU) to ONNX and
    quantise its weights to int8; writes ``out`` atomically.

    The ONNX model maps ``pixel_values`` float32 (N, 3, S, S), normalised as the processor
    normalises, to ``features`` float32 (N, D), SigLIP's pooled image features (not L2-normalised).
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from groundzero.model.backbone import pooled_output

    class _Tower(torch.nn.Module):
        def __init__(self, siglip):
            super().__init__()
            self.siglip = siglip

        def forward(self, pixel_values):
            return pooled_output(self.siglip.get_image_features(pixel_values=pixel_values))

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        x = torch.zeros(2, 3, image_size, image_size)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-level shape checks (shapes are fixed)
            torch.onnx.export(_Tower(model).eval(), (x,), str(fp32), input_names=["pixel_values"],
                              output_names=["features"], opset_version=_ONNX_OPSET, dynamo=False,
                              dynamic_axes={"pixel_values": {0: "n"}, "features": {0: "n"}})
        part = Path(tmp) / "int8.onnx"
        root = logging.getLogger()  # the quantiser logs a pre-processing tip on the root logger
        level = root.level
        root.setLevel(logging.ERROR)
        try:  # QInt8 weights, dynamically quantised uint8 activations: ONNX Runtime's CPU default
            quantize_dynamic(str(fp32), str(part), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             nodes_to_exclude=_kept_in_float(fp32))
        finally:
            root.setLevel(level)
        os.replace(part, out)
    return out


def ensure_int8(model_dir: Path, identity) -> Path:
    """The int8 tower of checkpoint ``model_dir`` (its :class:`~groundzero.model.identity.ModelIdentity`):
    from the cache, else built there (a minute or two for So400m: the float32 model is loaded to
    export it)."""
    if identity.naflex:
        raise ConfigError("int8 runs fixed-resolution checkpoints; a NaFlex model's input changes shape "
                          "with each video: use --precision fp32 or bf16", field="precision")
    path = int8_path(identity.fingerprint, identity.image_size)
    if not path.is_file():
        with _build_lock:
            if not path.is_file():
                import torch
                from transformers import AutoModel

                log.info("building the int8 image tower of %s in %s", identity.name, path)
                model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
                build_int8(model, identity.image_size, path)
    return path


def _kept_in_float(model_path: Path) -> list[str]:
    """The matrix products that stay float32: all but the encoder blocks' MLPs (``.../layers.N/mlp/fc1``
    and ``fc2``, two thirds of a block's weights). Quantising the attention projections and the
    pooling head as well moved the demo model's embeddings to a cosine of 0.9952 (worst frame of 600)
    against 0.9998 for the MLPs alone (docs/RESULTS.md)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm", "Conv")
            and not ("/encoder/layers." in n.name and "/mlp/" in n.name)]


class Int8ImageTower:
    """An ONNX Runtime session of the int8 tower: ``tower(pixel_values (N, 3, S, S) float32) -> (N, D)``.

    Args:
        path: the quantised model (:func:`build_int8`).
        threads: intra-op threads (the cores the embed actor was given); None: ONNX Runtime's choice.
    """

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # a damaged cache file: say which, and how to get a new one
            raise ModelNotFoundError(f"cannot load the int8 image tower {path} ({type(e).__name__}: {e}); "
                                     "delete it and it is built again") from e

    @classmethod
    def for_backbone(cls, backbone, threads: int | None = None) -> Int8ImageTower:
        """The int8 tower of ``backbone``'s checkpoint (:func:`ensure_int8`)."""
        return cls(ensure_int8(backbone.model_dir, backbone.identity), threads)

    def __call__(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.session.run(["features"], {"pixel_values": np.ascontiguousarray(pixel_values, np.float32)})[0]
