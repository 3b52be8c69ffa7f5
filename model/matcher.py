"""Hungarian matching of predicted spans to ground-truth spans (RGNet §3.5; notes §4).

Per window, the cost of assigning prediction ``q`` to target ``t`` is

    C[q, t] = cost_span · ‖ŝ_q − s_t‖₁ (on cw)  −  cost_giou · gIoU(ŝ_q, s_t) (on xx)
              −  cost_class · p_fg(q)

with RGNet's (and Moment-DETR's) 10 / 1 / 4. The optimal one-to-one assignment
comes from :func:`scipy.optimize.linear_sum_assignment`. Matching sees no
gradient (DETR ``models/matcher.py``); the criterion calls it once per decoder
layer, so auxiliary layers are matched afresh (notes §4).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from groundzero.model.span_ops import cw_to_xx, generalized_temporal_iou

Match = tuple[torch.Tensor, torch.Tensor]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of the Q predictions of each window to its n_i targets."""

    def __init__(
        self, cost_span: float = 10.0, cost_giou: float = 1.0, cost_class: float = 4.0
    ) -> None:
        super().__init__()
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.cost_class = cost_class

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict]) -> list[Match]:
        """
        Args:
            outputs: ``"pred_logits"`` (B, Q, 2), class 0 = foreground;
                ``"pred_spans"`` (B, Q, 2) cw normalised.
            targets: B dicts, each ``{"spans": (n_i, 2) cw normalised}``; ``n_i`` may
                be 0 (a window without the moment).
        Returns:
            B pairs ``(pred_idx, tgt_idx)``, int64 CPU tensors of length ``min(Q, n_i)``:
            prediction ``pred_idx[k]`` is matched to target ``tgt_idx[k]``.
        """
        B, Q = outputs["pred_spans"].shape[:2]
        prob_fg = outputs["pred_logits"].flatten(0, 1).float().softmax(-1)[:, 0]  # (B*Q,)
        spans = outputs["pred_spans"].flatten(0, 1).float()  # (B*Q, 2) cw
        tgt = torch.cat([t["spans"].reshape(-1, 2) for t in targets]).to(
            spans
        )  # (N, 2) cw, N = Σ n_i
        sizes = [int(t["spans"].reshape(-1, 2).shape[0]) for t in targets]
        empty = torch.empty(0, dtype=torch.int64)
        if tgt.shape[0] == 0:
            return [(empty, empty) for _ in range(B)]

        cost = (
            self.cost_span * torch.cdist(spans, tgt, p=1)
            - self.cost_giou * generalized_temporal_iou(cw_to_xx(spans), cw_to_xx(tgt))
            - self.cost_class * prob_fg[:, None]
        )  # (B*Q, N)
        cost = cost.view(B, Q, -1).cpu()

        matches: list[Match] = []
        for b, block in enumerate(cost.split(sizes, dim=-1)):
            if sizes[b] == 0:
                matches.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(block[b].numpy())  # block[b]: (Q, n_b)
            matches.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return matches
