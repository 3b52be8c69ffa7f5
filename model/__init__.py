"""The neural model (torch): the SigLIP backbone adapter, the RGNet retriever (RG-Encoder,
Gumbel sampler, retrieval token), the decoder with span and confidence heads, the matcher and
the losses, checkpoints, and inference (:mod:`groundzero.model.inference`).

Never imports Ray, FAISS, DuckDB or the CLI, so training and tests stay light.
"""
