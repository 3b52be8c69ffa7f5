"""How far the indexer's frames are from what the checkpoint's own image processor gives.

    .venv/bin/python bench/processor_parity.py --workdir WORKDIR [--json]

For ffmpeg's ``testsrc2`` and ``smptebars`` and a photo-like image (1/f spectrum), at 1280x720,
640x480 and 1920x1080, the first frame is decoded to RGB at full resolution (what a user would hand
the processor) and given to transformers' PIL processors; the indexer's frame for the same video
(:func:`groundzero.indexer.decode.iter_frames`) is compared with the processor's pixels, in levels
of 255 (mean and 99th percentile of the absolute difference):

* ``siglip2-fixed``: ``SiglipImageProcessorPil`` at 384x384, bilinear (SigLIP 2 fixed resolution);
* ``siglip1``: the same, bicubic;
* ``naflex``: ``Siglip2ImageProcessorPil``, 16 px patches, 256 a frame (the aspect ratio kept);
* ``naflex-ffmpeg``: what ffmpeg's own bilinear scaler would give at the NaFlex size (the
  indexer resizes NaFlex frames with PIL instead; this column says why).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.media

SIZES = [(1280, 720), (640, 480), (1920, 1080)]
SOURCES = ["testsrc2", "smptebars", "photo"]


def _ffmpeg_rgb(path: Path, vf: str, height: int, width: int) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", vf, "-frames:v", "1", "-f", "rawvideo",
                          "pipe:"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(height, width, 3)


def _stats(got: np.ndarray, want: np.ndarray) -> dict:
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return {"mean": round(float(d.mean()), 3), "p99": float(np.percentile(d, 99)), "max": float(d.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    from groundzero.indexer.decode import DecodeConfig, iter_frames
    from groundzero.model.naflex import from_patches
    from tests import media  # the clips' makers, shared with the parity tests

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for source in SOURCES:
        for width, height in SIZES:
            path = args.workdir / f"{source}-{width}x{height}.mp4"
            if source == "photo":
                media.make_photo_like(path, width, height)
            else:
                media.make_lavfi_still(path, source, width, height)
            rgb = media.first_frame_rgb(path, width, height)
            row = {"source": source, "size": f"{width}x{height}"}
            for name, code, scaler in [("siglip2-fixed", 2, "bilinear"), ("siglip1", 3, "bicubic")]:
                proc = SiglipImageProcessorPil(size={"height": 384, "width": 384}, resample=code, do_rescale=False,
                                               do_normalize=False)
                want = np.asarray(proc(rgb, return_tensors="np")["pixel_values"][0]).transpose(1, 2, 0)
                (chunk,) = list(iter_frames(str(path), DecodeConfig(fps=1, size=384, resample=scaler)))
                row[name] = _stats(chunk.frames[0], want)
            proc = Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256, resample=2, do_rescale=False,
                                            do_normalize=False)
            out = proc(rgb, return_tensors="np")
            gh, gw = (int(x) for x in out["spatial_shapes"][0])
            want = from_patches(np.asarray(out["pixel_values"])[:1], (gh, gw), 16)[0]
            (chunk,) = list(iter_frames(str(path), DecodeConfig(fps=1, resample="bilinear", max_patches=256,
                                                                patch_size=16)))
            row["naflex_hw"] = [gh * 16, gw * 16]
            row["naflex"] = _stats(chunk.frames[0], want)
            scaled = _ffmpeg_rgb(path, f"format=rgb24,scale={gw * 16}:{gh * 16}:flags=bilinear", gh * 16, gw * 16)
            row["naflex-ffmpeg"] = _stats(scaled, want)
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cols = ["siglip2-fixed", "siglip1", "naflex", "naflex-ffmpeg"]
    print(f"{'source':<10} {'size':<10} {'naflex h x w':<13} " + " ".join(f"{c + ' mean/p99':>22}" for c in cols))
    for r in rows:
        cells = " ".join(f"{r[c]['mean']:>15.3f}/{r[c]['p99']:<6.0f}" for c in cols)
        print(f"{r['source']:<10} {r['size']:<10} {'x'.join(map(str, r['naflex_hw'])):<13} {cells}")


if __name__ == "__main__":
    main()
