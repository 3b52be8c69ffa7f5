"""From a ranked :class:`~groundzero.search.results.SearchResult` to one page of the search page:
filters on the catalog (folder, date, duration), grouping by video, offset/limit paging.

Pure functions over the search result and catalog rows, so they are tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone

from groundzero.errors import ConfigError
from groundzero.search.results import Hit, SearchResult
from groundzero.search.service.state import folder_of

DATE_FIELDS = ("modified", "indexed")


@dataclass(frozen=True)
class Filters:
    """Which hits to keep; every field left at None keeps everything."""

    folder: str | None = None  #: a folder inside the archive; its subfolders are included
    min_duration_sec: float | None = None  #: of the whole video
    max_duration_sec: float | None = None
    since: date | None = None  #: inclusive, UTC day
    until: date | None = None  #: inclusive, UTC day
    date_field: str = "modified"  #: "modified" (the file's mtime) | "indexed" (when it was indexed)

    def validate(self) -> Filters:
        if self.date_field not in DATE_FIELDS:
            raise ConfigError(f"date_field must be one of {', '.join(DATE_FIELDS)}, got {self.date_field!r}")
        lo, hi = self.min_duration_sec, self.max_duration_sec
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"min_duration ({lo:g} s) is larger than max_duration ({hi:g} s)")
        if self.since and self.until and self.since > self.until:
            raise ConfigError(f"since ({self.since}) is after until ({self.until})")
        return self

    def keep(self, row: dict) -> bool:
        if self.folder:
            f = folder_of(row["rel_path"])
            want = self.folder.strip("/")
            if f != want and not f.startswith(want + "/"):
                return False
        d = float(row["duration_sec"])
        if self.min_duration_sec is not None and d < self.min_duration_sec:
            return False
        if self.max_duration_sec is not None and d > self.max_duration_sec:
            return False
        if self.since or self.until:
            when = row_time(row, self.date_field)
            if when is None:
                return False
            if self.since and when < _day_start(self.since):
                return False
            if self.until and when >= _day_start(self.until) + timedelta(days=1):
                return False
        return True


def row_time(row: dict, date_field: str) -> datetime | None:
    """The catalog row's file modification time or indexing time (UTC)."""
    if date_field == "modified":
        ns = row.get("mtime_ns")
        return datetime.fromtimestamp(ns / 1e9, timezone.utc) if ns else None
    raw = row.get("updated_at") or ""
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time.min, timezone.utc)


@dataclass(frozen=True)
class Group:
    video_id: str
    hits: list[Hit]

    @property
    def best_score(self) -> float:
        return max(h.score for h in self.hits)


@dataclass(frozen=True)
class Page:
    """One page: ``result.hits`` holds only this page's hits (in rank, or group, order)."""

    result: SearchResult
    total: int  #: hits (or groups, when grouped) that pass the filters, before paging
    offset: int
    limit: int
    groups: list[Group] | None  #: when grouped by video: this page's groups, best first


def page_of(result: SearchResult, catalog: dict[str, dict], filters: Filters, offset: int, limit: int,
            group: bool) -> Page:
    """Filter the ranked hits on their videos' catalog rows, then cut one page.

    Ungrouped, the page is ``hits[offset : offset + limit]``. Grouped, hits are gathered per
    video (groups ranked by their best hit, hits in rank order inside a group) and the page is
    ``groups[offset : offset + limit]``.
    """
    kept = [h for h in result.hits if h.video_id in catalog and filters.keep(catalog[h.video_id])]
    if not group:
        return Page(replace(result, hits=kept[offset:offset + limit]), len(kept), offset, limit, None)
    by_video: dict[str, list[Hit]] = {}
    for h in kept:
        by_video.setdefault(h.video_id, []).append(h)
    groups = sorted((Group(v, hs) for v, hs in by_video.items()), key=lambda g: -g.best_score)
    page = groups[offset:offset + limit]
    hits = [h for g in page for h in g.hits]
    return Page(replace(result, hits=hits), len(groups), offset, limit, page)
