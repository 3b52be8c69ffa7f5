"""Recompute an index's context tokens for a (new) grounding head, from Parquet only.

``groundzero reindex --index IDX --head HEAD`` reads every video's stored frame
embeddings, runs the head's context-token pooler over each proposal window, and
commits a snapshot whose FAISS index holds the learned tokens. No video is
decoded again. ``--zero-shot`` goes back to zero-shot tokens.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from groundzero.errors import IndexMismatchError
from groundzero.model.checkpoint import read_config
from groundzero.store.manifest import Manifest, require_manifest
from groundzero.store.writer import IndexWriter
from groundzero.indexer.pipeline import new_run_id
from groundzero.indexer.tokens import ZERO_SHOT, TokenMaker, head_token_kind


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
    with IndexWriter.open(layout.root, m.model, params, m.faiss_factory, retokenize=True) as w:
        run_id = new_run_id()
        w.retokenize(params, maker, run_id)
        if head is None:
            w.extra.pop("head", None)
        else:
            w.extra["head"] = str(Path(head).expanduser().resolve())
        return w.commit(run_id)
