"""The ``groundzero`` command line: parse flags -> config -> library call -> render."""
