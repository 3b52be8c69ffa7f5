"""What a demo backbone's frame embeddings carry: caption accuracy, and linear probes of position and shape.

    .venv/bin/python bench/backbone_probe.py                          # the bundled demo backbone
    .venv/bin/python bench/backbone_probe.py --model OUT/backbone     # a fresh build

Three figures, all on frames of the synthetic archive's *val* pairs (never trained on):

* **caption accuracy**: image -> text top-1 among the distinct captions of ``--frames`` frames
  (:func:`groundzero.synthetic.archive.frames_and_captions`, the build's mix of state and sentence captions),
  once with frames rendered straight at the backbone's size and once through the archive's
  H.264 encoder and the indexer's decoder (what an index actually feeds the backbone);
* **position R²**: a least-squares linear probe from the embedding to the x position of one
  shape moving right (random shape, colour and lane), fitted on 75% of ``--probe-frames``
  frames, R² on the rest. Near 0 means a temporal model cannot read left / right motion
  from successive frame embeddings;
* **shape accuracy**: a linear probe of the shape (4 classes, chance 0.25) on the same frames;
* **word contrast** (text tower): for sentence pairs one word apart ("... moving left" /
  "... moving right"), the cosine between the states of the differing word at the input
  embeddings (layer 0) and at the tower's output, and between the pooled sentence embeddings.
  Near 1 at the output means the head's word features cannot tell the two words apart.

Prints one table (``--json`` for the figures as JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def caption_accuracy(backbone, images: np.ndarray, captions: list[str]) -> float:
    """Image -> text top-1 accuracy of ``images`` (N, S, S, 3) among the distinct ``captions``."""
    classes = sorted(set(captions))
    txt = backbone.embed_texts(classes)  # (C, D), L2-normalised
    img = backbone.embed_images(images)  # (N, D)
    pred = (img @ txt.T).argmax(axis=1)
    target = np.array([classes.index(c) for c in captions])
    return float((pred == target).mean())


def linear_probes(emb: np.ndarray, x: np.ndarray, shape: np.ndarray, train: int) -> tuple[float, float]:
    """(R² of x, shape accuracy) of least-squares probes fitted on the first ``train`` rows."""
    X = np.c_[emb, np.ones(len(emb))]
    w = np.linalg.lstsq(X[:train], x[:train], rcond=None)[0]
    resid = X[train:] @ w - x[train:]
    r2 = 1.0 - float((resid**2).mean() / x[train:].var())
    onehot = np.eye(int(shape.max()) + 1)[shape]
    W = np.linalg.lstsq(X[:train], onehot[:train], rcond=None)[0]
    acc = float(((X[train:] @ W).argmax(axis=1) == shape[train:]).mean())
    return r2, acc


#: sentence pairs one word apart: the motions, a shape and a colour
WORD_PAIRS = (("a red circle moving left", "a red circle moving right"),
              ("a red circle moving up", "a red circle moving down"),
              ("a red circle appears", "a red square appears"),
              ("a red circle appears", "a blue circle appears"))


def word_contrast(backbone, a: str, b: str) -> dict[str, float]:
    """Cosines between sentences ``a`` and ``b`` at their first differing token: layer 0, output, pooled."""
    states, _ = backbone.encode_text_tokens([a, b], (0, -1))  # (2, L, 2 * Dt): layer 0, then the output
    ids = backbone.tokenize([a, b])["input_ids"].cpu().numpy()
    k = int(np.flatnonzero(ids[0] != ids[1])[0])
    half = states.shape[-1] // 2
    out = {}
    for name, part in (("layer0", slice(None, half)), ("output", slice(half, None))):
        u, v = states[0, k, part], states[1, k, part]
        out[name] = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    pooled = backbone.embed_texts([a, b])  # L2-normalised
    out["pooled"] = float(pooled[0] @ pooled[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="backbone checkpoint (default: the bundled demo backbone)")
    ap.add_argument("--frames", type=int, default=2000, help="frames for the caption accuracy")
    ap.add_argument("--probe-frames", type=int, default=1200, help="frames for the linear probes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from groundzero.indexer.decode import DecodeConfig, decode_frames
    from groundzero.model.backbone import Backbone, bundled_model_dir
    from groundzero.synthetic.archive import SynthConfig
    from groundzero.synthetic.captions import frames_and_captions
    from groundzero.synthetic.encode import write_video
    from groundzero.synthetic.events import object_event
    from groundzero.synthetic.render import render_frame
    from groundzero.synthetic.vocabulary import SHAPES

    model = args.model or str(bundled_model_dir())
    backbone = Backbone(model, device="cpu")
    size = backbone.identity.image_size
    as_indexed = DecodeConfig(fps=1.0, size=size)
    synth = SynthConfig()
    rendered = frames_and_captions(synth, args.frames, args.seed, image_size=size, split="val")
    through_codec = frames_and_captions(synth, args.frames, args.seed, image_size=size, split="val",
                                        decode=lambda clip: decode_frames(clip, as_indexed))
    direct, coded, captions = rendered.images, through_codec.images, rendered.captions
    assert captions == through_codec.captions
    figures = {"model": model, "image_size": size, "n_captions": len(set(captions)),
               "caption_accuracy_direct": caption_accuracy(backbone, direct, captions),
               "caption_accuracy_indexed": caption_accuracy(backbone, coded, captions)}

    rng = np.random.default_rng(args.seed)
    pairs = synth.pairs("val")
    frames, xs, shapes = [], [], []
    for _ in range(args.probe_frames):
        shape, colour = pairs[int(rng.integers(len(pairs)))]
        mover = object_event(shape, colour, "right", 0.0, 10.0, y_frac=float(rng.uniform(0.25, 0.75)))
        t = float(rng.uniform(0.0, 10.0))
        frames.append(render_frame([mover], t, synth.size))
        xs.append(t / 10.0)
        shapes.append(SHAPES.index(shape))
    with tempfile.TemporaryDirectory(prefix="gz-probe-") as tmp:
        clip = write_video(Path(tmp) / "probe.mp4", iter(frames), 1, synth.size)
        emb = backbone.embed_images(decode_frames(clip, as_indexed))
    r2, shape_acc = linear_probes(emb, np.array(xs), np.array(shapes), train=int(0.75 * len(xs)))
    figures.update(position_r2=r2, shape_probe_accuracy=shape_acc)
    figures["word_contrast"] = {f"{a} / {b}": word_contrast(backbone, a, b) for a, b in WORD_PAIRS}

    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"backbone {model} ({size} px); {args.frames} val frames, {figures['n_captions']} distinct captions")
    print(f"{'caption accuracy, rendered at input size':<46}{figures['caption_accuracy_direct']:.3f}")
    print(f"{'caption accuracy, through H.264 + decoder':<46}{figures['caption_accuracy_indexed']:.3f}")
    print(f"{'position R² (linear probe, x of a mover)':<46}{r2:.3f}")
    print(f"{'shape accuracy (linear probe, chance 0.25)':<46}{shape_acc:.3f}")
    print("word contrast, cosine at the differing word: layer 0 / output / pooled sentence")
    for pair, c in figures["word_contrast"].items():
        print(f"  {pair:<56}{c['layer0']:.3f} / {c['output']:.3f} / {c['pooled']:.3f}")


if __name__ == "__main__":
    main()
