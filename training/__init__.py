"""Training the grounding head on an index's stored frame embeddings: samples (``data``),
the loop (``loop``) and the job that reads an index and writes a head (``job``)."""
