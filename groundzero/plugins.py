"""GroundZero's extension points: named models and span re-scorers, as Python entry points.

The core library knows no particular model. Two small registries let a package plug in:

* ``groundzero.models``: a name usable wherever a model is asked for (``--model NAME``).
  The entry point is a function returning a :class:`ModelBundle`: the backbone directory
  and, optionally, the grounding head that indexing with that backbone uses by default.
* ``groundzero.rescorers``: a re-scorer that a grounding head's ``config.json`` may declare,
  ``"rescorer": {"name": NAME, ...params}``. The entry point is a class built as
  ``cls(backbone, params)``; search calls its ``rescore`` on each video's candidate spans
  after the head has grounded them (see :class:`Rescorer`).

Register them in a package's ``pyproject.toml``::

    [project.entry-points."groundzero.models"]
    demo = "groundzero.synthetic.model:demo_model"

    [project.entry-points."groundzero.rescorers"]
    clip-check = "groundzero.synthetic.clip_check:ClipCheck"

The synthetic demo (``examples/synthetic``, installed as ``groundzero.synthetic``) is such a
package; nothing in the core imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from groundzero.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    import numpy as np

    from groundzero.model.backbone import Backbone

MODELS_GROUP = "groundzero.models"
RESCORERS_GROUP = "groundzero.rescorers"


@dataclass(frozen=True)
class ModelBundle:
    """A named model: a backbone checkpoint directory and its default grounding head, if any."""

    backbone_dir: Path
    head_dir: Path | None = None


class Rescorer(Protocol):
    """Re-scores the candidate spans a grounding head found in one video."""

    def __init__(self, backbone: Backbone, params: dict) -> None: ...

    def rescore(self, query: np.ndarray, frames: np.ndarray, spans_sec: np.ndarray, scores: np.ndarray,
                fps: float) -> tuple[np.ndarray, np.ndarray]:
        """Args:
            query: float32 (D,) the query's L2-normalised sentence embedding.
            frames: float32 (T, D) the video's frame embeddings (rows outside the spans may be zeros).
            spans_sec: float64 (S, 2) candidate spans, seconds; scores: float64 (S,) the head's scores.
            fps: frames per second of ``frames``.
        Returns:
            (new scores (S,), presence factors (S,) in [0, 1] that multiply each span's found-probability).
        """
        ...


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group`` (``importlib.metadata`` is imported only when asked:
    scanning the installed packages' metadata is not free, and a command given a checkpoint path
    never needs it)."""
    from importlib.metadata import entry_points as scan

    return list(scan(group=group))


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(ep.name for ep in entry_points(group=MODELS_GROUP))


def named_model(name: str) -> ModelBundle | None:
    """The bundle registered as ``name``, or None when no plugin registers that name."""
    for ep in entry_points(group=MODELS_GROUP):
        if ep.name == name:
            return ep.load()()
    return None


def load_rescorer(spec: dict, backbone: Backbone) -> Rescorer:
    """Build the re-scorer a head declares: ``spec`` is its config's ``{"name": ..., **params}``."""
    name = spec.get("name") if isinstance(spec, dict) else None
    found = [ep for ep in entry_points(group=RESCORERS_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(sorted(ep.name for ep in entry_points(group=RESCORERS_GROUP))) or "none"
        raise ConfigError(f"the grounding head declares re-scorer {name!r}, which no installed package "
                          f"registers (registered: {known}); install the package that provides it")
    return found[0].load()(backbone, {k: v for k, v in spec.items() if k != "name"})
