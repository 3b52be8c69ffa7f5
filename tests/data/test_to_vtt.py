"""groundzero.data.subtitles.to_vtt: what it writes parses back (parse_vtt) to the same cues."""

from __future__ import annotations

import pytest

from groundzero.data.segments import TextSegment
from groundzero.data.subtitles import format_vtt_time, parse_srt, parse_vtt, to_vtt


def _cues(segments: list[TextSegment]) -> list[tuple[float, float, str, str]]:
    return [(s.start_sec, s.end_sec, s.text, s.speaker) for s in segments]


def test_round_trip_times_text_and_speakers():
    segs = [
        TextSegment(5.0, 8.0, "That is the contract I signed in Boston.", "asr", confidence=0.8, speaker="A"),
        TextSegment(1.0, 3.5, "Please look at exhibit 12.", "caption", speaker="Q"),
        TextSegment(3723.046, 3725.5, "No speaker here", "caption"),
        TextSegment(10.0, 11.0, "Roger Bingham speaks", "caption", speaker="Roger Bingham"),
    ]
    back = parse_vtt(to_vtt(segs), "written.vtt")
    assert _cues(back) == sorted(_cues(segs))
    assert all(s.source == "caption" for s in back)


@pytest.mark.parametrize("text", [
    "x --> y", "a<b and c>d", "Tom & Jerry &amp; friends", "<v Evil>not a voice</v>", "&lt; stays literal",
    "<i>not italic</i>", "arrows --> --> ->", "NOTE inside a cue", "12:00:00.000 --> 12:00:01.000",
])
def test_markup_and_arrows_in_text_are_escaped(text):
    vtt = to_vtt([TextSegment(1.0, 2.0, text, "caption", speaker="M&M <boss>")])
    body = vtt.split("\n")[4:]  # after "WEBVTT", "", the cue number and its timing
    assert all("-->" not in line for line in body), vtt
    [back] = parse_vtt(vtt)
    assert (back.start_sec, back.end_sec, back.text, back.speaker) == (1.0, 2.0, text, "M&M <boss>")


def test_line_breaks_stay_inside_the_cue():
    vtt = to_vtt([TextSegment(0.0, 2.0, "EXIT\n\n  ROUTE 9 \r\nnorth", "ocr"),
                  TextSegment(2.0, 3.0, "next", "caption")])
    assert [s.text for s in parse_vtt(vtt)] == ["EXIT ROUTE 9 north", "next"]
    assert "\n\n\n" not in vtt


def test_empty_is_a_valid_file():
    assert to_vtt([]) == "WEBVTT\n"
    assert parse_vtt(to_vtt([])) == []
    assert to_vtt([TextSegment(0.0, 1.0, "  \n ", "caption")]) == "WEBVTT\n"  # blank text: no cue
    assert parse_vtt("WEBVTT\n\nNOTE written by hand\n") == []
    with pytest.raises(Exception, match="not a single cue"):
        parse_vtt("WEBVTT\n\nstray words, no cue\n")


def test_zero_length_segment_gets_one_millisecond():
    [back] = parse_vtt(to_vtt([TextSegment(4.0, 4.0, "blip", "ocr")]))
    assert (back.start_sec, back.end_sec) == (4.0, 4.001)


def test_times():
    assert format_vtt_time(0.0004) == "00:00:00.000" and format_vtt_time(59.9996) == "00:01:00.000"
    assert format_vtt_time(100 * 3600 + 1.5) == "100:00:01.500"


def test_same_cues_as_the_srt_they_came_from():
    srt = ("1\n00:00:01,000 --> 00:00:03,500\nQ: Please look at exhibit 12.\n\n"
           "2\n00:00:05,000 --> 00:00:08,000\n<i>A:</i> That is the contract I signed in Boston.\n")
    segs = parse_srt(srt)
    assert _cues(parse_vtt(to_vtt(segs))) == _cues(segs)
    assert [s.speaker for s in segs] == ["Q", "A"]
