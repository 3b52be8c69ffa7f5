"""The on-disk index contract shared by ``indexer`` (writes) and ``search`` (reads).

One index directory::

    INDEX/
      manifest.json                  current committed snapshot (swapped with os.replace)
      manifests/000007.json          the snapshots still retained (see gc.py)
      videos/<video_id>-<run>.frames.parquet     frame embeddings of one video
      videos/<video_id>-<run>.proposals.parquet  proposal windows + context tokens
      videos/<video_id>-<run>.segments.parquet   text segments: captions, speech, on-screen text
      vectors/context-000007.faiss   FAISS index over all context tokens of the snapshot (for PQ
                                     codes, followed by their int8 re-scoring codes: rescore.py)
      vectors/text-000007.sqlite     SQLite FTS5 index over all text segments of the snapshot
      catalog/videos-000007.parquet  catalog snapshot: every video seen, indexed or failed
      catalog/runs/<run_id>.json     one record per index run
      .lock                          held (flock) by the one writer
      .lease/<gen>.json              or, on network filesystems, the writer's lease (lock.py)

Files are written under fresh names and only become visible when a new
manifest naming them is swapped in, so a reader always sees one whole snapshot.

Modules: ``layout`` (paths), ``manifest`` (the snapshot record), ``tables``
(per-video Parquet), ``vectors`` (FAISS and how it grows), ``rescore`` (exact re-scoring of PQ shortlists), ``text`` (full-text search), ``catalog`` (DuckDB
views), ``writer`` (the one writer: stage, commit), ``lock`` (one writer at a
time), ``gc`` (what a commit deletes), ``check`` (consistency of a snapshot),
``s3`` (S3 locations and clients) and ``s3_index`` (an index kept on S3, with ``s3_objects``,
``s3_snapshot`` and ``s3_gc``).
"""
