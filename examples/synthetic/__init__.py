"""The synthetic demo: archives with known answers, the small SigLIP trained on them, and the
clip check that re-scores its head's spans.

Installed as ``groundzero.synthetic``. Nothing in the core library imports it: it plugs in
through the extension points of :mod:`groundzero.plugins` (the ``demo`` model name and the
``clip-check`` re-scorer), registered as entry points in ``pyproject.toml``.
"""
