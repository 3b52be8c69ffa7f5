"""groundzero.synthetic: scene model invariants, the renderer's pixels, and a tiny archive end to end
(real ffmpeg: encode, decode, compare)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from groundzero.data.annotations import read_qvhighlights
from groundzero.errors import ConfigError
from groundzero.synthetic.archive import (
    SPLITS,
    SynthConfig,
    make_archive,
    queries_for,
    timeline_for,
    video_id,
)
from groundzero.synthetic.captions import frames_and_captions
from groundzero.synthetic.events import (
    Event,
    background_event,
    caption,
    conflicts,
    object_event,
    title_event,
)
from groundzero.synthetic.render import TEXT_RGB, object_geometry, render_frame
from groundzero.synthetic.scenes import sample_timeline
from groundzero.synthetic.vocabulary import BACKGROUNDS, COLOURS, OBJECT_KINDS

TINY = SynthConfig.tiny(seed=3)  # 2 videos per split, 1 minute, 96x72, 4 fps


def decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Every frame of ``path`` as (N, H, W, 3) uint8 RGB, decoded by the ffmpeg CLI."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout
    w, h = size
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def held_out_phrases(cfg: SynthConfig) -> list[str]:
    return [f"{colour} {shape}" for shape, colour in cfg.held_out_pairs]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, make_archive(out, TINY)


# ---------------------------------------------------------------- scene model


def test_captions_name_every_attribute():
    assert caption(object_event("circle", "red", "left")) == "a red circle moving left"
    assert caption(object_event("star", "orange", "still")) == "an orange star standing still"
    assert caption(object_event("square", "blue", "disappears")) == "a blue square disappears"
    assert caption(title_event("chain rule")) == "the title 'chain rule' appears on screen"
    assert caption(background_event("blue")) == "the background turns blue"


def test_conflicts_mean_one_caption_could_describe_both():
    red_left = object_event("circle", "red", "left")
    assert conflicts(red_left, object_event("circle", "red", "left", 50.0, 60.0))
    assert not conflicts(red_left, object_event("circle", "red", "right"))
    assert not conflicts(red_left, object_event("square", "red", "left"))
    assert conflicts(red_left, object_event("circle", "red", "appears"))  # it pops in, too
    assert conflicts(title_event("exhibit 12"), title_event("exhibit 12"))
    assert not conflicts(title_event("exhibit 12"), title_event("exhibit 14"))
    assert not conflicts(background_event("blue"), object_event("circle", "blue", "still"))


def test_event_rejects_unknown_vocabulary():
    with pytest.raises(ConfigError, match="shape"):
        object_event("hexagon", "red", "left")
    with pytest.raises(ConfigError, match="background colour"):
        background_event("red")


@pytest.mark.parametrize("duration", [60.0, 600.0, 3600.0])
def test_timelines_have_unique_answers_inside_the_video(duration):
    for seed in range(4):
        events = sample_timeline(np.random.default_rng(seed), duration)
        assert any(e.target for e in events)
        for i, a in enumerate(events):
            assert 0 <= a.start_sec < a.end_sec <= duration
            assert 8 <= a.end_sec - a.start_sec <= 30
            assert not any(conflicts(a, b) for b in events[i + 1 :]), caption(a)
        objects = [e for e in events if e.kind in OBJECT_KINDS]
        at_once = max(sum(o.active(t) for o in objects) for t in np.arange(0, duration, 1.0))
        assert at_once <= 2  # at most a pair shares the screen


def test_distractors_share_attributes_with_targets():
    events = sample_timeline(np.random.default_rng(1), 600.0)
    targets = [e for e in events if e.target and e.kind in OBJECT_KINDS]
    others = [e for e in events if not e.target and e.kind in OBJECT_KINDS]
    assert targets and others
    for d in others:
        shared = [
            sum((d.shape == t.shape, d.colour == t.colour, d.action == t.action)) for t in targets
        ]
        assert 1 <= max(shared) <= 2


def test_sample_timeline_is_seeded():
    a = sample_timeline(np.random.default_rng(7), 300.0)
    b = sample_timeline(np.random.default_rng(7), 300.0)
    assert a == b


# ---------------------------------------------------------------- renderer


def test_frame_at_midpoint_shows_each_object_in_its_colour():
    size = TINY.size
    events = timeline_for(TINY, "train", 0) + timeline_for(TINY, "test", 1)
    objects = [e for e in events if e.kind in OBJECT_KINDS]
    assert objects
    for e in objects:
        mid = (e.start_sec + e.end_sec) / 2
        frame = render_frame([e], mid, size)
        assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
        cx, cy, r = object_geometry(e, mid, size)
        assert r >= 1.5
        x, y = int(cx), int(cy)
        patch = frame[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
        assert (patch == COLOURS[str(e.colour)]).all(), caption(e)


def test_motion_moves_the_object_the_way_the_caption_says():
    size = (96, 72)
    for motion, axis, sign in [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)]:
        e = object_event("square", "green", motion, 10.0, 30.0)
        early, late = object_geometry(e, 12.0, size), object_geometry(e, 28.0, size)
        assert sign * (late[axis] - early[axis]) > 30, motion
    grow = object_event("circle", "red", "appears", 10.0, 30.0)
    assert object_geometry(grow, 12.0, size)[2] < object_geometry(grow, 28.0, size)[2]


def test_background_and_title_are_drawn():
    size = (96, 72)
    events = [background_event("teal", 0.0, 10.0), title_event("exhibit 12", 0.0, 10.0)]
    frame = render_frame(events, 5.0, size)
    assert tuple(frame[0, 0]) == BACKGROUNDS["teal"]
    white = (frame == TEXT_RGB).all(-1)
    assert white.sum() > 50 and white[:, : size[0] // 2].any() and white[:, size[0] // 2 :].any()
    assert tuple(render_frame([], 5.0, size)[0, 0]) != BACKGROUNDS["teal"]


# ---------------------------------------------------------------- archive


def test_annotations_read_back_with_windows_inside_the_video(archive):
    out, result = archive
    for split in SPLITS:
        queries = read_qvhighlights(out / f"{split}.jsonl")
        assert len(queries) == len(result[split].queries) > 0
        stems = {p.stem for p in result[split].videos}
        assert {q.vid for q in queries} <= stems and len(stems) == TINY.n_videos(split)
        for q in queries:
            assert q.duration_sec == 60.0
            for start, end in q.windows:
                assert 0 <= start < end <= q.duration_sec
    all_vids = [p.stem for r in result.values() for p in r.videos]
    assert len(set(all_vids)) == len(all_vids)  # one index may hold every split


def test_held_out_pairs_only_in_test(archive):
    out, result = archive
    held = set(TINY.held_out_pairs)
    for split in ("train", "val"):
        for events in result[split].timelines.values():
            assert not any((e.shape, e.colour) in held for e in events)
        text = (out / f"{split}.jsonl").read_text()
        assert not any(p in text for p in held_out_phrases(TINY))
    test_pairs = {(e.shape, e.colour) for evs in result["test"].timelines.values() for e in evs}
    assert test_pairs & held
    test_text = (out / "test.jsonl").read_text()
    assert any(p in test_text for p in held_out_phrases(TINY))


def test_not_found_queries_describe_nothing_in_their_video(archive):
    _, result = archive
    n_not_found = 0
    for split in SPLITS:
        for q in result[split].queries:
            events = result[split].timelines[q.vid]
            if q.windows:
                (match,) = [e for e in events if caption(e) == q.query]
                assert q.windows == ((match.start_sec, match.end_sec),)
                continue
            n_not_found += 1
            assert q.query not in {caption(e) for e in events}
            assert not any(conflicts(q.event, e) for e in events)
    assert n_not_found >= 3


def test_corpus_windows_list_every_moment_of_the_split_the_caption_describes(archive):
    out, result = archive
    n_elsewhere = n_nowhere = 0
    for split in SPLITS:
        timelines = result[split].timelines
        read = {q.qid: q for q in read_qvhighlights(out / f"{split}.jsonl")}
        for q in result[split].queries:
            want = {(vid, e.start_sec, e.end_sec) for vid, evs in timelines.items() for e in evs
                    if conflicts(q.event, e)}
            assert set(q.corpus_windows) == want and len(q.corpus_windows) == len(want)
            assert read[q.qid].corpus_windows == q.corpus_windows  # written and read back
            own = {(s, e) for vid, s, e in q.corpus_windows if vid == q.vid}
            assert own == set(q.windows)  # nothing else in its own video
    # at archive size the split-wide truth matters: captions recur across videos, and some
    # queries have no answer anywhere (timelines and queries only: nothing is rendered)
    cfg = SynthConfig(n_train_videos=0, n_val_videos=0, n_test_videos=8, queries_per_video=12, seed=1)
    timelines = {video_id(cfg, "test", i): timeline_for(cfg, "test", i) for i in range(8)}
    queries = [q for i, evs in enumerate(timelines.values()) for q in queries_for(cfg, "test", i, evs, timelines)]
    for q in queries:
        n_elsewhere += any(vid != q.vid for vid, _, _ in q.corpus_windows)
        n_nowhere += not q.corpus_windows
    assert n_elsewhere > len(queries) // 4 and n_nowhere >= 8


def test_not_found_queries_avoid_the_whole_split_when_they_can():
    from groundzero.synthetic.queries import not_found_description

    rng = np.random.default_rng(0)
    video = [object_event("circle", "red", "left", 0.0, 10.0)]
    others = [object_event("circle", "red", "right", 20.0, 30.0), object_event("square", "red", "left", 40.0, 50.0)]
    pairs = [("circle", "red"), ("square", "red"), ("circle", "blue")]
    for _ in range(20):
        cand = not_found_description(rng, video, pairs, absent_from=others)
        assert not any(conflicts(cand, e) for e in video + others)


def test_annotations_without_corpus_windows_fall_back_to_their_own_video(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"qid": 1, "query": "x", "vid": "v", "relevant_windows": [[1, 2]]}\n'
                 '{"qid": 2, "query": "y", "vid": "v", "relevant_windows": [], "corpus_windows": [["w", 3, 4]]}\n')
    a, b = read_qvhighlights(p)
    assert a.corpus_windows is None and a.corpus_truth() == (("v", 1.0, 2.0),)
    assert b.corpus_truth() == (("w", 3.0, 4.0),)
    p.write_text('{"qid": 3, "query": "z", "vid": "v", "corpus_windows": [[3, 4]]}\n')
    with pytest.raises(ConfigError, match="corpus_windows"):
        read_qvhighlights(p)


def test_same_seed_same_archive(archive, tmp_path):
    out, _ = archive
    again = tmp_path / "again"
    result = make_archive(again, TINY)
    for split in SPLITS:
        assert (again / f"{split}.jsonl").read_bytes() == (out / f"{split}.jsonl").read_bytes()
    first = result["val"].videos[0]
    a = decode(out / "val" / first.name, TINY.size)[:8]
    b = decode(first, TINY.size)[:8]
    assert np.array_equal(a, b)
    assert timeline_for(SynthConfig.tiny(seed=4), "val", 0) != timeline_for(TINY, "val", 0)


def test_decoded_video_has_its_duration_and_shows_the_target(archive):
    _, result = archive
    path = result["test"].videos[0]
    frames = decode(path, TINY.size)
    assert len(frames) == 60 * TINY.fps
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    )
    assert float(probe.stdout) == pytest.approx(60.0, abs=0.3)
    events = result["test"].timelines[path.stem]
    for e in (e for e in events if e.kind in OBJECT_KINDS):
        i = round((e.start_sec + e.end_sec) / 2 * TINY.fps)
        cx, cy, _ = object_geometry(e, i / TINY.fps, TINY.size)
        patch = frames[i, int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2].reshape(-1, 3)
        assert np.abs(patch.mean(0) - COLOURS[str(e.colour)]).max() < 40, caption(e)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="size"):
        SynthConfig(size=(97, 72))
    with pytest.raises(ConfigError, match="held_out_pairs"):
        SynthConfig(held_out_pairs=(("hexagon", "red"),))
    with pytest.raises(ConfigError, match="split"):
        SynthConfig().n_videos("dev")


# ---------------------------------------------------------------- single frames


def test_frames_and_captions_are_seeded_and_avoid_held_out_pairs():
    got = frames_and_captions(TINY, 24, seed=5, image_size=32)
    assert got.images.shape == (24, 32, 32, 3) and got.images.dtype == np.uint8
    assert len(got.captions) == 24 and all(isinstance(c, str) and c for c in got.captions)
    assert np.array_equal(got.items, np.repeat(np.arange(24)[:, None], 2, axis=1))  # single frames
    again = frames_and_captions(TINY, 24, seed=5, image_size=32)
    assert np.array_equal(got.images, again.images) and got.captions == again.captions
    many = frames_and_captions(TINY, 300, seed=6, image_size=32).captions
    assert not any(p in c for c in many for p in held_out_phrases(TINY))


def test_frames_and_captions_through_the_codec_are_what_indexing_decodes():
    """decode=: frames rendered at cfg.size, H.264-coded and decoded by the indexer's decoder."""
    from groundzero.indexer.decode import DecodeConfig, decode_frames

    seen: list[int] = []

    def decode(clip: Path) -> np.ndarray:
        frames = decode_frames(clip, DecodeConfig(fps=1.0, size=32))
        seen.append(len(frames))
        return frames

    coded_set = frames_and_captions(TINY, 10, seed=5, image_size=32, decode=decode, chunk=4)
    direct_set = frames_and_captions(TINY, 10, seed=5, image_size=32)
    coded, direct = coded_set.images, direct_set.images
    assert coded_set.captions == direct_set.captions and seen == [4, 4, 2]  # same draws; chunks of 4, then the rest
    assert coded.shape == direct.shape == (10, 32, 32, 3) and coded.dtype == np.uint8
    # the same scene, but squashed from 96x72 and coded: close, not equal
    diff = np.abs(coded.astype(int) - direct.astype(int))
    assert 0 < diff.mean() < 40
    # each coded frame is nearest to its own rendered frame, not a neighbour's (order kept)
    dist = np.abs(coded[:, None].astype(int) - direct[None].astype(int)).mean(axis=(2, 3, 4))
    assert (dist.argmin(axis=1) == np.arange(10)).mean() >= 0.8


def test_frames_and_captions_rejects_a_decoder_that_returns_the_wrong_frames():
    from groundzero.errors import GroundZeroError

    with pytest.raises(GroundZeroError, match="decode gave"):
        frames_and_captions(TINY, 3, seed=5, image_size=32, decode=lambda clip: np.zeros((2, 32, 32, 3), np.uint8))


def test_contrast_pairs_show_the_same_shape_elsewhere_or_at_the_other_size():
    got = frames_and_captions(TINY, 300, seed=4, image_size=32, state_fraction=1.0, contrast_fraction=1.0)
    images, captions, groups = got.images[got.items[:, 0]], got.captions, got.groups
    assert groups.shape == (300,) and np.all(np.diff(groups) >= 0)
    _, counts = np.unique(groups, return_counts=True)
    assert counts.max() == 2 and (counts == 2).sum() >= 50
    for i in np.flatnonzero(np.r_[False, groups[1:] == groups[:-1]]):
        a, b = captions[i - 1], captions[i]
        assert a != b and not np.array_equal(images[i - 1], images[i])
        words = lambda c: [w for w in c.split() if w in COLOURS or w in ("circle", "square", "triangle", "star")]
        assert words(a) == words(b)  # the same shape and colour, another place or size
    # contrast_fraction=0 draws exactly what it drew before contrast pairs existed (the shipped
    # backbone's frames): the digest of these 400 captions under the code of commit 8f9ef25
    import hashlib

    plain_set = frames_and_captions(TINY, 400, seed=4, image_size=32)
    plain, ids = plain_set.captions, plain_set.groups
    assert np.array_equal(ids, np.arange(400))
    assert hashlib.sha256("\n".join(plain).encode()).hexdigest() == (
        "a5304439ffd88e23e5a89b1cd57b9b756d80dfd1c45903764b3d2367e35bedc0")
    with pytest.raises(ConfigError, match="contrast_fraction"):
        frames_and_captions(TINY, 5, seed=4, contrast_fraction=1.5)


def test_clips_show_the_event_from_its_first_to_its_last_third_and_reversed_clips_swap_them():
    """clip_fraction: sentence captions over two frames; reverse_fraction: the same two frames swapped."""
    from groundzero.synthetic.events import object_event, reversed_event

    got = frames_and_captions(TINY, 400, seed=4, image_size=32, state_fraction=0.0, clip_fraction=1.0,
                              reverse_fraction=1.0)
    assert len(got.captions) == len(got.items) == len(got.groups) == 400
    assert got.items.min() >= 0 and got.items.max() == len(got.images) - 1  # every frame is used
    assert np.all(got.items[:, 0] != got.items[:, 1])  # every item is a clip
    assert np.all(np.diff(got.groups) >= 0)
    # a pair in one group: the same two frames the other way round, with the reversed sentence
    pairs = np.flatnonzero(np.r_[False, got.groups[1:] == got.groups[:-1]])
    assert len(pairs) >= 100
    flips = {"left": "right", "right": "left", "up": "down", "down": "up",
             "appears": "disappears", "disappears": "appears"}
    for i in pairs:
        assert np.array_equal(got.items[i], got.items[i - 1][::-1])
        fwd, back = got.captions[i - 1].split(), got.captions[i].split()
        assert len(fwd) == len(back) and fwd[:3] == back[:3]  # same article, colour, shape
        assert [flips.get(w, w) for w in fwd] == back
    # frames are rendered once per clip: N = number of forward clips, twice
    assert len(got.images) == 2 * (400 - len(pairs))
    # a reversed clip's frames differ (it moved or grew); still shapes and titles are never reversed
    assert all(not np.array_equal(got.images[got.items[i, 0]], got.images[got.items[i, 1]]) for i in pairs)
    assert not any("still" in got.captions[i] or "title" in got.captions[i] for i in pairs)
    assert reversed_event(object_event("star", "green", "still")) is None
    # clip_fraction 0.5: half the sentence captions (state_fraction 0.5: a quarter of the items) are clips
    half = frames_and_captions(TINY, 400, seed=4, image_size=32, clip_fraction=0.5)
    assert 50 < (half.items[:, 0] != half.items[:, 1]).sum() < 150
    with pytest.raises(ConfigError, match="clip_fraction"):
        frames_and_captions(TINY, 5, seed=4, clip_fraction=-0.1)


def test_events_are_frozen():
    e = Event(0.0, 10.0, "circle", "red", "left")
    with pytest.raises(AttributeError):
        e.start_sec = 3.0  # type: ignore[misc]


def test_synth_cli_then_index_and_eval(tmp_path, tiny_model_dir, ray_session):
    """`groundzero synth` -> `groundzero index` -> `groundzero eval --index` runs end to end."""
    import json as _json

    from typer.testing import CliRunner

    from groundzero.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["synth", str(tmp_path / "arc"), "--train-videos", "1", "--val-videos", "1",
                            "--test-videos", "1", "--minutes", "1", "--json"])
    assert r.exit_code == 0, r.output
    splits = {d["split"]: d for d in _json.loads(r.stdout)}
    assert set(splits) == {"train", "val", "test"}
    r = runner.invoke(app, ["index", str(tmp_path / "arc" / "val"), "--index", str(tmp_path / "idx"),
                            "--model", str(tiny_model_dir), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "--index", str(tmp_path / "idx"), "--gt", splits["val"]["annotations"],
                            "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "within-R1@0.5" in _json.loads(r.stdout)


def test_frame_captions_follow_what_the_frame_shows():
    from groundzero.synthetic.events import frame_caption, object_event
    from groundzero.synthetic.render import object_geometry

    left = object_event("circle", "red", "left", 0.0, 30.0)
    seen = [frame_caption(left, t) for t in (1.0, 15.0, 29.0)]
    assert seen == ["a red circle on the right", "a red circle in the middle", "a red circle on the left"]
    xs = [object_geometry(left, t, (160, 120))[0] for t in (1.0, 15.0, 29.0)]
    assert xs[0] > 160 * 2 / 3 and 160 / 3 < xs[1] < 160 * 2 / 3 and xs[2] < 160 / 3
    down = object_event("star", "green", "down", 0.0, 30.0)
    assert [frame_caption(down, t) for t in (1.0, 29.0)] == ["a green star at the top", "a green star at the bottom"]
    grow = object_event("square", "orange", "appears", 0.0, 10.0)
    assert [frame_caption(grow, t) for t in (1.0, 9.0)] == ["a small orange square", "an orange square"]
    shrink = object_event("square", "orange", "disappears", 0.0, 10.0)
    assert [frame_caption(shrink, t) for t in (1.0, 9.0)] == ["an orange square", "a small orange square"]
    captions = frames_and_captions(TINY, 200, seed=3, image_size=32).captions
    assert any(" on the " in c or " at the " in c for c in captions)
    assert any("moving" in c for c in captions)
