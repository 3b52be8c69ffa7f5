"""Recompute an index's context tokens for a (new) grounding head, from Parquet only.

``groundzero reindex --index IDX --head HEAD`` reads every video's stored frame
embeddings, runs the head's context-token pooler over each proposal window, and
commits a snapshot whose FAISS index holds the learned tokens. No video is
decoded again. ``--zero-shot`` goes back to zero-shot tokens.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from groundzero.errors import GroundZeroError, IndexMismatchError
from groundzero.indexer.plan import new_run_id
from groundzero.indexer.stops import disk_full_error
from groundzero.indexer.tokens import ZERO_SHOT, TokenMaker, head_token_kind
from groundzero.model.checkpoint import read_config
from groundzero.store.cleanup import disk_full_errno
from groundzero.store.manifest import Manifest, require_manifest
from groundzero.store.writer import IndexWriter


def reindex(index_dir: str | Path, head: str | None, device: str = "cpu") -> Manifest:
    layout, m = require_manifest(index_dir)
    if head is not None:
        backbone = read_config(head).get("backbone", {})
        if backbone.get("fingerprint") != m.model.fingerprint:
            raise IndexMismatchError(
                f"head {head} was trained on embeddings of model {backbone.get('name')!r}, but index "
                f"{layout.root} was built with {m.model.name!r}; train a head on this index")
    kind = ZERO_SHOT if head is None else head_token_kind(head)
    maker = TokenMaker(kind, m.params.proposals.tokens_per_proposal, head, device)
    params = replace(m.params, token_kind=kind, proposals=replace(m.params.proposals, tokens_per_proposal=maker.k))
    try:
        with IndexWriter.open(layout.root, m.model, params, m.faiss_factory, retokenize=True) as w:
            try:
                run_id = new_run_id()
                w.retokenize(params, maker, run_id)
                if head is None:
                    w.extra.pop("head", None)
                else:
                    w.extra["head"] = str(Path(head).expanduser().resolve())
                return w.commit(run_id)
            except Exception as e:
                if disk_full_errno(e) is None:
                    raise
                w.discard_uncommitted()  # the new proposal files: the index stays as it was
                raise disk_full_error(e, layout.root, w, remedy=_REMEDY) from e
    except GroundZeroError:
        raise
    except Exception as e:  # a full disk while opening (run records, the lock file)
        if disk_full_errno(e) is None:
            raise
        raise disk_full_error(e, layout.root, remedy=_REMEDY) from e


_REMEDY = ", then run reindex again: the index is unchanged"
