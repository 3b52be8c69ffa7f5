"""Training losses: RGNet's grounding, sampling and contrastive losses plus GroundZero's
span-CE and confidence losses (RGNet §3.5 Eqs. 6, 8-10; notes §4; card stage 05).

DETR habit (``models/detr.py`` ``SetCriterion``): :class:`SetCriterion` returns a dict
of named, *unweighted* losses; :class:`LossWeights` holds every weight and
:meth:`SetCriterion.total` applies them, so one config decides the mix.

Loss keys (each a scalar):

* ``loss_span``: L1 on matched ``cw`` spans, mean over matched pairs × 2 coordinates.
* ``loss_giou``: mean ``1 − gIoU`` on matched ``xx`` spans.
* ``loss_label``: foreground/background CE over all queries, class weights ``[1, eos_coef]``,
  reduction ``'none'`` then a plain mean over B·Q (as the RGNet / Moment-DETR code does,
  notes §4; *not* PyTorch's weighted mean, which divides by the sum of the weights, so
  background queries count ``eos_coef`` as much as a foreground one and the loss scale
  does not depend on how many queries matched).
* the three above again for every auxiliary decoder layer, suffixed ``_0``, ``_1``, …
  (matching recomputed per layer); only when ``LossWeights.aux``.
* ``loss_saliency``: intra-proposal sampling hinge (Eq. 6),
  ``2 · mean max(0, Δ + S(j_out) − S(j_in))``.
* ``loss_contrastive``: inter-proposal InfoNCE (Eq. 8), CLIP-style symmetric CE.
* ``loss_span_start`` / ``loss_span_end``: CE over frames for the span head.
* ``loss_confidence``: BCE of the presence logit.

Grounding losses (span, giou, saliency, span-CE) use only windows that hold the
moment; windows without one (``n_i = 0``) still enter ``loss_label`` with all
queries labelled background (notes §4, "negative window") and ``loss_confidence``.
A loss whose *output* key is missing from ``outputs`` is left out of the dict; if the
output is there, its targets must be too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from groundzero.errors import ConfigError
from groundzero.model.matcher import HungarianMatcher, Match
from groundzero.model.span_ops import cw_to_xx, generalized_temporal_iou

_AUX_SUFFIX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class LossWeights:
    """Every loss weight and loss hyper-parameter (notes §4 defaults).

    Attributes:
        span_l1: weight of ``loss_span`` (``span_loss_coef`` 10).
        span_giou: weight of ``loss_giou`` (``giou_loss_coef`` 1).
        label_ce: weight of ``loss_label`` (``label_loss_coef`` 4).
        eos_coef: CE class weight of "background" (0.1); foreground is 1.
        saliency: weight of ``loss_saliency`` (``lw_saliency`` 1).
        saliency_margin: Δ of the sampling hinge (0.2).
        contrastive: λ_cont, weight of ``loss_contrastive``. The paper summary says 10;
            the code uses 10 for MAD, 1 for Ego4D NaQ pre-training and ``train_ego4d``,
            0 for the Ego4D finetune. Our default 1 matches the Ego4D runs; set 10 for MAD.
        contrastive_temperature: τ of the InfoNCE logits (0.07).
        span_ce: weight of each of ``loss_span_start`` and ``loss_span_end``.
        confidence: weight of ``loss_confidence``.
        aux: compute the span / giou / label losses for every earlier decoder layer too.
    """

    span_l1: float = 10.0
    span_giou: float = 1.0
    label_ce: float = 4.0
    eos_coef: float = 0.1
    saliency: float = 1.0
    saliency_margin: float = 0.2
    contrastive: float = 1.0
    contrastive_temperature: float = 0.07
    span_ce: float = 1.0
    confidence: float = 1.0
    aux: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "aux" and not value >= 0:
                raise ConfigError(f"loss weight {f.name}={value}: must be >= 0")
        if not 0 < self.eos_coef <= 1:
            raise ConfigError(f"loss eos_coef={self.eos_coef}: must be in (0, 1]")
        if self.contrastive_temperature <= 0:
            raise ConfigError(
                f"loss contrastive_temperature={self.contrastive_temperature}: must be > 0"
            )

    def weight_dict(self) -> dict[str, float]:
        """Weight of every base loss key (aux keys ``<key>_<i>`` share their base's weight)."""
        return {
            "loss_span": self.span_l1,
            "loss_giou": self.span_giou,
            "loss_label": self.label_ce,
            "loss_saliency": self.saliency,
            "loss_contrastive": self.contrastive,
            "loss_span_start": self.span_ce,
            "loss_span_end": self.span_ce,
            "loss_confidence": self.confidence,
        }


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A 0 that stays in the graph (so ``backward`` works when a batch has no positives)."""
    return like.sum() * 0.0


class SetCriterion(nn.Module):
    """RGNet's ``SetCriterion`` plus GroundZero's span-CE and confidence losses.

    ``forward(outputs, targets) -> dict[str, Tensor]`` (module docstring lists the keys).

    ``outputs`` (every key but ``pred_logits`` / ``pred_spans`` optional):
        ``"pred_logits"`` (B, Q, 2), ``"pred_spans"`` (B, Q, 2) cw, ``"aux_outputs"``
        (list of dicts with those two keys) — from :class:`~groundzero.model.decoder.GroundingDecoder`;
        ``"saliency"`` (B, T) frame scores S (RGNet Eq. 7);
        ``"retrieval_logit_matrix"`` (B, B): retrieval logit of query i × window j,
        positives on the diagonal (notes §4, ``--winret``);
        ``"start_logits"`` / ``"end_logits"`` (B, T) from :class:`~groundzero.model.span_head.SpanHead`;
        ``"confidence_logit"`` (B,) from :class:`~groundzero.model.span_head.ConfidenceHead`.

    ``targets`` (a dict):
        ``"span_labels"``: B dicts ``{"spans": (n_i, 2) cw normalised}``, ``n_i = 0`` for a
        window without the moment (the matcher's format);
        ``"pos_idx"`` / ``"neg_idx"`` (B,) int64: one in-moment and one out-of-moment frame
        per window (needed with ``saliency``);
        ``"saliency_valid"`` (B,) bool: windows whose saliency pair is real (default: n_i > 0);
        ``"start_idx"`` / ``"end_idx"`` (B,) int64 inclusive GT frames (needed with
        ``start_logits``; read only where n_i > 0);
        ``"present"`` (B,) float in {0, 1} (default: n_i > 0).
    """

    def __init__(self, matcher: HungarianMatcher, weights: LossWeights) -> None:
        super().__init__()
        self.matcher = matcher
        self.weights = weights
        self.register_buffer(
            "class_weight", torch.tensor([1.0, weights.eos_coef]), persistent=False
        )

    # -- DETR set losses ------------------------------------------------------------------

    def _set_losses(
        self, out: dict, span_labels: list[dict], suffix: str
    ) -> dict[str, torch.Tensor]:
        """``loss_span``, ``loss_giou``, ``loss_label`` for one decoder layer's predictions."""
        logits, spans = out["pred_logits"], out["pred_spans"]  # (B, Q, 2) each
        matches = self.matcher(out, span_labels)
        batch_idx, pred_idx = self._flat_index(matches, logits.device)  # (N,) each
        tgt = torch.cat(
            [
                t["spans"].reshape(-1, 2)[j.to(t["spans"].device)]
                for t, (_, j) in zip(span_labels, matches)
            ]
        ).to(spans)  # (N, 2) cw, in match order
        src = spans[batch_idx, pred_idx]  # (N, 2) cw

        if src.shape[0] > 0:
            loss_span = F.l1_loss(src, tgt)
            loss_giou = (
                1 - torch.diag(generalized_temporal_iou(cw_to_xx(src), cw_to_xx(tgt)))
            ).mean()
        else:  # no window in the batch holds the moment
            loss_span = loss_giou = _zero(spans)

        classes = torch.ones(
            logits.shape[:2], dtype=torch.int64, device=logits.device
        )  # (B, Q) all background
        classes[batch_idx, pred_idx] = 0  # matched queries: foreground
        ce = F.cross_entropy(
            logits.float().transpose(1, 2),
            classes,
            weight=self.class_weight.to(logits.device),
            reduction="none",
        )  # (B, Q)
        return {
            f"loss_span{suffix}": loss_span,
            f"loss_giou{suffix}": loss_giou,
            f"loss_label{suffix}": ce.mean(),
        }

    @staticmethod
    def _flat_index(
        matches: list[Match], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch_idx, pred_idx), each (N,) over all matched pairs of the batch."""
        batch = torch.cat([torch.full_like(p, b) for b, (p, _) in enumerate(matches)])
        pred = torch.cat([p for p, _ in matches])
        return batch.to(device), pred.to(device)

    # -- RGNet encoder losses ----------------------------------------------------------

    def _saliency_loss(
        self, saliency: torch.Tensor, targets: dict, valid: torch.Tensor
    ) -> torch.Tensor:
        """RGNet Eq. 6 / notes §4: ``2 · mean_valid max(0, Δ + S(j_out) − S(j_in))``.

        Args:
            saliency: (B, T) frame scores. valid: (B,) bool windows that take part.
        """
        T = saliency.shape[1]
        pos = targets["pos_idx"].to(saliency.device).long().clamp(0, T - 1)[:, None]  # (B, 1)
        neg = targets["neg_idx"].to(saliency.device).long().clamp(0, T - 1)[:, None]  # (B, 1)
        s = saliency.float()
        s_in, s_out = s.gather(1, pos)[:, 0], s.gather(1, neg)[:, 0]  # (B,) each
        hinge = F.relu(self.weights.saliency_margin + s_out - s_in)  # (B,)
        if not bool(valid.any()):
            return _zero(saliency)
        return 2.0 * hinge[valid].mean()

    def contrastive_loss(self, logit_matrix: torch.Tensor, same_query: torch.Tensor | None = None) -> torch.Tensor:
        """RGNet Eq. 8 as coded (``loss_adapter``): ``(CE(ℓ/τ, i) + CE(ℓᵀ/τ, i)) / 2``.

        Args:
            logit_matrix: (B, B) retrieval logit of query i × window j; window i is
                query i's positive.
            same_query: optional (B, B) bool, True where samples i and j are the same
                sentence. GroundZero departs from RGNet here: such a window j is a
                positive of query i too (in an archive the same moment recurs), so those
                off-diagonal pairs are left out of both softmaxes instead of being pushed
                down as negatives.
        """
        logits = logit_matrix.float() / self.weights.contrastive_temperature  # (B, B)
        labels = torch.arange(logits.shape[0], device=logits.device)
        if same_query is not None:
            off = same_query.to(logits.device) & ~torch.eye(len(labels), dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(off, float("-inf"))
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))

    # -- GroundZero heads --------------------------------------------------------------

    def _span_ce_losses(
        self, outputs: dict, targets: dict, has_moment: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """CE over frames of the start and end logits, windows with a moment only."""
        losses = {}
        for name in ("start", "end"):
            logits = outputs[f"{name}_logits"]  # (B, T)
            if bool(has_moment.any()):
                idx = targets[f"{name}_idx"].to(logits.device).long()
                losses[f"loss_span_{name}"] = F.cross_entropy(
                    logits[has_moment].float(), idx[has_moment]
                )
            else:
                losses[f"loss_span_{name}"] = _zero(logits)
        return losses

    # -- entry points ------------------------------------------------------------------

    def forward(self, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
        """Named, unweighted scalar losses; see the class docstring for both dicts."""
        span_labels = targets["span_labels"]
        device = outputs["pred_logits"].device
        has_moment = torch.tensor(
            [t["spans"].reshape(-1, 2).shape[0] > 0 for t in span_labels],
            dtype=torch.bool,
            device=device,
        )  # (B,)

        losses = self._set_losses(outputs, span_labels, "")
        if self.weights.aux:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                losses.update(self._set_losses(aux, span_labels, f"_{i}"))

        if "saliency" in outputs:
            valid = targets.get("saliency_valid", has_moment).to(device).bool() & has_moment
            losses["loss_saliency"] = self._saliency_loss(outputs["saliency"], targets, valid)
        if "retrieval_logit_matrix" in outputs:
            losses["loss_contrastive"] = self.contrastive_loss(outputs["retrieval_logit_matrix"])
        if "start_logits" in outputs:
            losses.update(self._span_ce_losses(outputs, targets, has_moment))
        if "confidence_logit" in outputs:
            logit = outputs["confidence_logit"].float()
            present = targets.get("present", has_moment).to(logit)
            losses["loss_confidence"] = F.binary_cross_entropy_with_logits(logit, present)
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ weight · loss over the dict (RGNet Eq. 10 plus GroundZero's heads).

        Aux keys ``<base>_<i>`` take ``<base>``'s weight. An unknown key raises ``KeyError``
        rather than being silently dropped.
        """
        weights = self.weights.weight_dict()
        total = None
        for key, value in losses.items():
            base = _AUX_SUFFIX.sub("", key)
            if base not in weights:
                raise KeyError(f"loss {key!r} has no weight; known: {sorted(weights)}")
            term = weights[base] * value
            total = term if total is None else total + term
        if total is None:
            raise ValueError("total() got an empty loss dict")
        return total


def build_criterion(weights: LossWeights | None = None) -> SetCriterion:
    """Criterion with RGNet's matcher costs (10 / 1 / 4, notes §4) and the given weights."""
    return SetCriterion(
        HungarianMatcher(cost_span=10.0, cost_giou=1.0, cost_class=4.0), weights or LossWeights()
    )
