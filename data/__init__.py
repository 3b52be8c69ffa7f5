"""Torch-free data helpers shared by every stage: spans and temporal IoU (``spans``),
proposal windows (``proposals``), annotation readers (``annotations``) and metrics (``metrics``)."""
