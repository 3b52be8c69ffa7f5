"""Can motion be read from an index's stored frame embeddings? A linear probe per object event.

    .venv/bin/python -m groundzero.synthetic.build --out OUT     # any build: index-train, index-val
    .venv/bin/python bench/motion_probe.py --train-index OUT/index-train \\
        --eval-index OUT/index-val --archive OUT/archive

For every ``object`` event of the synthetic archive (a shape moving left / right / up / down or
standing still, ``SPLIT_events.jsonl``) it takes the event's frames from the index (1 fps) and
describes the event by the mean embedding of its last third minus that of its first third
(D numbers: where the shape went, if the embeddings encode where it is). A ridge-regularised
least-squares probe from that to the motion (5 classes, chance about 0.2) is fitted on the
train split's events and scored on the eval split's. It bounds from below what a temporal head
could read about motion from these embeddings *given the event's extent*; the head has to find
the extent too. Prints the accuracies and the confusion matrix (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

MOTIONS = ("left", "right", "up", "down", "still")


def event_deltas(index: Path, events_file: Path, min_frames: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) last-third minus first-third mean embedding of every object event, (N,) motion index."""
    from groundzero.store.training_set import video_frames_by_id

    videos = [json.loads(line) for line in events_file.read_text().splitlines()]
    _, frames = video_frames_by_id(index, {v["vid"] for v in videos})
    X, y = [], []
    for v in videos:
        emb = frames.get(v["vid"])
        for e in v["events"] if emb is not None else ():
            if e["kind"] != "object":
                continue
            f = emb[math.floor(e["start_sec"]): math.ceil(e["end_sec"])]  # (T_e, D) at 1 fps
            if len(f) < min_frames:
                continue
            k = len(f) // 3
            X.append(f[-k:].mean(0) - f[:k].mean(0))
            y.append(MOTIONS.index(e["motion"]))
    if not X:
        raise SystemExit(f"no object events of {min_frames}+ frames in {events_file} found in {index}")
    return np.asarray(X, np.float64), np.asarray(y)


def ridge_probe(Xa: np.ndarray, ya: np.ndarray, Xb: np.ndarray, ridge: float) -> np.ndarray:
    """Predicted classes of ``Xb`` from a one-hot ridge regression fitted on (``Xa``, ``ya``)."""
    mu, sd = Xa.mean(0), Xa.std(0) + 1e-9
    A, B = (Xa - mu) / sd, (Xb - mu) / sd
    A, B = np.c_[A, np.ones(len(A))], np.c_[B, np.ones(len(B))]
    Y = np.eye(len(MOTIONS))[ya]
    W = np.linalg.solve(A.T @ A + ridge * len(A) * np.eye(A.shape[1]), A.T @ Y)
    return (B @ W).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-index", type=Path, required=True, help="index of the archive's train split")
    ap.add_argument("--eval-index", type=Path, required=True, help="index of the split to score on")
    ap.add_argument("--archive", type=Path, required=True, help="the synthetic archive (SPLIT_events.jsonl)")
    ap.add_argument("--eval-split", default="val")
    ap.add_argument("--ridge", type=float, default=0.1, help="ridge strength (times the sample count)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    Xa, ya = event_deltas(args.train_index, args.archive / "train_events.jsonl")
    Xb, yb = event_deltas(args.eval_index, args.archive / f"{args.eval_split}_events.jsonl")
    train_acc = float((ridge_probe(Xa, ya, Xa, args.ridge) == ya).mean())
    pred = ridge_probe(Xa, ya, Xb, args.ridge)
    confusion = np.zeros((len(MOTIONS), len(MOTIONS)), int)
    np.add.at(confusion, (yb, pred), 1)
    figures = {"train_events": len(ya), "eval_events": len(yb), "train_accuracy": round(train_acc, 3),
               "eval_accuracy": round(float((pred == yb).mean()), 3),
               "confusion": {m: dict(zip(MOTIONS, map(int, row))) for m, row in zip(MOTIONS, confusion)}}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"motion from frame embeddings (object events, last third - first third, ridge {args.ridge}):")
    print(f"  train ({len(ya)} events) accuracy {train_acc:.3f}; {args.eval_split} ({len(yb)} events) "
          f"accuracy {figures['eval_accuracy']:.3f} (chance about {1 / len(MOTIONS):.2f})")
    print("  confusion (rows: true, columns: predicted): " + " ".join(f"{m:>6}" for m in MOTIONS))
    for m, row in zip(MOTIONS, confusion):
        print(f"  {m:>44} " + " ".join(f"{n:6d}" for n in row))


if __name__ == "__main__":
    main()
