"""GroundZero: natural-language search inside video archives, answered as exact
``(video, start_sec, end_sec)`` spans.

The stages are subpackages, each a folder of the repository::

    archive -> decode -> embed      groundzero.indexer   (Ray Data job)
            -> store                groundzero.store     (Parquet, FAISS, DuckDB catalog; torch-free)
            -> shortlist -> re-rank -> ground -> results
                                    groundzero.search    (Searcher, service)
    the model (torch)               groundzero.model
    annotations, spans, metrics     groundzero.data      (torch-free)
    training the grounding head     groundzero.training
    the command line                groundzero.cli

``from groundzero import Searcher`` is the Python API; nothing heavy is imported until used.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Searcher": "groundzero.search.searcher",
    "SearchConfig": "groundzero.search.config",
    "SearchResult": "groundzero.search.results",
    "Hit": "groundzero.search.results",
    "IndexConfig": "groundzero.indexer.config",
    "run_index": "groundzero.indexer.pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'groundzero' has no attribute {name!r}")
