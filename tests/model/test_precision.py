"""Index-time precision: the CPU's bf16 support, auto's choice, the recorded runtime, bf16 ~ fp32
(int8: tests/model/test_onnx_tower.py)."""

import numpy as np
import pytest

from groundzero.errors import ConfigError, IndexMismatchError
from groundzero.model.identity import ModelIdentity
from groundzero.model.precision import cpu_has_fast_bf16, index_precision, runtime_name, torch_dtype
from tests import media

FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep avx2 avx512f avx512bw"


@pytest.mark.parametrize("extra, fast", [("", False), (" avx512_bf16", True), (" amx_tile amx_bf16", True),
                                         (" avx512_vnni", False)])
def test_fast_bf16_is_read_from_the_cpu_flags(tmp_path, extra, fast):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU bf16 edition\nflags\t\t: {FLAGS}{extra}\n\n")
    assert cpu_has_fast_bf16(info) is fast


def test_no_cpuinfo_means_no_fast_bf16(tmp_path):
    assert cpu_has_fast_bf16(tmp_path / "missing") is False


def test_auto_follows_the_index_then_the_device():
    assert index_precision("auto", "cuda", None, fast_bf16_cpu=False) == "bf16"
    assert index_precision("auto", "cpu", None, fast_bf16_cpu=True) == "bf16"
    assert index_precision("auto", "cpu", None, fast_bf16_cpu=False) == "fp32"
    # an existing index keeps its runtime, whatever this machine would pick
    assert index_precision("auto", "cuda", "torch-fp32", fast_bf16_cpu=True) == "fp32"
    assert index_precision("auto", "cpu", "torch-bf16", fast_bf16_cpu=False) == "bf16"
    # explicit wins here; a clash with the index is refused when the writer opens it (test_precision_record)
    assert index_precision("fp32", "cuda", "torch-bf16", fast_bf16_cpu=True) == "fp32"


def test_bad_precision_names_the_field():
    with pytest.raises(ConfigError, match="auto, fp32, bf16, int8, got 'fp16'") as e:
        index_precision("fp16", "cpu", None, fast_bf16_cpu=False)
    assert e.value.field == "precision"
    with pytest.raises(IndexMismatchError, match="runtime 'onnx-fp16'"):
        index_precision("auto", "cpu", "onnx-fp16", fast_bf16_cpu=False)


def test_int8_is_for_cpus():
    assert index_precision("auto", "cpu", "onnx-int8", fast_bf16_cpu=True) == "int8"  # the index's own
    assert index_precision("int8", "cpu", None, fast_bf16_cpu=False) == "int8"
    for requested, recorded in [("int8", None), ("auto", "onnx-int8")]:
        with pytest.raises(ConfigError, match="int8 runs on CPUs") as e:
            index_precision(requested, "cuda", recorded, fast_bf16_cpu=False)
        assert e.value.field == "precision"


def test_identity_records_the_runtime_and_old_manifests_read_as_fp32():
    ident = ModelIdentity("m", "ab" * 32, 32, 32, 16)
    assert ident.runtime == "" and "runtime" not in ident.to_dict()  # a query-time identity chooses none
    bf16 = ModelIdentity("m", "ab" * 32, 32, 32, 16, runtime=runtime_name("bf16"))
    assert bf16.to_dict()["runtime"] == "torch-bf16" and ModelIdentity.from_dict(bf16.to_dict()) == bf16
    assert ModelIdentity.from_dict(ident.to_dict()).runtime == "torch-fp32"


def test_bf16_embeddings_agree_with_fp32_on_decoded_frames(tmp_path):
    """The demo model on real decoded video (ffmpeg's testsrc pattern and solid colours): the bf16
    image tower's embeddings point where the fp32 ones do."""
    import torch

    from groundzero.indexer.decode import DecodeConfig, decode_frames
    from groundzero.model.backbone import Backbone
    from groundzero.model.identity import image_resample

    fp32 = Backbone("demo", device="cpu", dtype=torch_dtype("fp32"))
    bf16 = Backbone("demo", device="cpu", dtype=torch_dtype("bf16"))
    cfg = DecodeConfig(fps=2, size=fp32.image_size, resample=image_resample(fp32.model_dir))
    frames = np.concatenate([
        decode_frames(media.make_testsrc(tmp_path / "testsrc.mp4", 6), cfg),
        decode_frames(media.make_color_segments(tmp_path / "colours.mp4", [("red", 2), ("blue", 2)]), cfg),
    ])
    assert len(frames) >= 16
    a, b = fp32.embed_images(frames), bf16.embed_images(frames)  # (N, D) float32, L2-normalised
    assert b.dtype == np.float32 and next(bf16.model.parameters()).dtype == torch.bfloat16
    cos = (a * b).sum(1)
    assert cos.min() >= 0.999, cos
    assert not np.allclose(a, b, atol=1e-6)  # bf16 really ran
