"""The on-disk index contract shared by ``indexer`` (writes) and ``search`` (reads).

One index directory::

    INDEX/
      manifest.json                  current committed snapshot (swapped with os.replace)
      manifests/000007.json          every snapshot ever committed
      videos/<video_id>-<run>.frames.parquet     frame embeddings of one video
      videos/<video_id>-<run>.proposals.parquet  proposal windows + context tokens
      vectors/context-000007.faiss   FAISS index over all context tokens of the snapshot
      catalog/videos-000007.parquet  catalog snapshot: every video seen, indexed or failed
      catalog/runs/<run_id>.json     one record per index run
      .lock                          held (flock) by the one writer

Files are written under fresh names and only become visible when a new
manifest naming them is swapped in, so a reader always sees one whole snapshot.
"""
