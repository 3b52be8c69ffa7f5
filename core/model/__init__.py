"""Torch-only neural code: the backbone adapter and (later) the grounding model.

Never imports Ray, FAISS, DuckDB or the CLI, so training and tests stay light.
"""
