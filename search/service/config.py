"""Configuration of the search service (one frozen dataclass; ``groundzero serve`` fills it from flags)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from groundzero.errors import ConfigError
from groundzero.search.config import SearchConfig
from groundzero.search.service.media import cpu_count

TOKEN_ENV = "GROUNDZERO_TOKEN"
MIN_TOKEN_CHARS = 8
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")


@dataclass(frozen=True)
class ServeConfig:
    index_dir: str  #: index directory built by ``groundzero index``
    host: str = "127.0.0.1"  #: interface to bind; anything but loopback needs ``token``
    port: int = 8000  #: 0 picks a free port
    token: str | None = None  #: access token; requests then need ``Authorization: Bearer TOKEN``
    model: str | None = None  #: query model; default: the one that built the index
    head: str | None = None  #: trained grounding head; default: zero-shot grounding
    device: str = "auto"  #: auto | cpu | cuda[:n]
    reload_every_sec: float = 5.0  #: how often the manifest is checked for a newer snapshot (< 0: never)
    search: SearchConfig = field(default_factory=SearchConfig)
    result_cache: int = 64  #: searches remembered per snapshot, so paging does not search again
    #: searches run at once, in parallel threads (0: one per CPU); more requests wait in line. Each
    #: search's torch ops use torch's own threads besides: ``groundzero serve`` sets them to
    #: CPUs // search_threads (unless ``OMP_NUM_THREADS`` is set), so the searches do not oversubscribe the cores
    search_threads: int = 0
    thumb_cache: int = 512  #: thumbnails kept in memory
    thumb_timeout_sec: float = 20.0  #: ffmpeg budget per thumbnail
    thumb_procs: int = 0  #: ffmpeg processes making thumbnails at once (0: one per CPU); more requests queue
    max_k: int = 200  #: most moments one search may rank
    max_limit: int = 100  #: most results (or groups) per page
    max_clip_sec: float = 1800.0  #: longest span ``/api/clip`` cuts (30 min)
    clip_timeout_sec: float = 600.0  #: ffmpeg budget per clip
    clip_procs: int = 2  #: clips cut at once; more requests queue

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def searches_at_once(self) -> int:
        """``search_threads``, 0 resolved: the CPUs this process may run on."""
        return self.search_threads or cpu_count()

    @property
    def fetch_threads(self) -> int:
        """Threads each search reads its shortlisted videos with: its share of the CPUs (at least 1), so
        ``searches_at_once`` searches never run more reading threads than there are cores."""
        return max(1, cpu_count() // self.searches_at_once)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def validate(self) -> ServeConfig:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}", field="port")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"token must be at least {MIN_TOKEN_CHARS} characters long; "
                              "e.g. `export GROUNDZERO_TOKEN=$(openssl rand -hex 16)`", field="token")
        if self.token is not None and not _TOKEN_CHARS.fullmatch(self.token):
            raise ConfigError("token may hold only letters, digits and . _ ~ + / = - (no spaces)", field="token")
        if not self.is_loopback and not self.token:
            raise ConfigError(
                f"host {self.host} is reachable from other machines, and the archive would be open to "
                f"anyone who can reach it; set token (or {TOKEN_ENV}) to require it, or use host 127.0.0.1",
                field="host")
        if not 1 <= self.max_k <= 1000 or not 1 <= self.max_limit <= self.max_k:
            raise ConfigError(f"max_k must be in [1, 1000] and max_limit in [1, max_k], "
                              f"got {self.max_k} and {self.max_limit}", field="max_k")
        if self.search_threads < 0:
            raise ConfigError(f"search_threads must be >= 0 (0: one per CPU), got {self.search_threads}",
                              field="search_threads")
        if self.thumb_procs < 0:
            raise ConfigError(f"thumb_procs must be >= 0 (0: one per CPU), got {self.thumb_procs}",
                              field="thumb_procs")
        if not self.max_clip_sec > 0 or not self.clip_timeout_sec > 0 or self.clip_procs < 1:
            raise ConfigError(f"max_clip_sec and clip_timeout_sec must be > 0 and clip_procs >= 1, got "
                              f"{self.max_clip_sec}, {self.clip_timeout_sec} and {self.clip_procs}",
                              field="max_clip_sec")
        self.search.validate()
        return self


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any other name or address is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
