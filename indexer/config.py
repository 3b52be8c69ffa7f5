"""Configuration of an index run (one frozen dataclass; the CLI fills it from flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from groundzero.data.proposals import ProposalConfig
from groundzero.errors import ConfigError
from groundzero.indexer.channels import ChannelsConfig
from groundzero.model.precision import PRECISIONS
from groundzero.store.s3 import S3Config, S3Url, is_s3_url


@dataclass(frozen=True)
class IndexConfig:
    archive: str  #: local folder of videos, or s3://bucket/prefix
    index_dir: str  #: where the index lives (created if missing): a local directory, or s3://bucket/prefix
    #: checkpoint directory, hub id, or registered model name (:mod:`groundzero.plugins`; "demo": the
    #: synthetic demo model, which knows only coloured shapes). "auto": the index's own model when it
    #: has one, else SigLIP 2 So400m on a CUDA device and SigLIP 2 base-224 on a CPU (model.backbone.default_model)
    model: str = "auto"
    device: str = "auto"  #: embed device: auto (CUDA if present) | cpu | cuda[:n]
    fps: float = 1.0  #: frames sampled per second of video
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    embed_batch_size: int = 32  #: frames per embed call
    #: embed actors in the Ray pool (one GPU each when CUDA is used); None: sized to the machine or
    #: cluster (one per GPU; on CPUs see groundzero.indexer.embed_plan)
    embed_actors: int | None = None
    decode_threads: int = 1  #: ffmpeg threads per decode task
    chunk_frames: int = 16  #: frames per row batch leaving the decode stage (bounds memory)
    faiss_factory: str = "auto"  #: "auto": exact Flat, then IVF as the corpus grows (groundzero.store.vectors); or a FAISS factory string
    exclude: tuple[str, ...] = ()  #: glob patterns of files to leave out (e.g. "*.json")
    retry_failed: bool = False  #: re-try unchanged files that failed in an earlier run
    #: publish a snapshot once this many videos finished since the last one, or once
    #: ``commit_every_sec`` passed, whichever comes first; and at the end of the run
    commit_every: int = 50
    #: publish a snapshot at least this often, in seconds (600: every 10 minutes; checked as each
    #: batch of frames arrives), so a run killed after hours keeps all but its last minutes of work
    commit_every_sec: float = 600.0
    dry_run: bool = False  #: only print the plan
    head: str | None = None  #: grounding head whose learned context tokens the index uses (see reindex)
    s3: S3Config = field(default_factory=S3Config)  #: endpoint, retries, page size for s3:// locations
    cache_dir: str | None = None  #: local working copy of an s3:// index (default: see groundzero.store.s3_index)
    tmp_dir: str | None = None  #: where decode tasks download S3 videos (default: the system temp dir)
    #: what is said (captions; speech recognition with a model) and shown as text (OCR) beside the frames
    channels: ChannelsConfig = field(default_factory=ChannelsConfig)
    #: torch threads (and Ray CPUs) per embed actor; None: sized with the actors (groundzero.indexer.embed_plan)
    embed_threads: int | None = None
    #: image tower precision: auto (bf16 on CUDA and on CPUs with native bf16, else fp32; an existing
    #: index keeps its own) | fp32 | bf16; recorded in the index, which refuses another (groundzero.model.precision)
    precision: str = "auto"
    #: still frames are not embedded twice: a frame whose picture barely changed from the last
    #: embedded frame reuses its embedding (a pixel test on the decoded frame; the timeline stays at
    #: ``fps``; :mod:`groundzero.indexer.stills`). Not recorded in the index: runs with and without it
    #: mix (the same model embeds every frame that is embedded)
    reuse_still: bool = True
    #: a NaFlex model's patch budget per frame (frames keep their aspect ratio; more patches, more
    #: detail and cost). None: the index's own, else the checkpoint processor's ``max_num_patches``.
    #: Recorded in the index, which refuses another; an error for a fixed-resolution model
    max_patches: int | None = None

    def validate(self) -> IndexConfig:
        if not 0 < self.fps <= 30:
            raise ConfigError(f"fps must be in (0, 30], got {self.fps}", field="fps")
        for name in ("embed_batch_size", "embed_actors", "embed_threads", "decode_threads", "chunk_frames",
                     "commit_every", "max_patches"):
            if getattr(self, name) is not None and getattr(self, name) < 1:  # None: sized to the machine
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", field=name)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
                              field="precision")
        if not self.commit_every_sec > 0:
            raise ConfigError(f"commit_every_sec must be > 0 seconds, got {self.commit_every_sec}",
                              field="commit_every_sec")
        self.proposals.validate()
        self.s3.validate()
        for where in (self.archive, self.index_dir):
            if is_s3_url(where):
                S3Url.parse(where)
        return self
