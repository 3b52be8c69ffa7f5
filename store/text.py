"""Full-text search over what is said and shown: one SQLite FTS5 database per snapshot.

The text segments of every indexed video (:class:`~groundzero.data.segments.TextSegment`; per
video in ``videos/<video_id>-<run>.segments.parquet``, :func:`groundzero.store.tables.write_segments`)
are also rows of one full-text index, ``vectors/text-NNNNNN.sqlite``, named by the manifest's
``text_file`` ("" while no video has any). Why SQLite FTS5: it is in the standard library and
works offline (DuckDB's ``fts`` extension is downloaded at first use; tantivy would be one more
native dependency), and it ranks by BM25, knows phrases, stems English words (the porter
tokenizer: "derive" finds "derives", "derived", "deriving") and marks matches (``snippet``).

One table, ``segments``; only ``text`` is indexed, the other columns ride along (``UNINDEXED``)::

    text, video_seq, video_id, seg_idx, start_sec, end_sec, source, speaker, confidence
    rowid = video_seq << 24 | seg_idx        (as FAISS ids: a video's rows are one rowid range)

Written at commit, incrementally (:func:`write_text_index`): the previous snapshot's file is
copied under a temporary name, the rows of the videos removed, re-indexed or failed since are
deleted (one rowid range each), the new videos' rows inserted; then the copy is fsynced and
renamed into place, and hashed for the manifest. A commit that changes no text keeps the
previous snapshot's file. Readers open it read-only (:class:`TextIndex`, :func:`search_text`).

A natural-language query becomes a safe FTS5 ``MATCH`` expression (:func:`parse_query`): its words
are OR'ed, so BM25 ranks segments by how many and how rare the words they hold are; common
English words are dropped; ``"double-quoted phrases"`` stay phrases; every word is quoted, so
no text a user types is FTS5 syntax. Torch-free.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from groundzero.data.segments import SOURCES, TextSegment
from groundzero.errors import ConfigError
from groundzero.store.layout import IndexLayout, damaged, read_error
from groundzero.store.manifest import Manifest

log = logging.getLogger(__name__)

FORMAT = 1  #: of the database (its ``meta`` table); another one is refused as not this store's
TOKENIZE = "porter unicode61 remove_diacritics 2"
#: what :attr:`TextHit.snippet` wraps each matched word in (control characters never in a segment's
#: text, and untouched by HTML escaping: escape the snippet, then replace them with <mark>, </mark>)
MARK_START, MARK_END = "\x02", "\x03"
SEQ_SHIFT = 24  #: rowid = video_seq << SEQ_SHIFT | seg_idx
MAX_SEGMENTS = 1 << SEQ_SHIFT  #: segments per video the rowids have room for
MAX_TERMS = 32  #: query terms kept (the first ones); a pasted paragraph stays one bounded query
SNIPPET_TOKENS = 32  #: words around the matches in a snippet (FTS5 allows up to 64)

#: common English words dropped from a query's loose words (not from "phrases"), so BM25 ranks by
#: the words that say something; a query of nothing else keeps them
_STOPWORDS = """
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORDS.split())

_CREATE = f"""
CREATE VIRTUAL TABLE segments USING fts5(
    text, video_seq UNINDEXED, video_id UNINDEXED, seg_idx UNINDEXED, start_sec UNINDEXED,
    end_sec UNINDEXED, source UNINDEXED, speaker UNINDEXED, confidence UNINDEXED,
    tokenize = '{TOKENIZE}');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('format', '{FORMAT}'), ('tokenize', '{TOKENIZE}');
"""
_COLUMNS = "video_seq, video_id, seg_idx, start_sec, end_sec, text, source, speaker, confidence"
#: what unicode61 keeps as token characters (letters, numbers); everything else separates words
_WORD = re.compile(r"[^\W_]+")
_PHRASE = re.compile(r'"([^"]*)"')


def rowid_range(video_seq: int) -> tuple[int, int]:
    """The first and last rowid of video ``video_seq``'s rows."""
    return video_seq << SEQ_SHIFT, (video_seq << SEQ_SHIFT) | (MAX_SEGMENTS - 1)


# -- writing ---------------------------------------------------------------------------------


def write_text_index(path: Path, base: Path | None, remove_seqs: Iterable[int],
                     add: Mapping[int, tuple[str, Sequence[TextSegment]]]) -> None:
    """Write the text index ``path``: ``base`` (the previous snapshot's file; None: start empty)
    less the rows of the videos ``remove_seqs``, plus ``add`` (video_seq -> (video_id, segments)).

    Built under ``.NAME.tmp`` beside ``path``, fsynced and renamed, so a crash never leaves a
    half-written file under a name a manifest could point to; ``base`` is only read. Raises
    IndexDamagedError (naming ``base``) when ``base`` is not a readable text index, and an
    ``OSError`` with ``errno.ENOSPC`` for a full disk.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if base is not None:
            try:
                shutil.copyfile(base, tmp)
            except FileNotFoundError as e:
                raise read_error(base, e) from e
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            # the temporary file is discarded if anything fails: no rollback journal needed
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            if base is None:
                con.executescript(_CREATE)
            else:
                _check_format(con, base)
            con.execute("BEGIN")
            con.executemany("DELETE FROM segments WHERE rowid BETWEEN ? AND ?",
                            [rowid_range(int(s)) for s in sorted(set(remove_seqs))])
            for seq, (video_id, segments) in sorted(add.items()):
                con.execute("DELETE FROM segments WHERE rowid BETWEEN ? AND ?", rowid_range(int(seq)))
                con.executemany(f"INSERT INTO segments (rowid, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                _rows(int(seq), video_id, segments))
            con.execute("COMMIT")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        if _disk_full(e):  # seen by groundzero.store.cleanup.disk_full_errno, like any full disk
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: writing {path}") from e
        if base is not None and isinstance(e, sqlite3.DatabaseError):  # a damaged page of the copy
            raise read_error(base, e) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: give the space back at once
        raise


def _rows(seq: int, video_id: str, segments: Sequence[TextSegment]) -> Iterable[tuple]:
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"video {video_id} has {len(segments)} text segments, more than {MAX_SEGMENTS}")
    for i, s in enumerate(segments):
        text = s.text.replace(MARK_START, " ").replace(MARK_END, " ")  # the markers mean "a match" only
        yield ((seq << SEQ_SHIFT) | i, seq, video_id, i, float(s.start_sec), float(s.end_sec), text, s.source,
               s.speaker, float(s.confidence))


def _disk_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(e)


def _check_format(con: sqlite3.Connection, path: Path) -> None:
    """Raise IndexDamagedError unless ``con`` is a text index of this format."""
    try:
        got = dict(con.execute("SELECT key, value FROM meta").fetchall())
        con.execute("SELECT rowid FROM segments LIMIT 1").fetchall()
    except sqlite3.Error as e:
        raise read_error(path, e) from e
    if got.get("format") != str(FORMAT) or got.get("tokenize") != TOKENIZE:
        raise damaged(path, f"not a GroundZero text index of format {FORMAT} (meta: {got})")


# -- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextQuery:
    """A user's query as FTS5 sees it (:func:`parse_query`)."""

    terms: tuple[str, ...]  #: lowercased phrases (words joined by one space), then words
    match: str  #: the FTS5 MATCH expression; "" when the query has no words


def parse_query(query: str) -> TextQuery:
    """Turn natural language into a safe FTS5 MATCH expression: quoted phrases stay phrases, other
    words are OR'ed (stopwords dropped unless nothing else is left), every word double-quoted.
    Terms: the phrases first, then the words, each once.

    >>> parse_query('Who signed "the contract" in 2019?').match
    '"the contract" OR "signed" OR "2019"'
    """
    text = unicodedata.normalize("NFC", query or "")
    phrases = [" ".join(_words(p)) for p in _PHRASE.findall(text)]
    loose = _words(_PHRASE.sub(" ", text))
    content = [w for w in loose if w not in STOPWORDS]
    terms: list[str] = []
    for t in [*(p for p in phrases if p), *(content if content or phrases else loose)]:
        if t not in terms:
            terms.append(t)
    terms = terms[:MAX_TERMS]
    return TextQuery(tuple(terms), " OR ".join(f'"{t}"' for t in terms))


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclass(frozen=True)
class TextHit:
    """One segment matching a text query. ``score``: BM25 (higher is better; FTS5's ``bm25()``
    negated); ``snippet``: the text around the matches, each matched word wrapped in
    :data:`MARK_START` ... :data:`MARK_END`; ``matched_terms``: the query's terms (words or phrases,
    lowercased) this segment holds; ``coverage``: their share of the query's terms, in [0, 1]."""

    video_seq: int
    video_id: str
    seg_idx: int
    start_sec: float
    end_sec: float
    text: str
    source: str
    speaker: str
    confidence: float
    score: float
    snippet: str
    matched_terms: tuple[str, ...]
    coverage: float


class TextIndex:
    """A snapshot's text index, opened read-only (``file:...?mode=ro``) for many queries.

    Keep it open while serving its snapshot: the open file stays readable after a later commit's
    garbage collection deletes it. Safe to share between threads (queries take turns). Raises
    IndexDamagedError, naming the file, for one that is missing or not a text index.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._con = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True,
                                        check_same_thread=False)
        except sqlite3.Error as e:
            raise read_error(self.path, e) from e
        try:
            _check_format(self._con, self.path)
        except BaseException:
            self._con.close()
            raise

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TextIndex:  # noqa: PYI034 - py310 has no typing.Self
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def search(self, query: str, *, sources: Sequence[str] | None = None,
               video_seqs: Iterable[int] | None = None, limit: int = 50) -> list[TextHit]:
        """The ``limit`` best segments for ``query`` (see :func:`search_text`)."""
        q = parse_query(query)
        if not q.match or limit <= 0:
            return []
        where, args = "segments MATCH ?", [q.match]
        if sources is not None:
            bad = sorted(set(sources) - set(SOURCES))
            if bad:
                raise ConfigError(f"text source {bad[0]!r} is not one of {', '.join(SOURCES)}")
            where += " AND source IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(sources)))
        if video_seqs is not None:
            where += " AND video_seq IN (SELECT value FROM json_each(?))"
            args.append(json.dumps([int(s) for s in video_seqs]))
        sql = (f"SELECT rowid, {_COLUMNS}, -bm25(segments), snippet(segments, 0, ?, ?, '…', {SNIPPET_TOKENS}) "
               f"FROM segments WHERE {where} ORDER BY rank, rowid LIMIT ?")
        with self._lock:
            rows = self._execute(sql, [MARK_START, MARK_END, *args, int(limit)])
            matched = self._matched(q, [r[0] for r in rows])
        return [TextHit(video_seq=int(r[1]), video_id=str(r[2]), seg_idx=int(r[3]), start_sec=float(r[4]),
                        end_sec=float(r[5]), text=str(r[6]), source=str(r[7]), speaker=str(r[8] or ""),
                        confidence=float(r[9]), score=float(r[10]), snippet=str(r[11]),
                        matched_terms=matched[r[0]], coverage=len(matched[r[0]]) / len(q.terms))
                for r in rows]

    def _matched(self, q: TextQuery, rowids: list[int]) -> dict[int, tuple[str, ...]]:
        """rowid -> the terms of ``q`` that row matches (one query per term, over ``rowids`` only)."""
        if len(q.terms) == 1:
            return {r: q.terms for r in rowids}
        got: dict[int, list[str]] = {r: [] for r in rowids}
        ids = json.dumps(rowids)
        for t in q.terms:
            for (r,) in self._execute("SELECT rowid FROM segments WHERE segments MATCH ? "
                                      "AND rowid IN (SELECT value FROM json_each(?))", [f'"{t}"', ids]):
                got[r].append(t)
        return {r: tuple(ts) for r, ts in got.items()}

    def counts(self) -> dict[int, int]:
        """video_seq -> rows of that video (what ``verify`` compares with the catalog)."""
        with self._lock:
            rows = self._execute(f"SELECT rowid >> {SEQ_SHIFT}, count(*) FROM segments GROUP BY 1", [])
        return {int(s): int(n) for s, n in rows}

    def _execute(self, sql: str, args: list) -> list[tuple]:
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.Error as e:  # a damaged page found by this query (the expression is always valid)
            raise read_error(self.path, e) from e


def text_path(layout: IndexLayout, manifest: Manifest) -> Path | None:
    """The snapshot's text index (confined to the index directory), None when no video has text."""
    return layout.path(manifest.text_file) if manifest.text_file else None


def search_text(path: str | Path, query: str, *, sources: Sequence[str] | None = None,
                video_seqs: Iterable[int] | None = None, limit: int = 50) -> list[TextHit]:
    """The ``limit`` segments of text index ``path`` (``layout.path(manifest.text_file)``) that best
    match ``query``, best first (BM25 over the query's terms: :func:`parse_query`).

    ``sources``: only segments from these (``caption``, ``asr``, ``ocr``; None: all);
    ``video_seqs``: only these videos (None: all). A query without words finds nothing. Raises
    IndexDamagedError for a missing or damaged file, ConfigError for an unknown source.
    """
    with TextIndex(path) as index:
        return index.search(query, sources=sources, video_seqs=video_seqs, limit=limit)


# -- checking --------------------------------------------------------------------------------


def integrity_problems(path: Path) -> list[str]:
    """What SQLite's ``PRAGMA integrity_check`` and FTS5's ``integrity-check`` find wrong with text
    index ``path`` ([] when nothing). The file is only read: FTS5's check is a write statement, so it
    runs on a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="groundzero-text-check-") as d:
        copy = Path(d) / "text.sqlite"
        shutil.copyfile(path, copy)
        con = sqlite3.connect(copy, isolation_level=None)
        try:
            out = [str(r[0]) for r in con.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
            if not out:
                try:
                    con.execute("INSERT INTO segments (segments) VALUES ('integrity-check')")
                except sqlite3.Error as e:
                    out.append(f"FTS5 integrity-check: {e}")
            return out
        except sqlite3.Error as e:
            return [str(e)]
        finally:
            con.close()
