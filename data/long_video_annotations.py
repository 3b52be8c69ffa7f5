"""Readers of the long-video benchmarks' annotations: Ego4D-NLQ and MAD.

Both give :class:`~groundzero.data.annotations.MomentQuery` rows, like the QVHighlights and
Charades-STA readers of :mod:`groundzero.data.annotations`, whose ``read_annotations`` picks
the reader by format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groundzero.data.annotations import (
    MomentQuery,
    json_field,
    json_list,
    json_number,
    json_window,
    load_json,
)
from groundzero.errors import ConfigError

# --------------------------------------------------------------------------- Ego4D-NLQ


def read_ego4d_nlq(path: str | Path) -> list[MomentQuery]:
    """Read the official Ego4D NLQ annotations (``nlq_train.json`` / ``nlq_val.json``).

    Layout (fields used)::

        {"videos": [{"video_uid": str,
                     "clips": [{"clip_uid": str, "clip_start_sec": float, "clip_end_sec": float,
                                "annotations": [{"annotation_uid": str,
                                                 "language_queries": [{"query": str,
                                                                       "clip_start_sec": float,
                                                                       "clip_end_sec": float,
                                                                       ...}]}]}]}]}

    - ``vid`` = ``clip_uid``; times are relative to the clip (the query's
      ``clip_start_sec`` / ``clip_end_sec``); ``duration_sec`` = the clip's
      ``clip_end_sec - clip_start_sec``.
    - ``qid`` = ``f"{annotation_uid}_{idx}"``, ``idx`` the query's position in
      ``language_queries`` (RGNet / CONE convention; skipped queries keep their
      index, so ids match the official evaluation's lookup).
    - Queries whose ``query`` text is missing, null or blank are **skipped**
      (the official data has a few; RGNet/CONE drop them too). Zero-length
      windows (about 14 % of NLQ) are kept.
    - A test file without ``language_queries`` yields no queries.

    Example: clip ``"c1"`` spanning video seconds 10-490, query 0 of annotation
    ``"a1"`` "where did I put the keys?" at clip seconds 3.5-7.0 ->
    ``MomentQuery("a1_0", "where did I put the keys?", "c1", 480.0, ((3.5, 7.0),))``
    """
    path = Path(path)
    return _ego4d_records(load_json(path), path)


def _ego4d_records(obj: Any, path: Path) -> list[MomentQuery]:
    out: list[MomentQuery] = []
    videos = json_list(json_field(obj, "videos", str(path)), "videos", str(path))
    for v_i, video in enumerate(videos):
        clips = json_list(
            json_field(video, "clips", f"{path}: videos[{v_i}]"), "clips", f"{path}: videos[{v_i}]"
        )
        for c_i, clip in enumerate(clips):
            out.extend(_ego4d_clip(clip, f"{path}: videos[{v_i}].clips[{c_i}]"))
    return out


def _ego4d_clip(clip: Any, where: str) -> list[MomentQuery]:
    vid = str(json_field(clip, "clip_uid", where))
    start = json_number(json_field(clip, "clip_start_sec", where), "clip_start_sec", where)
    end = json_number(json_field(clip, "clip_end_sec", where), "clip_end_sec", where)
    out: list[MomentQuery] = []
    for a_i, ann in enumerate(json_list(clip.get("annotations") or [], "annotations", where)):
        a_where = f"{where}.annotations[{a_i}]"
        uid = str(json_field(ann, "annotation_uid", a_where))
        queries = json_list(ann.get("language_queries") or [], "language_queries", a_where)
        for q_i, q in enumerate(queries):
            q_where = f"{a_where}.language_queries[{q_i}]"
            if not isinstance(q, dict):
                raise ConfigError(f"{q_where}: expected a JSON object, got {type(q).__name__}")
            text = q.get("query")
            if not isinstance(text, str) or not text.strip():
                continue
            window = json_window(
                [json_field(q, "clip_start_sec", q_where), json_field(q, "clip_end_sec", q_where)], q_where
            )
            out.append(MomentQuery(f"{uid}_{q_i}", text.strip(), vid, end - start, (window,)))
    return out


# --------------------------------------------------------------------------- MAD


def read_mad(path: str | Path) -> list[MomentQuery]:
    """Read MAD's official annotation json (``MAD_{train,val,test}.json``).

    Layout: ``{annotation_id: {"movie": str, "sentence": str,
    "ext_timestamps": [start_sec, end_sec], "movie_duration": float, ...}}``.
    ``qid`` = the annotation key, ``vid`` = ``movie``, times are seconds from
    the start of the movie. Other fields (e.g. ``timestamps``) are ignored.

    Example: ``{"7": {"movie": "3001_21_JUMP_STREET", "sentence": "He runs.",
    "ext_timestamps": [12.1, 15.3], "movie_duration": 6130.0}}``
    -> ``MomentQuery("7", "He runs.", "3001_21_JUMP_STREET", 6130.0, ((12.1, 15.3),))``
    """
    path = Path(path)
    return _mad_records(load_json(path), path)


def _mad_records(obj: Any, path: Path) -> list[MomentQuery]:
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected {{annotation_id: {{...}}}}, got {type(obj).__name__}")
    out: list[MomentQuery] = []
    for key, ann in obj.items():
        where = f"{path}: [{key!r}]"
        duration = json_field(ann, "movie_duration", where)
        out.append(
            MomentQuery(
                qid=str(key),
                query=str(json_field(ann, "sentence", where)).strip(),
                vid=str(json_field(ann, "movie", where)),
                duration_sec=json_number(duration, "movie_duration", where),
                windows=(json_window(json_field(ann, "ext_timestamps", where), where),),
            )
        )
    return out
