"""Grounding decoder, span/confidence heads, matcher and losses: tiny, seeded, CPU, seconds."""

import doctest
import math

import pytest
import torch

from groundzero.errors import ConfigError
from groundzero.model import decoder as decoder_mod
from groundzero.model import span_head as span_head_mod
from groundzero.model import span_ops
from groundzero.model.decoder import GroundingDecoder, GroundingDecoderConfig
from groundzero.model.losses import LossWeights, SetCriterion, build_criterion
from groundzero.model.matcher import HungarianMatcher
from groundzero.model.span_head import ConfidenceHead, SpanHead, decode_best_span, topk_spans
from groundzero.model.span_ops import (
    cw_to_xx,
    frame_idx_to_xx,
    generalized_temporal_iou,
    pairwise_temporal_iou,
    xx_to_cw,
    xx_to_frame_idx,
)

H = 32


def _xx(*spans):
    return torch.tensor(spans, dtype=torch.float32)


@pytest.mark.parametrize("module", [span_ops, decoder_mod, span_head_mod])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# -- span ops -------------------------------------------------------------------------


def test_iou_and_giou_hand_worked():
    iou, union = pairwise_temporal_iou(_xx([0, 2], [0, 1]), _xx([1, 3], [2, 3]))
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(union, torch.tensor([[3.0, 3.0], [3.0, 2.0]]))
    g = generalized_temporal_iou(_xx([0, 2], [0, 1]), _xx([1, 3], [2, 3]))
    torch.testing.assert_close(g, torch.tensor([[1 / 3, 0.0], [0.0, -1 / 3]]))
    # containment: IoU = gIoU = 1/4; identical: 1; zero-length pair: IoU 0, no NaN
    g = generalized_temporal_iou(_xx([0, 4], [1, 2], [1, 1]), _xx([1, 2], [1, 2], [1, 1]))
    assert g[0, 0].item() == pytest.approx(0.25) and g[1, 1].item() == pytest.approx(1.0)
    assert torch.isfinite(g).all() and g[2, 2].item() == pytest.approx(0.0)


def test_giou_has_a_gradient_without_overlap():
    a = _xx([0.0, 0.1]).requires_grad_()
    (-generalized_temporal_iou(a, _xx([0.5, 0.6]))).sum().backward()
    assert a.grad is not None and a.grad[0, 1] < 0  # pushing the end right helps


def test_span_conversions_round_trip():
    cw = torch.rand(7, 2)
    torch.testing.assert_close(xx_to_cw(cw_to_xx(cw)), cw)
    s, e = torch.tensor([0, 3, 7]), torch.tensor([0, 5, 7])
    n = torch.tensor([8, 8, 8])
    s2, e2 = xx_to_frame_idx(frame_idx_to_xx(s, e, n), n)
    assert s2.tolist() == s.tolist() and e2.tolist() == e.tolist()


# -- decoder --------------------------------------------------------------------------


def _decoder(seed: int = 0) -> GroundingDecoder:
    torch.manual_seed(seed)
    return GroundingDecoder(GroundingDecoderConfig.tiny()).eval()


def test_decoder_output_shapes_and_ranges():
    dec = _decoder()
    memory, mask = torch.randn(3, 12, H), torch.ones(3, 12, dtype=torch.bool)
    mask[1, 7:] = False
    out = dec(memory, mask)
    assert out["pred_logits"].shape == (3, 5, 2) and out["pred_spans"].shape == (3, 5, 2)
    assert len(out["aux_outputs"]) == 1  # tiny: 2 layers
    for o in out["aux_outputs"]:
        assert o["pred_logits"].shape == (3, 5, 2) and o["pred_spans"].shape == (3, 5, 2)
    assert ((out["pred_spans"] > 0) & (out["pred_spans"] < 1)).all()
    full = GroundingDecoder(GroundingDecoderConfig(layers=3, hidden=64, heads=4, ffn=128))
    assert len(full(torch.randn(2, 9, 64), torch.ones(2, 9, dtype=torch.bool))["aux_outputs"]) == 2


def test_decoder_ignores_padding_and_batch_composition():
    dec = _decoder()
    a, b = torch.randn(1, 10, H), torch.randn(1, 6, H)
    memory = torch.cat([a, torch.cat([b, torch.randn(1, 4, H)], dim=1)])  # b padded to 10
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    batched = dec(memory, mask)
    alone = dec(b, torch.ones(1, 6, dtype=torch.bool))
    torch.testing.assert_close(batched["pred_spans"][1:], alone["pred_spans"], atol=1e-5, rtol=1e-4)
    memory2 = memory.clone()
    memory2[1, 6:] = 100.0  # garbage in padded frames changes nothing
    torch.testing.assert_close(dec(memory2, mask)["pred_logits"], batched["pred_logits"])


def test_decoder_config_validation():
    with pytest.raises(ConfigError, match="heads"):
        GroundingDecoderConfig(hidden=32, heads=3)
    with pytest.raises(ConfigError, match="hidden"):
        GroundingDecoderConfig(hidden=30, heads=2)
    assert GroundingDecoderConfig() == GroundingDecoderConfig(256, 8, 2048, 6, 5, 0.1)


# -- span head ------------------------------------------------------------------------


def test_decode_best_span_hand_worked():
    # pair scores s[i] + e[j]; (2, 0) = 14 is the largest sum but ends before it starts
    s = torch.tensor([[1.0, 0.0, 6.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0, 0.0]])
    e = torch.tensor([[8.0, 0.0, 0.0, 1.0, 4.0], [0.0, 0.0, 0.0, 2.0, 0.0]])
    mask = torch.ones(2, 5, dtype=torch.bool)
    st, en, sc = decode_best_span(s, e, mask)
    assert st.tolist() == [2, 1] and en.tolist() == [4, 3] and sc.tolist() == [10.0, 5.0]
    st, en, sc = decode_best_span(s, e, mask, max_len=2)  # 3-frame spans now too long
    assert st.tolist() == [0, 1] and en.tolist() == [0, 1] and sc.tolist() == [9.0, 3.0]
    mask[0, 0] = False  # frame 0 is padding: (0, 0) is gone
    mask[1, 3:] = False
    st, en, sc = decode_best_span(s, e, mask, max_len=2)
    assert st.tolist() == [2, 1] and en.tolist() == [3, 1] and sc.tolist() == [7.0, 3.0]
    st, en, sc = topk_spans(s, e, torch.ones(2, 5, dtype=torch.bool), k=3)
    assert (
        st[0].tolist() == [2, 0, 2]
        and en[0].tolist() == [4, 0, 3]
        and sc[0].tolist() == [10.0, 9.0, 7.0]
    )


def test_span_and_confidence_heads_mask_padding():
    torch.manual_seed(0)
    memory, mask = torch.randn(2, 6, H), torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    out = SpanHead(H)(memory, mask)
    assert out["start_logits"].shape == (2, 6) and (out["end_logits"][1, 4:] == -1e4).all()
    conf = ConfidenceHead(H)
    tok = torch.randn(2, H)
    logit = conf(tok, memory, mask)["confidence_logit"]
    memory2 = memory.clone()
    memory2[1, 4:] = 1e3  # a huge padded frame must not win the max-pool
    assert logit.shape == (2,)
    torch.testing.assert_close(conf(tok, memory2, mask)["confidence_logit"], logit)


# -- matcher --------------------------------------------------------------------------


def _match(pred_xx, tgt_xx, logits=None):
    spans = xx_to_cw(pred_xx)[None]
    logits = torch.zeros(1, spans.shape[1], 2) if logits is None else logits
    return HungarianMatcher()(
        {"pred_logits": logits, "pred_spans": spans}, [{"spans": xx_to_cw(tgt_xx)}]
    )[0]


def test_matcher_two_preds_one_target():
    p, t = _match(_xx([0.0, 0.2], [0.35, 0.65]), _xx([0.4, 0.6]))
    assert p.tolist() == [1] and t.tolist() == [0] and p.dtype == torch.int64
    # same spans: the more confident query wins (class cost −4·p_fg)
    p, _ = _match(
        _xx([0.4, 0.6], [0.4, 0.6]), _xx([0.4, 0.6]), torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    )
    assert p.tolist() == [1]


def test_matcher_beats_greedy():
    # cost 10·L1(cw) − gIoU (equal logits), worked by hand:
    #   pred [0.1,0.3]: [3.2, 9.5]   pred [0.2,0.7]: [3.1, 3.5]   pred [0.0,0.2]: [4.33, 10.6]
    # greedy takes 3.1 (pred 1 -> tgt 0) and is left with 9.5: 12.6. Optimum: 3.2 + 3.5 = 6.7.
    p, t = _match(_xx([0.1, 0.3], [0.2, 0.7], [0.0, 0.2]), _xx([0.4, 0.6], [0.3, 1.0]))
    assert dict(zip(p.tolist(), t.tolist())) == {0: 0, 1: 1}


def test_matcher_handles_windows_without_targets():
    out = {"pred_logits": torch.zeros(3, 5, 2), "pred_spans": torch.rand(3, 5, 2)}
    tgts = [
        {"spans": torch.zeros(0, 2)},
        {"spans": torch.tensor([[0.5, 0.2]])},
        {"spans": torch.zeros(0, 2)},
    ]
    m = HungarianMatcher()(out, tgts)
    assert [len(p) for p, _ in m] == [0, 1, 0]
    assert all(len(p) == 0 for p, _ in HungarianMatcher()(out, [{"spans": torch.zeros(0, 2)}] * 3))


# -- criterion ------------------------------------------------------------------------


def _batch(with_gt=(True, False)):
    """Decoder + heads outputs for B windows of 10 frames, and matching targets."""
    B, T = len(with_gt), 10
    torch.manual_seed(1)
    dec = GroundingDecoder(GroundingDecoderConfig.tiny())
    span, conf = SpanHead(H), ConfidenceHead(H)
    memory, mask = torch.randn(B, T, H), torch.ones(B, T, dtype=torch.bool)
    out = dec(memory, mask)
    out.update(span(memory, mask))
    out.update(conf(torch.randn(B, H), memory, mask))
    out["saliency"] = memory.sum(-1)
    out["retrieval_logit_matrix"] = torch.randn(B, B, requires_grad=True)
    gt = [{"spans": torch.tensor([[0.45, 0.3]]) if g else torch.zeros(0, 2)} for g in with_gt]
    targets = {
        "span_labels": gt,
        "pos_idx": torch.full((B,), 4),
        "neg_idx": torch.full((B,), 8),
        "saliency_valid": torch.tensor(with_gt),
        "start_idx": torch.tensor([3 if g else -1 for g in with_gt]),
        "end_idx": torch.tensor([5 if g else -1 for g in with_gt]),
        "present": torch.tensor(with_gt, dtype=torch.float32),
    }
    return dec, out, targets


def test_criterion_finite_with_and_without_gt_and_gradients_flow():
    for with_gt in [(True, False), (False, False), (True, True)]:
        dec, out, targets = _batch(with_gt)
        crit = build_criterion()
        losses = crit(out, targets)
        expected = {
            "loss_span",
            "loss_giou",
            "loss_label",
            "loss_span_0",
            "loss_giou_0",
            "loss_label_0",
            "loss_saliency",
            "loss_contrastive",
            "loss_span_start",
            "loss_span_end",
            "loss_confidence",
        }
        assert set(losses) == expected
        assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values()), losses
        crit.total(losses).backward()
        missing = [
            n
            for n, p in dec.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all()
        ]
        if any(with_gt):
            assert not missing, missing
        else:  # no moment anywhere: only the class path learns (everything is background)
            assert dec.class_head.weight.grad.abs().sum() > 0


def test_label_loss_is_plain_mean_with_eos_weight():
    crit = build_criterion(LossWeights(aux=False))
    out = {"pred_logits": torch.zeros(1, 5, 2), "pred_spans": torch.tensor([[[0.5, 0.2]] * 5])}
    losses = crit(out, {"span_labels": [{"spans": torch.tensor([[0.5, 0.2]])}]})
    # one foreground query (weight 1) + four background (weight 0.1), each CE = log 2, / 5 queries
    assert losses["loss_label"].item() == pytest.approx((1 + 4 * 0.1) * math.log(2) / 5, rel=1e-5)
    assert losses["loss_span"].item() == pytest.approx(0.0) and losses[
        "loss_giou"
    ].item() == pytest.approx(0.0)
    # a negative window: all five queries background
    losses = crit(out, {"span_labels": [{"spans": torch.zeros(0, 2)}]})
    assert losses["loss_label"].item() == pytest.approx(0.1 * math.log(2), rel=1e-5)


def test_saliency_contrastive_span_ce_and_confidence_by_hand():
    crit = build_criterion(LossWeights(aux=False))
    base = {"pred_logits": torch.zeros(3, 5, 2), "pred_spans": torch.rand(3, 5, 2)}
    gt = [{"spans": torch.tensor([[0.5, 0.2]])}] * 3
    sal = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.1, 0.3], [0.0, 9.0, 0.0]])
    logits_mat = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    start = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = {
        "span_labels": gt,
        "pos_idx": torch.tensor([0, 1, 0]),
        "neg_idx": torch.tensor([2, 2, 1]),
        "saliency_valid": torch.tensor(
            [True, True, False]
        ),  # the third violates by 9.2 but is skipped
        "start_idx": torch.tensor([0, 0, 2]),
        "end_idx": torch.tensor([0, 0, 2]),
        "present": torch.tensor([1.0, 0.0, 1.0]),
    }
    out = {
        **base,
        "saliency": sal,
        "retrieval_logit_matrix": logits_mat,
        "start_logits": start,
        "end_logits": start,
        "confidence_logit": torch.zeros(3),
    }
    losses = crit(out, targets)
    # hinges: max(0, .2 + 0 − 1) = 0 and max(0, .2 + .3 − .1) = .4; 2 · mean = .4
    assert losses["loss_saliency"].item() == pytest.approx(0.4, rel=1e-5)
    m = logits_mat / 0.07
    ref = 0.5 * (
        torch.nn.functional.cross_entropy(m, torch.arange(3))
        + torch.nn.functional.cross_entropy(m.t(), torch.arange(3))
    )
    assert losses["loss_contrastive"].item() == pytest.approx(ref.item(), rel=1e-5)
    # CE rows: log 3, −log softmax(5,0,0)[0], log 3
    ce = (2 * math.log(3) + (math.log(math.exp(5) + 2) - 5)) / 3
    assert losses["loss_span_start"].item() == pytest.approx(ce, rel=1e-5)
    assert losses["loss_confidence"].item() == pytest.approx(math.log(2), rel=1e-5)

    w = LossWeights(aux=False).weight_dict()
    total = sum(w[k] * v for k, v in losses.items())
    assert crit.total(losses).item() == pytest.approx(total.item(), rel=1e-6)
    with pytest.raises(KeyError, match="loss_mystery"):
        crit.total({"loss_mystery": torch.tensor(1.0)})


def test_loss_weights_defaults_and_validation():
    w = LossWeights()
    assert (
        w.span_l1,
        w.span_giou,
        w.label_ce,
        w.eos_coef,
        w.saliency_margin,
        w.contrastive_temperature,
    ) == (10.0, 1.0, 4.0, 0.1, 0.2, 0.07)
    with pytest.raises(ConfigError, match="eos_coef"):
        LossWeights(eos_coef=0.0)
    with pytest.raises(ConfigError, match="span_l1"):
        LossWeights(span_l1=-1.0)


# -- overfit --------------------------------------------------------------------------


def test_decoder_and_span_head_overfit_one_window():
    torch.manual_seed(0)
    T, n_valid = 20, 16
    memory = torch.randn(1, T, H)
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, :n_valid] = True
    gt_xx = torch.tensor([[0.25, 0.625]])  # frames 4..9 of 16
    start_idx, end_idx = xx_to_frame_idx(gt_xx, torch.tensor([n_valid]))
    dec = GroundingDecoder(GroundingDecoderConfig.tiny())
    head = SpanHead(H)
    crit = SetCriterion(HungarianMatcher(), LossWeights())
    targets = {
        "span_labels": [{"spans": xx_to_cw(gt_xx)}],
        "start_idx": start_idx,
        "end_idx": end_idx,
    }
    opt = torch.optim.Adam([*dec.parameters(), *head.parameters()], lr=2e-3)
    for _ in range(200):
        out = dec(memory, mask)
        out.update(head(memory, mask))
        loss = crit.total(crit(out, targets))
        opt.zero_grad()
        loss.backward()
        opt.step()

    dec.eval()
    with torch.no_grad():
        out = dec(memory, mask)
        best = out["pred_logits"].softmax(-1)[0, :, 0].argmax()
        pred_xx = cw_to_xx(out["pred_spans"][0, best : best + 1])
        assert pairwise_temporal_iou(pred_xx, gt_xx)[0][0, 0] > 0.9
        s, e, _ = decode_best_span(**head(memory, mask), video_mask=mask)
        frames_xx = frame_idx_to_xx(s, e, mask.sum(1))
        assert pairwise_temporal_iou(frames_xx, gt_xx)[0][0, 0] > 0.9


def test_contrastive_loss_does_not_push_down_the_same_sentence():
    """Samples 0 and 1 carry one sentence: their cross pairs leave the softmax, nothing else changes."""
    from groundzero.training.loop import same_sentence

    crit = build_criterion(LossWeights())
    torch.manual_seed(0)
    logits = torch.randn(3, 3)
    text = torch.randn(3, 4, 8)
    text[1] = text[0]
    mask = torch.ones(3, 4, dtype=torch.bool)
    same = same_sentence(text, mask)
    assert same.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    masked = crit.contrastive_loss(logits, same)
    # a high logit between the two copies costs nothing once masked ...
    bumped = logits.clone()
    bumped[0, 1] = bumped[1, 0] = 50.0
    assert crit.contrastive_loss(bumped, same).item() == pytest.approx(masked.item(), rel=1e-6)
    assert crit.contrastive_loss(bumped).item() > masked.item() + 1.0  # ... and a lot unmasked
    # distinct sentences: the plain RGNet loss
    assert crit.contrastive_loss(logits, torch.eye(3, dtype=torch.bool)).item() == pytest.approx(
        crit.contrastive_loss(logits).item(), rel=1e-6)
