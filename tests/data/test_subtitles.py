"""SRT and WebVTT parsing: the shapes real files come in, and the malformed ones refused with the
file and the line."""

from __future__ import annotations

import codecs

import pytest

from groundzero.data.subtitles import parse_srt, parse_subtitles, parse_vtt, read_subtitles
from groundzero.errors import GroundZeroError, SubtitleError


def _texts(segs):
    return [(s.start_sec, s.end_sec, s.text, s.speaker) for s in segs]


def test_srt_with_bom_crlf_multiline_and_tags():
    srt = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\n<b>general</b>!\r\n\r\n"
           "2\r\n00:00:03,250 --> 00:00:04,000\r\n<font color=\"#ff0000\">Red</font> &amp; blue\r\n\r\n")
    segs = parse_srt(srt, "a.srt")
    assert _texts(segs) == [(1.0, 2.5, "Hello there, general!", ""), (3.25, 4.0, "Red & blue", "")]
    assert all(s.source == "caption" and s.confidence == 1.0 and s.words == () for s in segs)


def test_srt_dot_millis_no_hours_coordinates_and_ass_overrides():
    srt = ("1\n00:01:02.5 --> 00:01:03.750  X1:100 X2:200 Y1:1 Y2:2\n{\\an8}Top line\n\n"
           "2\n1:02:03,004 --> 1:02:04,000\nlate\n\n3\n00:05,000 --> 00:06,000\nno hours\n")
    assert _texts(parse_srt(srt)) == [(5.0, 6.0, "no hours", ""), (62.5, 63.75, "Top line", ""),
                                      (3723.004, 3724.0, "late", "")]


def test_srt_without_blank_lines_between_cues():
    srt = "1\n00:00:01,000 --> 00:00:02,000\nfirst\n2\n00:00:02,000 --> 00:00:03,000\nsecond\n"
    assert [s.text for s in parse_srt(srt)] == ["first", "second"]


def test_cues_sorted_and_empty_ones_dropped():
    srt = ("1\n00:00:05,000 --> 00:00:06,000\nlater\n\n2\n00:00:01,000 --> 00:00:02,000\n<i> </i>\n\n"
           "3\n00:00:02,000 --> 00:00:02,000\n\n4\n00:00:03,000 --> 00:00:04,000\nearlier\n")
    assert [s.text for s in parse_srt(srt)] == ["earlier", "later"]


@pytest.mark.parametrize("line,text,speaker", [
    ("JOHN: We leave at dawn.", "We leave at dawn.", "JOHN"),
    ("MR. SMITH: Objection.", "Objection.", "MR. SMITH"),
    ("DR. JANE DOE: Yes.", "Yes.", "DR. JANE DOE"),
    ("Q: Where were you on the night of May 4th?", "Where were you on the night of May 4th?", "Q"),
    ("A: At home.", "At home.", "A"),
    (">> ANCHOR: Good evening.", "Good evening.", "ANCHOR"),
    ("Note: this is speech", "Note: this is speech", ""),  # mixed case: part of what is said
    ("ONE TWO THREE FOUR: too long", "ONE TWO THREE FOUR: too long", ""),
    ("At 10:30: we met", "At 10:30: we met", ""),
])
def test_speaker_prefixes(line, text, speaker):
    seg, = parse_srt(f"1\n00:00:00,000 --> 00:00:01,000\n{line}\n")
    assert (seg.text, seg.speaker) == (text, speaker)


def test_vtt_header_blocks_voices_and_settings():
    vtt = ("WEBVTT - An interview\nKind: captions\nLanguage: en\n\n"
           "NOTE a comment\nspanning lines --> not a cue\n\n"
           "STYLE\n::cue { color: yellow }\n\n"
           "REGION\nid:fred width:40%\n\n"
           "intro\n00:01.000 --> 00:02.500 align:start position:10%\n"
           "<v.loud Roger Bingham>We are in New York City</v>\n\n"
           "01:00:00.000 --> 01:00:01.000\n<c.yellow>Karaoke</c> <01:00:00.500><c>words</c>\n\n"
           "3\n00:00:03.000 --> 00:00:04.000\n<v Esme>Q: not a second speaker</v>\n")
    assert _texts(parse_vtt(vtt, "x.vtt")) == [
        (1.0, 2.5, "We are in New York City", "Roger Bingham"),
        (3.0, 4.0, "Q: not a second speaker", "Esme"),
        (3600.0, 3601.0, "Karaoke words", "")]


def test_format_detected_by_header():
    assert parse_subtitles("\ufeffWEBVTT\n\n00:01.000 --> 00:02.000\nhi\n")[0].text == "hi"
    assert parse_subtitles("1\n00:00:01,000 --> 00:00:02,000\nhi\n")[0].start_sec == 1.0


def test_empty_file_has_no_cues(tmp_path):
    (tmp_path / "e.srt").write_bytes(b"")
    (tmp_path / "w.srt").write_bytes(b"\xef\xbb\xbf \r\n\r\n")
    assert read_subtitles(tmp_path / "e.srt") == [] and read_subtitles(tmp_path / "w.srt") == []


def test_utf16_with_bom(tmp_path):
    p = tmp_path / "u16.srt"
    p.write_bytes(codecs.BOM_UTF16_LE + "1\n00:00:01,000 --> 00:00:02,000\nÇa va\n".encode("utf-16-le"))
    assert read_subtitles(p)[0].text == "Ça va"


def _error(tmp_path, name: str, data: bytes) -> SubtitleError:
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(SubtitleError) as e:
        read_subtitles(p)
    assert isinstance(e.value, GroundZeroError) and e.value.path == str(p)
    assert str(e.value).startswith(str(p))
    return e.value


def test_bad_timestamp_names_file_and_line(tmp_path):
    e = _error(tmp_path, "bad.srt", b"1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:xx,000 --> 00:00:03,000\nno\n")
    assert (e.reason, e.line) == ("bad_timestamp", 6)
    assert " line 6: cannot read the cue timing '00:00:xx,000 --> 00:00:03,000'" in str(e)


def test_out_of_range_seconds(tmp_path):
    e = _error(tmp_path, "s.vtt", b"WEBVTT\n\n00:00:61.000 --> 00:01:02.000\nx\n")
    assert (e.reason, e.line) == ("bad_timestamp", 3) and "60 or more" in str(e)


def test_end_before_start(tmp_path):
    e = _error(tmp_path, "back.srt", b"1\n00:00:05,000 --> 00:00:04,000\nx\n")
    assert (e.reason, e.line) == ("end_before_start", 2)
    assert "ends (00:00:04,000) before it starts (00:00:05,000)" in str(e)


def test_text_without_cues(tmp_path):
    e = _error(tmp_path, "notes.srt", b"just some notes\nthat are not subtitles\n")
    assert e.reason == "no_cues" and e.line is None and "not a single cue" in str(e)


def test_vtt_without_header(tmp_path):
    with pytest.raises(SubtitleError) as e:
        parse_vtt("00:01.000 --> 00:02.000\nhi\n", "h.vtt")
    assert (e.value.reason, e.value.line) == ("no_cues", 1) and "WEBVTT" in str(e.value)


def test_undecodable_bytes_name_the_line(tmp_path):
    e = _error(tmp_path, "latin1.srt", "1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9\n".encode("latin-1"))
    assert (e.reason, e.line) == ("undecodable", 3)
    assert "0xe9 is not UTF-8" in str(e) and "iconv" in str(e)
