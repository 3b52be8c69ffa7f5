"""Reciprocal rank fusion of channels (search.fusion): ranks, moments, spans, evidence."""

from __future__ import annotations

from dataclasses import replace

from groundzero.search.fusion import RRF_K, fuse, with_frames_evidence
from groundzero.search.results import Evidence, Hit
from groundzero.search.text_channel import marked, split_marks


def _hit(vid: str, a: float, b: float, score: float = 1.0, p: float = 0.9) -> Hit:
    return Hit(video_id=vid, uri=f"/x/{vid}.mp4", rel_path=f"{vid}.mp4", start_sec=a, end_sec=b, score=score,
               found_prob=p)


def _text(vid: str, a: float, b: float, channel: str = "speech", words: str = "exhibit 12") -> Hit:
    ev = Evidence(channel, "caption" if channel == "speech" else "ocr", a, b, 3.0, text=f"I hand you {words}",
                  coverage=0.5)
    return Hit(video_id=vid, uri=f"/x/{vid}.mp4", rel_path=f"{vid}.mp4", start_sec=a, end_sec=b, score=3.0,
               found_prob=0.5, channels=(channel,), evidence=(ev,))


def test_one_channel_keeps_its_order():
    frames = with_frames_evidence([_hit("a", 0, 5), _hit("b", 10, 20), _hit("c", 3, 4)])
    fused = fuse({"frames": frames}, top_k=3)
    assert [h.video_id for h in fused] == ["a", "b", "c"]
    assert fused[0].score == 1 / (RRF_K + 1)
    assert fused[0].evidence[0].text == "seen" and fused[0].channels == ("frames",)


def test_agreement_outranks_a_single_channel_and_snaps_to_the_utterance():
    frames = with_frames_evidence([_hit("a", 0, 5), _hit("b", 10, 20)])
    speech = [_text("c", 40, 44), _text("b", 12.5, 16.0)]
    fused = fuse({"frames": frames, "speech": speech}, top_k=5)
    top = fused[0]
    assert (top.video_id, top.start_sec, top.end_sec) == ("b", 12.5, 16.0)  # the utterance's own span
    assert top.channels == ("speech", "frames") or top.channels == ("frames", "speech")
    assert {e.channel for e in top.evidence} == {"frames", "speech"}
    assert top.found_prob == 0.9  # the best of its channels: fusion re-orders, never invents
    assert [h.video_id for h in fused[1:]] == ["a", "c"]  # rank 1 of frames ties rank 1 of speech: frames first


def test_hits_of_one_channel_never_merge_and_other_videos_never_join():
    speech = [_text("a", 0, 4), _text("a", 3, 6)]
    frames = with_frames_evidence([_hit("z", 0, 6)])
    fused = fuse({"speech": speech, "frames": frames}, top_k=10)
    assert sorted((h.video_id, h.start_sec) for h in fused) == [("a", 0), ("a", 3), ("z", 0)]
    assert all(len(h.channels) == 1 for h in fused)


def test_weights_and_top_k():
    frames = with_frames_evidence([_hit("a", 0, 5)])
    text = [_text("b", 0, 5, channel="text")]
    assert fuse({"frames": frames, "text": text}, 1, weights={"text": 2.0})[0].video_id == "b"
    assert fuse({"frames": frames, "text": text}, 1, weights={"frames": 2.0})[0].video_id == "a"
    assert fuse({}, 5) == []


def test_marked_snippet():
    assert marked("I hand you exhibit 12", ((11, 18), (19, 21))) == "I hand you [exhibit] [12]"
    assert split_marks("a \x02b\x03 c") == ("a b c", ((2, 3),))
    assert marked("no match", ()) == "no match"


def test_a_sure_channel_outranks_two_guesses():
    """Speech found the moment (coverage 1.0); frames and on-screen text merely guess, and agree
    on another moment: with guesses counting 0.1, the sure answer comes first."""
    sure = [_text("a", 10, 12)]
    sure[0] = replace(sure[0], found_prob=1.0)
    frames = with_frames_evidence([_hit("b", 0, 5, p=0.01)])
    text = [replace(_text("b", 1, 4, channel="text"), found_prob=0.25)]
    ranked = {"speech": sure, "text": text, "frames": frames}
    thresholds = {"frames": 0.3, "speech": 0.5, "text": 0.5}
    assert fuse(ranked, 2)[0].video_id == "b"  # plain RRF: two channels outvote one
    top = fuse(ranked, 2, sure=thresholds, unsure_weight=0.1)[0]
    assert (top.video_id, top.start_sec, top.end_sec) == ("a", 10, 12)


def test_a_moment_said_while_a_slide_shows_it_spans_both():
    speech = [_text("a", 12, 14)]
    slide = [_text("a", 10, 20, channel="text")]
    top = fuse({"speech": speech, "text": slide}, 1)[0]
    assert (top.start_sec, top.end_sec) == (10, 20) and set(top.channels) == {"speech", "text"}
