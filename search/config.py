"""Configuration of a search (one frozen dataclass; the CLI fills it from flags)."""

from __future__ import annotations

from dataclasses import dataclass

from groundzero.data.segments import CHANNELS
from groundzero.errors import ConfigError


@dataclass(frozen=True)
class SearchConfig:
    top_k: int = 5  #: results returned
    shortlist_tokens: int = 512  #: context tokens fetched from FAISS
    shortlist_proposals: int = 32  #: proposals kept after the shortlist (best token per proposal)
    #: a product-quantised index fetches this many times ``shortlist_tokens`` and re-scores them
    #: exactly (groundzero.store.rescore); 1: rank by the PQ codes alone
    rescore_pool: int = 4
    smooth_frames: int = 3  #: moving-average width of the similarity curve (odd; 1 = none)
    spans_per_region: int = 3  #: candidate spans extracted per contiguous shortlisted region
    nms_iou: float = 0.5  #: temporal NMS threshold within a video (RGNet / CONE: 0.5)
    rerank_windows: int = 5  #: with a head: proposals per video kept after re-ranking (RGNet Ego4D: 5)
    #: "found" when the best candidate's found-probability reaches this; None: the head's calibrated
    #: threshold (``found_threshold`` in its config.json, calibrated on a val split), else 0.5
    found_threshold: float | None = None
    #: with a head, how proposals are ranked: "retrieval" (RGNet's σ(r)) or "retrieval_confidence"
    #: (σ(r)·σ(c); see groundzero.model.inference)
    window_score: str = "retrieval_confidence"
    #: coarse to fine: re-ground the edges of the top ``refine_hits`` hits from the video itself at
    #: ``refine_fps`` (``search.refine``); off where the bench showed no gain (docs/RESULTS.md)
    refine: bool = False
    refine_hits: int = 3
    refine_fps: float = 4.0
    refine_pad_sec: float = 2.0  #: how far around a hit's coarse span the video is read again
    #: channels searched: frames (the picture), speech (captions, ASR), text (on-screen text, OCR);
    #: a channel the index has nothing for answers nothing
    channels: tuple[str, ...] = CHANNELS
    #: a speech / text segment "finds" the moment when it holds this share of the query's words
    text_found_coverage: float = 0.5
    #: hits each channel contributes to the fusion (search.fusion) when several answer
    fusion_depth: int = 20
    #: how much a channel's hit counts in the fusion when the channel is not sure of it (below its
    #: "found" threshold), relative to a sure one; fitted on the talks archive's validation seed
    #: (bench/channels.py, docs/RESULTS.md)
    fusion_unsure_weight: float = 0.1

    def validate(self) -> SearchConfig:
        if self.refine_hits < 0 or not 0 < self.refine_fps <= 30 or self.refine_pad_sec < 0:
            raise ConfigError(f"refine needs refine_hits >= 0, refine_fps in (0, 30] and refine_pad_sec >= 0; got "
                              f"{self.refine_hits}, {self.refine_fps}, {self.refine_pad_sec}", field="refine_fps")
        if not 1 <= self.top_k <= 1000:
            raise ConfigError(f"top_k must be in [1, 1000], got {self.top_k}", field="top_k")
        for name in ("shortlist_tokens", "shortlist_proposals", "rescore_pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", field=name)
        if self.smooth_frames < 1 or self.smooth_frames % 2 == 0:
            raise ConfigError(f"smooth_frames must be odd and >= 1, got {self.smooth_frames}", field="smooth_frames")
        if self.found_threshold is not None and not 0.0 <= self.found_threshold <= 1.0:
            raise ConfigError(f"found_threshold must be in [0, 1], got {self.found_threshold}",
                              field="found_threshold")
        if self.window_score not in ("retrieval", "retrieval_confidence"):
            raise ConfigError(f"window_score={self.window_score!r}; allowed: retrieval, retrieval_confidence",
                              field="window_score")
        bad = [c for c in self.channels if c not in CHANNELS]
        if bad or not self.channels:
            raise ConfigError(f"channels {','.join(self.channels) or '(none)'}: choose one or more of "
                              f"{', '.join(CHANNELS)}", field="channels")
        if not 0.0 <= self.text_found_coverage <= 1.0:
            raise ConfigError(f"text_found_coverage must be in [0, 1], got {self.text_found_coverage}",
                              field="text_found_coverage")
        if not 0.0 <= self.fusion_unsure_weight <= 1.0:
            raise ConfigError(f"fusion_unsure_weight must be in [0, 1], got {self.fusion_unsure_weight}",
                              field="fusion_unsure_weight")
        if self.fusion_depth < 1:
            raise ConfigError(f"fusion_depth must be >= 1, got {self.fusion_depth}", field="fusion_depth")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"nms_iou must be in (0, 1], got {self.nms_iou}", field="nms_iou")
        return self
