"""Hostile queries: no string crashes the query path (normalize_query, Searcher.search, the CLI).

The policy (``groundzero.search.searcher.normalize_query``): text that is not valid (lone
surrogates, undecodable bytes) is refused with a one-line error naming the position; controls
become spaces, format characters are dropped (bar ZWJ / ZWNJ), whitespace is collapsed; a query
with nothing visible left is refused as empty.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundzero.errors import EmptyQueryError, GroundZeroError
from groundzero.model.backbone import Backbone
from groundzero.search.results import SearchResult
from groundzero.search.searcher import (
    MAX_QUERY_CHARS,
    InvalidQueryTextError,
    Searcher,
    normalize_query,
)
from tests.planted import plant_index
from tests.search.hostile import EDGE_CASES, ZERO_WIDTH, format_chars, hostile_strings

QUERY = "a red circle moving left"
ROOT = Path(__file__).resolve().parents[2]
N_NORMALIZED = 6000  #: strings through normalize_query
N_SEARCHED = 300  #: of them, through a whole Searcher.search


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, tiny_model_dir):
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([QUERY])[0]
    index_dir = tmp_path_factory.mktemp("hostile") / "index"
    plant_index(index_dir, tiny_model_dir, q, durations=[60, 30], target_video=0, target_start=10, target_end=20)
    return Searcher(index_dir, device="cpu")


def check_normalized(out: str) -> None:
    """What every query that is searched looks like."""
    assert 0 < len(out) <= MAX_QUERY_CHARS
    out.encode("utf-8")  # strict: no surrogate left
    assert out == " ".join(out.split())
    for c in out:
        cat = unicodedata.category(c)
        assert cat not in ("Cs", "Cc") and (cat != "Cf" or c in "\u200c\u200d"), repr(c)
    assert any(unicodedata.category(c) != "Cf" for c in out)
    assert normalize_query(out) == out  # idempotent


def check_refusal(e: EmptyQueryError) -> None:
    """A refusal is one line of valid text (the CLI prints it, the service puts it in JSON)."""
    msg = str(e)
    msg.encode("utf-8")
    assert msg and "\n" not in msg and len(msg) < 400


def test_generated_strings_are_normalized_or_refused():
    kinds = {"ok": 0, "empty": 0, "invalid": 0}
    for s in hostile_strings(N_NORMALIZED, seed=1):
        try:
            out = normalize_query(s)
        except InvalidQueryTextError as e:
            check_refusal(e)
            kinds["invalid"] += 1
        except EmptyQueryError as e:
            check_refusal(e)
            kinds["empty"] += 1
        else:
            check_normalized(out)
            kinds["ok"] += 1
    assert min(kinds.values()) > 100, kinds  # every outcome was exercised


@settings(max_examples=1500, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.text(st.characters(codec=None, categories=["L", "M", "N", "P", "S", "Z", "C"]), max_size=60))
def test_any_code_points_are_normalized_or_refused(s):
    try:
        check_normalized(normalize_query(s))
    except EmptyQueryError as e:
        check_refusal(e)


@pytest.mark.parametrize("text, pos, what", [
    ("\ud800", 0, "lone UTF-16 surrogate U+D800"), ("caf\udce9 au lait", 3, "undecodable byte 0xE9"),
    ("ok \udfff", 3, "U+DFFF"), ("a\ud83d", 1, "U+D83D"), (b"caf\xe9", 3, "undecodable byte 0xE9"),
])
def test_text_that_is_not_valid_is_refused_with_its_position(text, pos, what):
    with pytest.raises(InvalidQueryTextError, match=f"at position {pos} it holds .*{re.escape(what)}.*pass the query as UTF-8"):
        normalize_query(text)


@pytest.mark.parametrize("text", ["", "   ", ZERO_WIDTH, "\u200b \u2060\t\ufeff", "\x00\x01\x7f", "\u200d",
                                  "\u00ad\u202e\u2066\U000e0001", format_chars(), None])
def test_invisible_queries_are_empty(text):
    with pytest.raises(EmptyQueryError, match="the query is empty") as e:
        normalize_query(text)
    assert not isinstance(e.value, InvalidQueryTextError)


@pytest.mark.parametrize("text, want", [
    ("  red \u200bcar ", "red car"), ("\ufeffred", "red"), ("red\x00car", "red car"), ("a\r\n\tb", "a b"),
    ("\ud83d\ude00 grin", "\U0001f600 grin"), (b"caf\xc3\xa9", "caf\u00e9"), ("\u0645\u0631\u062d\u0628\u0627", None),
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467", None), ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", None),
])
def test_valid_text_is_cleaned_not_refused(text, want):
    assert normalize_query(text) == (text if want is None else want)


def test_lengths():
    assert normalize_query("x" * MAX_QUERY_CHARS) == "x" * MAX_QUERY_CHARS
    assert normalize_query("\u200b" * 3000 + "red") == "red"  # invisible characters do not count
    for n in (MAX_QUERY_CHARS + 1, 10**6):
        with pytest.raises(EmptyQueryError, match=f"{n} characters long"):
            normalize_query("x" * n)
    with pytest.raises(InvalidQueryTextError, match="must be text"):
        normalize_query(42)


def test_searcher_answers_or_refuses_every_string(searcher):
    seen = {"searched": 0, "refused": 0}
    for s in hostile_strings(N_SEARCHED, seed=2):
        try:
            res = searcher.search(s, top_k=3)
        except GroundZeroError as e:
            assert isinstance(e, EmptyQueryError), (repr(s[:40]), e)
            seen["refused"] += 1
            continue
        assert isinstance(res, SearchResult) and res.hits
        check_normalized(res.query)
        seen["searched"] += 1
    assert min(seen.values()) > 20, seen


def test_searcher_search_and_ground_refuse_the_reported_strings(searcher):
    with pytest.raises(InvalidQueryTextError):
        searcher.search("\ud800")
    with pytest.raises(InvalidQueryTextError, match="0xE9"):
        searcher.search("caf\udce9 au lait")
    with pytest.raises(EmptyQueryError, match="empty"):
        searcher.search("\u200b\u200c\u200d\u2060\ufeff")
    with pytest.raises(InvalidQueryTextError):
        searcher.ground("\ud800", {0: searcher.proposal_ranges(0)})
    assert searcher.search("\x00" + QUERY).hits[0].rel_path == "video_00.mp4"
    assert searcher.search("\u200b" + QUERY + "\ufeff").query == QUERY


def test_every_edge_case_is_searched_or_refused(searcher):
    for s in EDGE_CASES:
        try:
            assert isinstance(searcher.search(s), SearchResult)
        except EmptyQueryError as e:
            check_refusal(e)


def test_cli_refuses_undecodable_argv_in_one_line(searcher):
    """``groundzero search $'caf\\xe9 au lait'`` from a terminal that is not UTF-8: argv holds '\\udce9'."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"}
    r = subprocess.run([sys.executable, "-m", "groundzero.cli.main", "search", b"caf\xe9 au lait", "--index",
                        str(searcher.layout.root), "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, check=False,
                       timeout=120)
    err = r.stderr.decode("utf-8")
    assert r.returncode == 2, err
    assert err.startswith("error: the query is not valid text") and "0xE9" in err and "position 3" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
