"""Search mechanics on planted embeddings: the answer is known exactly."""

import json

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.model.backbone import Backbone
from groundzero.search.config import SearchConfig
from groundzero.search.searcher import Searcher
from tests.planted import plant_index

QUERY = "a red circle moving left"


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([QUERY])[0]
    index_dir = tmp_path_factory.mktemp("planted") / "index"
    # video 3, seconds [130, 145): spans the boundary of windows [120,168) and [144,192)
    plant_index(index_dir, tiny_model_dir, q, durations=[120, 300, 90, 400, 200],
                target_video=3, target_start=130, target_end=145,
                decoys=[(1, 50, 60, 0.5), (4, 10, 20, 0.4)])
    return index_dir


def test_rank_one_is_the_planted_segment(planted):
    s = Searcher(planted, device="cpu")
    res = s.search(QUERY, top_k=5)
    top = res.hits[0]
    assert top.rel_path == "video_03.mp4"
    assert abs(top.start_sec - 130) <= 1 and abs(top.end_sec - 145) <= 1
    # the decoys come next, weaker
    assert [h.rel_path for h in res.hits[1:3]] == ["video_01.mp4", "video_04.mp4"]
    assert abs(res.hits[1].start_sec - 50) <= 1 and abs(res.hits[1].end_sec - 60) <= 1
    assert top.score > res.hits[1].score > res.hits[2].score
    assert set(res.timings_ms) == {"text", "shortlist", "fetch", "ground", "merge"}


def test_search_reads_only_the_shortlisted_frames_and_agrees_with_a_full_read(planted):
    cfg = SearchConfig(shortlist_proposals=4)
    lazy = Searcher(planted, device="cpu", cfg=cfg)
    res = lazy.search(QUERY, top_k=5)
    read, total = lazy.frame_groups_read()
    assert 0 < read < total  # the 400-frame video is 2 row groups; its target is in the first
    full = Searcher(planted, device="cpu", cfg=cfg)
    for seq in full.videos:
        full.video_data(seq)  # every frame read before searching
    assert full.frame_groups_read()[0] == full.frame_groups_read()[1]
    assert [h.to_dict() for h in full.search(QUERY, top_k=5).hits] == [h.to_dict() for h in res.hits]


def test_results_are_deterministic_and_nms_leaves_no_overlaps(planted):
    s = Searcher(planted, device="cpu")
    a, b = s.search(QUERY, top_k=10), s.search(QUERY, top_k=10)
    assert [h.to_dict() for h in a.hits] == [h.to_dict() for h in b.hits]
    for i, h in enumerate(a.hits):
        for g in a.hits[i + 1 :]:
            if g.video_id == h.video_id:
                inter = max(0.0, min(h.end_sec, g.end_sec) - max(h.start_sec, g.start_sec))
                union = (h.end_sec - h.start_sec) + (g.end_sec - g.start_sec) - inter
                assert inter / union <= 0.5


def test_cli_search_json_and_table(planted):
    runner = CliRunner()
    r = runner.invoke(app, ["search", QUERY, "--index", str(planted), "--top", "3", "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["query"] == QUERY and len(out["hits"]) == 3
    h = out["hits"][0]
    assert h["rel_path"] == "video_03.mp4" and abs(h["start_sec"] - 130) <= 1
    assert h["start"] == "00:02:10.0"
    r = runner.invoke(app, ["search", QUERY, "--index", str(planted), "--device", "cpu"])
    assert r.exit_code == 0 and "video_03.mp4" in r.stdout and "00:02:10.0" in r.stdout


def test_search_with_another_model_is_refused(planted, tmp_path):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other", TinySiglipConfig(seed=7))
    r = CliRunner().invoke(app, ["search", QUERY, "--index", str(planted), "--model", str(other)])
    assert r.exit_code == 1
    assert "was built with model" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_one_clear_line(planted, query):
    r = CliRunner().invoke(app, ["search", query, "--index", str(planted)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and "query is empty" in r.stderr


def test_missing_index_and_missing_model(tmp_path, planted):
    r = CliRunner().invoke(app, ["search", "x", "--index", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    r = CliRunner().invoke(app, ["search", "x", "--index", str(tmp_path)])
    assert r.exit_code == 1 and "no committed index" in r.stderr
    r = CliRunner().invoke(app, ["search", "x", "--index", str(planted), "--model", str(tmp_path / "nomodel")])
    assert r.exit_code == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
