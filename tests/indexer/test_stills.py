"""Still frames are not embedded twice: which frames reuse an embedding (groundzero.indexer.stills),
the decode stage leaving their rows out, and the assembler filling them in, in any order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from groundzero.errors import ConfigError
from groundzero.indexer.decode import DecodeConfig
from groundzero.indexer.rows import VideoAssembler, decode_rows
from groundzero.indexer.stills import StillConfig, StillFrames
from tests import media

#: (lines, seconds): three slides, changes at 0, 40, 75 s (110 s)
SLIDES = [(["Photosynthesis basics", "Chlorophyll absorbs light"], 40),
          (["Mitochondria", "Cellular respiration", "ATP production"], 35),
          (["Summary", "Questions welcome"], 35)]


def test_a_colour_change_of_the_same_grey_is_a_change():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[0, ..., 0], frames[1, ..., 1] = 150, 77  # red and green of about one luma (45)
    assert StillFrames().feed(frames, np.arange(2.0), np.arange(2)).tolist() == [-1, -1]


def test_static_frames_reuse_the_first_and_reuse_is_bounded_in_time():
    frames = np.full((12, 64, 64, 3), 100, np.uint8)
    frames[6:, :32] = 200  # a change at frame 6
    still = StillFrames(StillConfig(max_reuse_sec=4.0))
    idx = np.arange(12, dtype=np.int64)
    same_as = np.concatenate([still.feed(frames[s:s + 5], idx[s:s + 5].astype(float), idx[s:s + 5])
                              for s in range(0, 12, 5)])  # chunks of 5, state carried across
    # embedded: 0, 4 (reused 4 s), 6 (changed), 10 (reused 4 s)
    assert same_as.tolist() == [-1, 0, 0, 0, -1, 4, -1, 6, 6, 6, -1, 10]


def test_noise_reuses_nothing():
    frames = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    same_as = StillFrames().feed(frames, np.arange(10.0), np.arange(10))
    assert (same_as == -1).all()


def test_still_config_is_validated():
    with pytest.raises(ConfigError, match="max_reuse_sec"):
        StillConfig(max_reuse_sec=0)


def _rows(vid: str, idx: list[int], emb: np.ndarray) -> dict[str, np.ndarray]:
    return {"video_id": np.array([vid] * len(idx), dtype=object), "frame_idx": np.array(idx, np.int64),
            "timestamp_sec": np.array(idx, np.float64) + 0.5, "embedding": emb[idx],
            "end_meta": np.array([""] * len(idx), dtype=object)}


def _end(vid: str, n: int, reused: list[list]) -> dict[str, np.ndarray]:
    meta = {"ok": True, "n_frames": n, "duration_sec": n, "width": 8, "height": 8, "content_hash": "x",
            "reused": reused}
    return {"video_id": np.array([vid], dtype=object), "frame_idx": np.array([-1], np.int64),
            "timestamp_sec": np.zeros(1), "embedding": np.zeros((1, 4), np.float32),
            "end_meta": np.array([json.dumps(meta)], dtype=object)}


@pytest.mark.parametrize("seed", range(5))
def test_assembler_fills_reused_frames_whatever_the_order_and_duplicates(seed):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(8, 4)).astype(np.float32)
    embedded = [0, 3, 4, 7]
    reused = [[1, 1.5, 0], [2, 2.5, 0], [5, 5.5, 4], [6, 6.5, 4]]
    batches = [_rows("v", [k], emb) for k in embedded] + [_rows("v", [3, 4], emb), _end("v", 8, reused),
                                                          _end("v", 8, reused)]  # a retried task's rows
    order = rng.permutation(len(batches))
    asm, done = VideoAssembler(), []
    for i in order:
        done += asm.add(batches[i])
    assert len(done) == 1 and not asm.flush_incomplete()
    v = done[0]
    assert np.allclose(v.timestamps_sec, np.arange(8) + 0.5)
    assert np.array_equal(v.embeddings, emb[[0, 0, 0, 3, 4, 4, 4, 7]])


def test_assembler_waits_for_every_embedded_frame():
    emb = np.eye(4, dtype=np.float32)
    asm = VideoAssembler()
    assert asm.add(_end("v", 4, [[1, 1.5, 0]])) == []
    assert asm.add(_rows("v", [0, 2], emb)) == []
    lost = asm.flush_incomplete()
    assert not lost[0].ok and "2 of 3 embedded frames" in lost[0].meta["error"]


def _decode(path, still: StillConfig | None) -> tuple[int, dict]:
    """(frame rows, end meta) of one video decoded at 1 fps, 64 x 64."""
    rows = list(decode_rows({"video_id": np.array(["v"], dtype=object), "path": np.array([str(path)], dtype=object)},
                            DecodeConfig(fps=1.0, size=64, chunk_frames=7), still=still))
    return sum(len(r["frame_idx"]) for r in rows[:-1]), json.loads(rows[-1]["end_meta"][0])


@pytest.mark.skipif(media.font_file() is None, reason="no TrueType font for drawtext")
def test_a_lecture_with_a_moving_inset_embeds_few_frames(tmp_path):
    lecture = media.make_lecture(tmp_path / "lecture.mp4", SLIDES, size=(640, 360))
    n_rows, meta = _decode(lecture, StillConfig())
    assert meta["ok"] and meta["n_frames"] == 110
    assert n_rows + len(meta["reused"]) == 110
    # the first 30 s (the inset's motion is not yet persistent), 2 slide changes, a re-embedding
    # at least every 30 s, a few as the inset's drift turns
    assert n_rows <= 45
    reused = {r[0]: r[2] for r in meta["reused"]}
    assert all(reused.get(k, k) < 40 for k in range(40)) and all(40 <= reused.get(k, k) < 75 for k in range(40, 75))
    n_all, meta_all = _decode(lecture, None)
    assert n_all == 110 and "reused" not in meta_all


def test_motion_reuses_nothing(tmp_path):
    n_rows, meta = _decode(media.make_testsrc(tmp_path / "t.mp4", 8), StillConfig())
    assert n_rows == meta["n_frames"] == 8 and meta["reused"] == []
