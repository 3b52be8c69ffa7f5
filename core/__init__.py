"""GroundZero's shared core: the neural model (``core.model``) and the on-disk
index contract (``core.store``) that the indexer writes and search reads.

``indexer`` and ``search`` never import each other; they meet here.
"""
