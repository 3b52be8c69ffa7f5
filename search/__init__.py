"""Query time: text -> shortlist (FAISS) -> re-rank -> ground -> merged results."""
