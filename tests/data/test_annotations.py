"""Dataset readers: real QVHighlights / Charades-STA files, small Ego4D-NLQ / MAD files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from groundzero.data.annotations import (
    MomentQuery,
    read_annotations,
    read_charades_sta,
    read_qvhighlights,
    sniff_format,
)
from groundzero.data.long_video_annotations import read_ego4d_nlq, read_mad
from groundzero.errors import ConfigError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
QVH = DATA / "qvhighlights"
CHARADES = DATA / "charades_sta"

needs_qvh = pytest.mark.skipif(
    not (QVH / "highlight_val_release.jsonl").exists(),
    reason=f"QVHighlights files not found under {QVH}",
)
needs_charades = pytest.mark.skipif(
    not (CHARADES / "charades.json").exists(),
    reason=f"Charades-STA files not found under {CHARADES}",
)


# --------------------------------------------------------------------------- QVHighlights


@needs_qvh
@pytest.mark.parametrize(("split", "count"), [("train", 7218), ("val", 1550), ("test", 1542)])
def test_qvhighlights_real_counts(split, count):
    rows = read_qvhighlights(QVH / f"highlight_{split}_release.jsonl")
    assert len(rows) == count
    assert len({r.qid for r in rows}) == count
    assert all(
        isinstance(r.qid, str) and r.query and 120.0 <= r.duration_sec <= 150.0 for r in rows
    )
    if split == "test":
        assert all(r.windows == () for r in rows)
    else:
        assert all(
            r.windows and all(0 <= s < e <= r.duration_sec for s, e in r.windows) for r in rows
        )


@needs_qvh
def test_qvhighlights_first_val_record():
    first = read_qvhighlights(QVH / "highlight_val_release.jsonl")[0]
    assert first.qid == "2579" and first.vid == "NUsG9BgSes0_210.0_360.0"
    assert first.query.startswith("A girl and her mother cooked")
    assert isinstance(first, MomentQuery) and first.windows[0] == (82.0, 150.0)


def test_qvhighlights_small_file(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"qid": 1, "query": "a", "vid": "v", "duration": 150, '
        '"relevant_windows": [[0, 2], [4, 6]]}\n'
        "\n"
        '{"qid": 2, "query": "b", "vid": "w"}\n'
    )
    a, b = read_qvhighlights(path)
    assert a == MomentQuery("1", "a", "v", 150.0, ((0.0, 2.0), (4.0, 6.0)))
    assert b.windows == () and math.isnan(b.duration_sec)


# --------------------------------------------------------------------------- Charades-STA


@needs_charades
@pytest.mark.parametrize(
    ("split", "count", "clipped"), [("train", 12408, 1802), ("test", 3720, 562)]
)
def test_charades_real_counts_and_clipping(split, count, clipped):
    path = CHARADES / f"charades_sta_{split}.txt"
    raw = read_charades_sta(path)
    rows = read_charades_sta(path, CHARADES / "charades.json")
    assert len(rows) == len(raw) == count
    assert all(math.isnan(r.duration_sec) for r in raw)
    assert all(r.windows[0][1] <= r.duration_sec for r in rows)
    assert sum(r.windows != q.windows for r, q in zip(rows, raw, strict=True)) == clipped
    assert len({r.qid for r in rows}) == count


@needs_charades
def test_charades_first_line():
    first = read_charades_sta(CHARADES / "charades_sta_train.txt", CHARADES / "charades.json")[0]
    assert first.qid == "AO8RW_1" and first.vid == "AO8RW"
    assert first.query == "a person is putting a book on a shelf."
    assert first.windows == ((0.0, 6.9),) and first.duration_sec > 6.9


def test_charades_small_file_clips_end_and_keeps_hashes_in_sentence(tmp_path):
    (tmp_path / "d.json").write_text(
        json.dumps({"AAAAA": {"subset": "testing", "duration": 10.0, "actions": []}})
    )
    path = tmp_path / "c.txt"
    path.write_text("AAAAA 1.5 12.0##person opens a door.\nBBBBB 0 3##a ## b\n")
    a, b = read_charades_sta(path, tmp_path / "d.json")
    assert a == MomentQuery("AAAAA_1", "person opens a door.", "AAAAA", 10.0, ((1.5, 10.0),))
    assert (
        b.qid == "BBBBB_2"
        and b.query == "a ## b"
        and math.isnan(b.duration_sec)
        and b.windows == ((0.0, 3.0),)
    )


# --------------------------------------------------------------------------- Ego4D-NLQ


def _ego4d_doc() -> dict:
    def q(text, s, e):
        return {
            "query": text,
            "clip_start_sec": s,
            "clip_end_sec": e,
            "video_start_sec": s + 10,
            "video_end_sec": e + 10,
            "template": "Objects: Where is X?",
        }

    clip = {
        "clip_uid": "c1",
        "video_start_sec": 10.0,
        "video_end_sec": 490.0,
        "clip_start_sec": 10.0,
        "clip_end_sec": 490.0,
        "annotations": [
            {
                "annotation_uid": "a1",
                "language_queries": [
                    q("where did I put the keys?", 3.5, 7.0),
                    {
                        "clip_start_sec": 1.0,
                        "clip_end_sec": 2.0,
                        "template": None,
                    },  # no text: skipped
                    q("   ", 1.0, 2.0),  # blank: skipped
                    q("what did I cut?", 20.0, 20.0),  # zero-length window kept
                ],
            },
            {"annotation_uid": "a2", "language_queries": [q("who did I talk to?", 100.0, 130.0)]},
        ],
    }
    return {
        "version": "1",
        "videos": [
            {"video_uid": "v1", "split": "val", "clips": [clip]},
            {"video_uid": "v2", "split": "val", "clips": []},
        ],
    }


def test_ego4d_reader_layout_and_skips(tmp_path):
    path = tmp_path / "nlq_val.json"
    path.write_text(json.dumps(_ego4d_doc()))
    rows = read_ego4d_nlq(path)
    assert [r.qid for r in rows] == ["a1_0", "a1_3", "a2_0"]
    assert rows[0] == MomentQuery("a1_0", "where did I put the keys?", "c1", 480.0, ((3.5, 7.0),))
    assert rows[1].windows == ((20.0, 20.0),)
    assert read_annotations(path) == rows and sniff_format(path) == "ego4d"


def test_ego4d_missing_field_names_file_and_json_path(tmp_path):
    doc = _ego4d_doc()
    del doc["videos"][0]["clips"][0]["annotations"][1]["annotation_uid"]
    path = tmp_path / "nlq_val.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(
        ConfigError,
        match=r"nlq_val\.json: videos\[0\]\.clips\[0\]\.annotations\[1\].*annotation_uid",
    ):
        read_ego4d_nlq(path)


# --------------------------------------------------------------------------- MAD


def _mad_doc() -> dict:
    return {
        "7": {
            "movie": "3001_21_JUMP_STREET",
            "sentence": "He runs.",
            "ext_timestamps": [12.1, 15.3],
            "timestamps": [12.0, 15.0],
            "movie_duration": 6130.0,
        },
        "8": {
            "movie": "3002_30_MINUTES_OR_LESS",
            "sentence": " She sits. ",
            "ext_timestamps": [0, 2.5],
            "movie_duration": 4800,
        },
    }


def test_mad_reader(tmp_path):
    path = tmp_path / "MAD_val.json"
    path.write_text(json.dumps(_mad_doc()))
    rows = read_mad(path)
    assert rows == [
        MomentQuery("7", "He runs.", "3001_21_JUMP_STREET", 6130.0, ((12.1, 15.3),)),
        MomentQuery("8", "She sits.", "3002_30_MINUTES_OR_LESS", 4800.0, ((0.0, 2.5),)),
    ]
    assert read_annotations(path) == rows and read_annotations(path, "mad") == rows


def test_mad_bad_timestamps(tmp_path):
    doc = _mad_doc()
    doc["8"]["ext_timestamps"] = [5.0, 2.0]
    path = tmp_path / "MAD_val.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"MAD_val\.json: \['8'\].*before its start"):
        read_mad(path)


# --------------------------------------------------------------------------- dispatch and errors


def test_sniffing_by_extension_and_content(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"qid": 1, "query": "a", "vid": "v", "relevant_windows": []}\n'
    )
    (tmp_path / "a.txt").write_text("AAAAA 0.0 1.0##x\n")
    (tmp_path / "noext_charades").write_text("AAAAA 0.0 1.0##x\n")
    (tmp_path / "noext_qvh").write_text('{"qid": 1, "query": "a", "vid": "v"}\n')
    (tmp_path / "noext_mad").write_text(json.dumps(_mad_doc(), indent=1))
    expected = {
        "a.jsonl": "qvhighlights",
        "a.txt": "charades",
        "noext_charades": "charades",
        "noext_qvh": "qvhighlights",
        "noext_mad": "mad",
    }
    assert {name: sniff_format(tmp_path / name) for name in expected} == expected
    assert read_annotations(tmp_path / "noext_charades")[0].qid == "AAAAA_1"


def test_unknown_format_names_file_and_supported_formats(tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n")
    with pytest.raises(ConfigError, match=r"odd\.csv.*qvhighlights, charades, ego4d, mad"):
        read_annotations(odd)
    with pytest.raises(ConfigError, match=r"odd\.csv.*'tvr'.*qvhighlights, charades, ego4d, mad"):
        read_annotations(odd, "tvr")
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"other\.json.*fmt="):
        read_annotations(other)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        (
            "q.jsonl",
            '{"qid": 1, "query": "a", "vid": "v"}\n{"qid": 2, "query": \n',
            r"q\.jsonl:2: not valid JSON",
        ),
        (
            "q.jsonl",
            '{"qid": 1, "query": "a", "vid": "v"}\n\n{"query": "b", "vid": "v"}\n',
            r"q\.jsonl:3: missing field 'qid'",
        ),
        ("q.jsonl", "[1, 2]\n", r"q\.jsonl:1: expected a JSON object"),
        (
            "q.jsonl",
            '{"qid": 1, "query": "a", "vid": "v", "relevant_windows": [[1, 2, 3]]}\n',
            r"q\.jsonl:1: a window must be \[start, end\]",
        ),
        (
            "q.jsonl",
            '{"qid": 1, "query": "a", "vid": "v", "relevant_windows": [[1, "x"]]}\n',
            r"q\.jsonl:1: window end must be a number",
        ),
        (
            "c.txt",
            "AAAAA 0.0 1.0##ok\nAAAAA 0.0##broken\n",
            r"c\.txt:2: expected 'VID START END##sentence'",
        ),
        (
            "c.txt",
            "AAAAA 0.0 1.0##ok\nAAAAA 3.0 1.0##reversed\n",
            r"c\.txt:2: window end 1\.0 is before",
        ),
        ("c.txt", "AAAAA zero 1.0##bad\n", r"c\.txt:1: window start must be a number"),
        ("e.json", '{\n  "videos": [\n    {"clips": [}\n  ]\n}\n', r"e\.json:3: not valid JSON"),
    ],
)
def test_malformed_input_is_a_config_error_with_location(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern):
        read_annotations(path, "ego4d" if name.endswith(".json") else None)


def test_charades_moment_after_video_end_is_an_error(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"AAAAA": {"duration": 10.0}}))
    (tmp_path / "c.txt").write_text("AAAAA 11.0 12.0##late\n")
    with pytest.raises(ConfigError, match=r"c\.txt:1: .*after the video's 10\.0 s"):
        read_annotations(tmp_path / "c.txt", durations_json=tmp_path / "d.json")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.jsonl: cannot open"):
        read_annotations(tmp_path / "nope.jsonl")
