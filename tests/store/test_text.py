"""Text segments in the index: per-video Parquet, the SQLite FTS5 index of each snapshot, and
queries over it (BM25 order, phrases, stems, marks, filters), kept in step with the catalog by
incremental commits, crashes, verify, gc and ``catalog sql``."""

from __future__ import annotations

import errno
import json
import sqlite3

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.data.segments import TextSegment, Word
from groundzero.errors import ConfigError, IndexDamagedError
from groundzero.model.identity import ModelIdentity
from groundzero.store import tables, text
from groundzero.store.catalog import connect, read_catalog
from groundzero.store.check import errors, verify_index
from groundzero.store.gc import RetentionPolicy
from groundzero.store.manifest import IndexParams, Manifest, require_manifest, sha256_file
from groundzero.store.queries import open_catalog, run_sql, summary
from groundzero.store.text import MARK_END, MARK_START, TextIndex, parse_query, search_text
from groundzero.store.writer import IndexWriter, VideoEntry, video_id_for
from tests.planted import unit

DIM = 8
IDENT = ModelIdentity(name="fake", fingerprint="f" * 64, embed_dim=DIM, image_size=32, text_max_len=16)
PARAMS = IndexParams(fps=1.0, frame_size=32, proposals=ProposalConfig())

SAID = {  # uri -> segments (source, text)
    "/a/deposition.mp4": [("caption", "Q: Please look at the exhibit and tell me what it is."),
                          ("caption", "A: That is the contract we signed in March."),
                          ("asr", "the witness derives the figure from the ledger")],
    "/a/meeting.mp4": [("asr", "we reviewed exhibit twelve and the exhibit list"),
                       ("asr", "the contract was signed later, after the derivation of costs"),
                       ("ocr", "EXHIBIT 12 — CONTRACT")],
    "/a/silent.mp4": [],
}


def _segments(items: list[tuple[str, str]]) -> list[TextSegment]:
    return [TextSegment(10.0 * i, 10.0 * i + 5, t, src, confidence=0.9 if src == "asr" else 1.0,
                        speaker="Q" if t.startswith("Q:") else "",
                        words=(Word(10.0 * i, 10.0 * i + 1, t.split()[0], 0.8),) if src == "asr" else ())
            for i, (src, t) in enumerate(items)]


def _put(w: IndexWriter, uri: str, items, run="r1", T=60, notes=()):
    emb = unit(np.random.default_rng(len(uri)).normal(size=(T, DIM)))
    win = make_windows(T, 1.0, PARAMS.proposals)
    e = VideoEntry(uri=uri, rel_path=uri.rsplit("/", 1)[-1], size_bytes=T, mtime_ns=1, duration_sec=T)
    return w.put_indexed(e, run, np.arange(T, dtype=np.float64), emb, win, zero_shot_tokens(emb, win, 6),
                         segments=_segments(items), text_notes=notes)


def _open(root, **kw) -> IndexWriter:
    return IndexWriter.open(root, IDENT, PARAMS, **kw)


@pytest.fixture
def index(tmp_path):
    with _open(tmp_path) as w:
        for uri, items in SAID.items():
            _put(w, uri, items, notes=("no captions and no speech model: nothing said is indexed",)
                 if not items else ())
        w.put_failed(VideoEntry("/a/bad.mp4", "bad.mp4", 0, 0), "r1", "empty_file", "bad.mp4 is empty")
        w.commit("r1")
    return tmp_path


def _text_path(root):
    return text.text_path(*require_manifest(root))


def _seq(root, uri):
    layout, m = require_manifest(root)
    return next(r["video_seq"] for r in read_catalog(layout, m) if r["uri"] == uri)


def test_segments_table_round_trip(tmp_path):
    segs = _segments(SAID["/a/deposition.mp4"])
    tables.write_segments(tmp_path / "s.parquet", "v", segs)
    assert tables.read_segments(tmp_path / "s.parquet") == segs
    t = pq.read_table(tmp_path / "s.parquet")
    assert t.schema == tables.SEGMENTS_SCHEMA and t.column("seg_idx").to_pylist() == [0, 1, 2]
    assert json.loads(t.column("words")[2].as_py()) == [{"start_sec": 20.0, "end_sec": 21.0, "text": "the",
                                                         "confidence": 0.8}]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(IndexDamagedError, match="bad.parquet"):
        tables.read_segments(tmp_path / "bad.parquet")


def test_commit_writes_segments_and_the_text_index(index):
    layout, m = require_manifest(index)
    assert m.text_file == "vectors/text-000001.sqlite" and m.text_file in m.checksums
    rows = {r["rel_path"]: r for r in read_catalog(layout, m)}
    dep = rows["deposition.mp4"]
    assert dep["n_segments"] == 3 and dep["segments_file"].endswith(".segments.parquet")
    assert dep["segments_file"] in m.checksums and dep["text_note"] == ""
    assert rows["silent.mp4"]["segments_file"] == "" and rows["silent.mp4"]["n_segments"] == 0
    assert rows["silent.mp4"]["text_note"] == "no captions and no speech model: nothing said is indexed"
    assert rows["bad.mp4"]["segments_file"] == "" and rows["bad.mp4"]["n_segments"] == 0
    assert tables.read_segments(layout.path(dep["segments_file"])) == _segments(SAID["/a/deposition.mp4"])
    assert verify_index(index, deep=True) == []


def test_bm25_ranks_segments_holding_more_of_the_query_first(index):
    hits = search_text(_text_path(index), "the exhibit contract")
    texts = [h.text for h in hits]
    assert texts[0] == "EXHIBIT 12 — CONTRACT"  # both words, short segment
    assert set(texts) == {"EXHIBIT 12 — CONTRACT", "we reviewed exhibit twelve and the exhibit list",
                          "Q: Please look at the exhibit and tell me what it is.",
                          "A: That is the contract we signed in March.",
                          "the contract was signed later, after the derivation of costs"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and hits[-1].score > 0
    top = hits[0]
    assert top.matched_terms == ("exhibit", "contract") and top.coverage == 1.0  # "the" is a stopword
    one = next(h for h in hits if h.text.startswith("Q:"))
    assert one.matched_terms == ("exhibit",) and one.coverage == 0.5 and one.speaker == "Q"
    assert (one.video_id, one.seg_idx, one.start_sec, one.end_sec, one.source, one.confidence) == (
        video_id_for("/a/deposition.mp4"), 0, 0.0, 5.0, "caption", 1.0)
    assert one.video_seq == _seq(index, "/a/deposition.mp4")


def test_phrases_stems_marks_and_filters(index):
    path = _text_path(index)
    # a quoted phrase matches those words in that order only
    assert [h.text for h in search_text(path, '"the contract we signed"')] == [
        "A: That is the contract we signed in March."]
    assert search_text(path, '"signed the contract"') == []
    # the porter stemmer: derive ~ derives ~ derivation
    hits = search_text(path, "derive")
    assert {h.text for h in hits} == {"the witness derives the figure from the ledger",
                                      "the contract was signed later, after the derivation of costs"}
    marked = next(h.snippet for h in hits if "witness" in h.text)
    assert f"{MARK_START}derives{MARK_END}" in marked and marked.count(MARK_START) == 1
    assert search_text(path, "DÉRIVES")  # case and diacritics folded
    # sources and videos
    assert {h.source for h in search_text(path, "exhibit", sources=["ocr"])} == {"ocr"}
    assert {h.source for h in search_text(path, "exhibit", sources=["caption", "asr"])} == {"caption", "asr"}
    seq = _seq(index, "/a/meeting.mp4")
    assert {h.video_seq for h in search_text(path, "exhibit contract", video_seqs=[seq])} == {seq}
    assert search_text(path, "exhibit", video_seqs=[]) == []
    assert len(search_text(path, "exhibit", limit=2)) == 2 and search_text(path, "exhibit", limit=0) == []
    with pytest.raises(ConfigError, match="'speech'"):
        search_text(path, "exhibit", sources=["speech"])
    # only stopwords: they are searched rather than nothing; no words at all: nothing
    assert search_text(path, "what it is")
    assert search_text(path, "?!") == [] and search_text(path, "") == []


def test_parse_query_quotes_every_word():
    q = parse_query('Who signed "the contract" in 2019? NEAR(x y) col:z* -w ^v')
    assert q.terms == ("the contract", "signed", "2019", "near", "x", "y", "col", "z", "w", "v")
    assert q.match == ('"the contract" OR "signed" OR "2019" OR "near" OR "x" OR "y" OR "col" OR "z" OR "w" '
                       'OR "v"')
    assert len(parse_query(" ".join(f"w{i}" for i in range(500))).terms) == text.MAX_TERMS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text() | st.text(alphabet='"*^:()-+.,{}[]ANDORNEAR ÉéabcΣ\x00\x02\'\\'))
def test_any_query_text_is_safe(index, q):
    with TextIndex(_text_path(index)) as t:
        for h in t.search(q, limit=5):
            assert 0 < h.coverage <= 1 and h.matched_terms


def test_incremental_commits_keep_the_text_index_in_step(index):
    first = _text_path(index)
    before = sha256_file(first)
    dep, meet = _seq(index, "/a/deposition.mp4"), _seq(index, "/a/meeting.mp4")
    with _open(index, retention=RetentionPolicy(keep_snapshots=2, keep_sec=0)) as w:
        _put(w, "/a/deposition.mp4", [("caption", "a wholly new transcript about invoices")], run="r2")
        w.remove("/a/meeting.mp4")
        _put(w, "/a/new.mp4", [("ocr", "INVOICE 7")], run="r2")
        m2 = w.commit("r2")
        assert m2.text_file == "vectors/text-000002.sqlite"
        path2 = w.layout.path(m2.text_file)
        assert sha256_file(first) == before  # the previous snapshot's file is only read
        assert search_text(first, "exhibit") and not search_text(path2, "exhibit")
        assert {h.text for h in search_text(path2, "invoice")} == {"a wholly new transcript about invoices",
                                                                   "INVOICE 7"}
        with TextIndex(path2) as t:
            counts = t.counts()
        assert counts[dep] == 1 and meet not in counts and sum(counts.values()) == 2
        assert verify_index(index, deep=True) == []

        # a failure drops the video's text; a commit that changes no text keeps the file
        w.put_failed(VideoEntry("/a/new.mp4", "new.mp4", 1, 1), "r3", "decode_failed", "broken")
        m3 = w.commit("r3")
        assert [h.text for h in search_text(w.layout.path(m3.text_file), "invoice")] == [
            "a wholly new transcript about invoices"]
        w.refresh(VideoEntry("/a/deposition.mp4", "deposition.mp4", 60, 2))
        m4 = w.commit("r4")
        assert m4.text_file == m3.text_file and m4.checksums[m4.text_file] == m3.checksums[m3.text_file]
        # retokenizing rewrites proposals, not text
        n = w.retokenize(PARAMS, lambda emb, win: zero_shot_tokens(emb, win, 6), "r5")
        m5 = w.commit("r5")
        assert n == 2 and m5.text_file == m3.text_file
        rows = {r["rel_path"]: r for r in read_catalog(w.layout, m5)}
        assert rows["deposition.mp4"]["n_segments"] == 1 and rows["deposition.mp4"]["segments_file"]
        assert verify_index(index, deep=True) == []
        # the last video with text leaves: no text index
        w.remove("/a/deposition.mp4")
        m6 = w.commit("r6")
    assert m6.text_file == "" and verify_index(index, deep=True) == []
    # kept while snapshot 5 (one of the newest two) names it; the others collected
    assert [p.name for p in (index / "vectors").glob("text-*.sqlite")] == ["text-000003.sqlite"]


def test_a_missing_or_damaged_previous_text_index_is_rebuilt_from_the_segments_files(index):
    _text_path(index).write_bytes(b"garbage" * 100)
    with _open(index) as w:
        _put(w, "/a/new.mp4", [("ocr", "INVOICE 7")], run="r2")
        m = w.commit("r2")
    with TextIndex(w.layout.path(m.text_file)) as t:
        assert sum(t.counts().values()) == 7
    assert search_text(w.layout.path(m.text_file), "exhibit")
    assert not errors(verify_index(index, deep=True))


def test_a_crash_before_commit_leaves_the_previous_text_index_whole(index, monkeypatch):
    path1 = _text_path(index)
    before = sha256_file(path1)
    real = text.write_text_index

    def dies(path, base, remove, add):  # the process dies half-way through building the new file
        (path.parent / f".{path.name}.tmp").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(text, "write_text_index", dies)
    w = _open(index)
    _put(w, "/a/deposition.mp4", [("caption", "replaced")], run="r2")
    with pytest.raises(KeyboardInterrupt):
        w.commit("r2")
    w.close()
    layout, m = require_manifest(index)
    assert m.version == 1 and sha256_file(path1) == before
    assert [h.text for h in search_text(path1, "ledger")] == ["the witness derives the figure from the ledger"]
    assert {p.code for p in verify_index(index)} == {"orphan_file", "tmp_file"}  # warnings only
    monkeypatch.setattr(text, "write_text_index", real)
    with _open(index) as w:  # the next writer clears the leftovers and commits
        assert not list(layout.vectors_dir.glob(".*.tmp"))
        _put(w, "/a/deposition.mp4", [("caption", "replaced")], run="r3")
        m = w.commit("r3")
    assert [h.text for h in search_text(layout.path(m.text_file), "replaced")] == ["replaced"]
    assert verify_index(index, deep=True) == []


def _codes(root) -> set[str]:
    return {p.code for p in errors(verify_index(root, deep=True))}


def test_verify_finds_a_damaged_text_index_and_missing_segments(index, tmp_path_factory):
    path = _text_path(index)
    data = bytearray(path.read_bytes())
    good = bytes(data)
    # a row deleted: SQLite is fine with the file, the catalog is not
    con = sqlite3.connect(path)
    con.execute("DELETE FROM segments WHERE rowid = (SELECT min(rowid) FROM segments)")
    con.commit()
    con.close()
    assert _codes(index) == {"text_rows", "checksum_mismatch"}
    # bytes overwritten in the middle of the file (the FTS index's pages)
    data[len(data) // 2 : len(data) // 2 + 2048] = b"\xff" * 2048
    path.write_bytes(bytes(data))
    assert {"text_unreadable", "checksum_mismatch"} <= _codes(index)
    path.write_bytes(b"not a database at all")
    assert {"text_unreadable", "checksum_mismatch"} <= _codes(index)
    with pytest.raises(IndexDamagedError, match="text-000001.sqlite"):
        search_text(path, "exhibit")
    path.unlink()
    assert _codes(index) == {"text_missing"}
    with pytest.raises(IndexDamagedError, match="is missing"):
        search_text(path, "exhibit")
    path.write_bytes(good)
    assert _codes(index) == set()
    # a segments file gone
    layout, m = require_manifest(index)
    seg = next(r["segments_file"] for r in read_catalog(layout, m) if r["segments_file"])
    layout.path(seg).unlink()
    assert _codes(index) == {"segments_file_missing"}


def test_gc_keeps_text_indexes_while_referenced_and_collects_the_rest(index):
    first = _text_path(index)
    orphan = index / "vectors" / "text-000099.sqlite"  # a killed run's
    orphan.write_bytes(b"x")
    with _open(index, retention=RetentionPolicy(keep_snapshots=2, keep_sec=0)) as w:
        _put(w, "/a/deposition.mp4", [("caption", "second")], run="r2")
        w.commit("r2")
        assert first.exists() and not orphan.exists()  # snapshot 1 is still one of the newest two
        _put(w, "/a/deposition.mp4", [("caption", "third")], run="r3")
        m3 = w.commit("r3")
    assert not first.exists()
    assert sorted(p.name for p in (index / "vectors").glob("text-*.sqlite")) == [
        "text-000002.sqlite", "text-000003.sqlite"]
    assert verify_index(index, deep=True) == [] and m3.version == 3


def test_catalog_sql_segments_view_and_summary(index):
    cat = open_catalog(index)
    got = run_sql(cat.con, "select v.rel_path, s.seg_idx, s.source from segments s join videos v using (video_id) "
                           "where text ilike '%exhibit%' order by 1, 2")
    assert got.rows == [("deposition.mp4", 0, "caption"), ("meeting.mp4", 0, "asr"), ("meeting.mp4", 2, "ocr")]
    words = run_sql(cat.con, "select words from segments where source = 'asr' and seg_idx = 2").rows[0][0]
    assert json.loads(words)[0]["text"] == "the"
    s = summary(cat.con, cat.manifest)
    assert s["segments_indexed"] == 6 and s["segments_by_source"] == {"asr": 3, "caption": 2, "ocr": 1}

    from typer.testing import CliRunner

    from groundzero.cli.main import app

    r = CliRunner().invoke(app, ["catalog", "sql", "select count(*) AS n from segments where text ilike '%exhibit%'",
                                 "--index", str(index), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"n": 3}]


def test_an_index_without_text_and_an_old_catalog_still_load(tmp_path):
    with _open(tmp_path) as w:
        _put(w, "/a/one.mp4", [])
        m = w.commit("r1")
    assert m.text_file == "" and text.text_path(w.layout, m) is None and verify_index(tmp_path, deep=True) == []
    layout = w.layout
    assert run_sql(connect(layout, m), "select count(*) from segments").rows == [(0,)]
    # a catalog and a manifest from before text segments existed
    cat = layout.path(m.catalog_file)
    pq.write_table(pq.read_table(cat).drop_columns(["segments_file", "n_segments", "text_note"]), cat)
    d = json.loads(layout.manifest.read_text())
    del d["text_file"]
    d["checksums"].pop(m.catalog_file)
    for p in (layout.manifest, layout.versioned_manifest(1)):
        p.write_text(json.dumps(d))
    assert Manifest.from_dict(d).text_file == ""
    (row,) = read_catalog(*require_manifest(tmp_path))
    assert (row["segments_file"], row["n_segments"], row["text_note"]) == ("", 0, "")
    con = connect(*require_manifest(tmp_path))
    assert con.execute("select segments_file, n_segments, text_note from videos").fetchall() == [("", 0, "")]
    assert not errors(verify_index(tmp_path, deep=True))
    with _open(tmp_path) as w:  # and the next run adds text to it
        _put(w, "/a/two.mp4", [("asr", "hello there")], run="r2")
        m2 = w.commit("r2")
    assert [h.text for h in search_text(w.layout.path(m2.text_file), "hello")] == ["hello there"]
    assert verify_index(tmp_path, deep=True) == []


def test_a_full_disk_while_writing_the_text_index_is_a_disk_full_error(index, monkeypatch):
    from groundzero.store.cleanup import disk_full_errno

    layout, m1 = require_manifest(index)
    connect_db = sqlite3.connect

    def small_disk(*a, **kw):  # the database may not grow beyond the pages it has: SQLITE_FULL
        con = connect_db(*a, **kw)
        con.execute("PRAGMA max_page_count = 1")
        return con

    w = _open(index)
    _put(w, "/a/long.mp4", [("asr", f"utterance number {i} of a long day") for i in range(3000)], run="r2")
    monkeypatch.setattr(text.sqlite3, "connect", small_disk)
    with pytest.raises(OSError) as got:
        w.commit("r2")
    monkeypatch.undo()
    assert disk_full_errno(got.value) == errno.ENOSPC and w.writing == layout.path("vectors/text-000002.sqlite")
    assert not list(layout.vectors_dir.glob(".*.tmp"))  # the half-built copy is gone at once
    w.discard_uncommitted()
    w.close()
    assert require_manifest(index)[1] == m1 and verify_index(index, deep=True) == []
