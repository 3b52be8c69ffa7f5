"""RG-Encoder building blocks: shapes, padding invariance, the sampler's gradient,
the sparse mask, the temporal receptive field and the context-token loss.

Tiny configs, CPU, seeded; the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

from groundzero.errors import ConfigError
from groundzero.model.context_tokens import ContextTokenPooler, info_nce
from groundzero.model.rg_encoder import (
    PADDED_SALIENCY,
    RetrievalAttention,
    RGEncoder,
    RGEncoderConfig,
)
from groundzero.model.sampler import GumbelSampler, sparse_attention_mask
from groundzero.model.temporal import TemporalContext, fractional_position_encoding

DV, DT = 24, 20
V_LENS, T_LENS = (7, 4, 2), (5, 3, 1)


def lengths_to_mask(lengths: tuple[int, ...], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, max(V_LENS), DV, generator=g)
    text = torch.randn(3, max(T_LENS), DT, generator=g)
    return video, lengths_to_mask(V_LENS, max(V_LENS)), text, lengths_to_mask(T_LENS, max(T_LENS))


@pytest.fixture()
def encoder():
    torch.manual_seed(0)
    return RGEncoder(RGEncoderConfig.tiny(video_dim=DV, text_dim=DT)).eval()


# ---------------------------------------------------------------- RG-Encoder


def test_encoder_output_shapes_with_padding(encoder, batch):
    video, vmask, text, tmask = batch
    out = encoder(video, vmask, text, tmask)
    b, t, d = 3, max(V_LENS), encoder.cfg.hidden
    expected = {
        "retrieval_logit": (b,),
        "saliency": (b, t),
        "sampler_logits": (b, t),
        "gate": (b, t),
        "memory": (b, t, d),
        "memory_pos": (b, t, d),
        "retrieval_token": (b, d),
        "video_mask": (b, t),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert (out["saliency"][~vmask] == PADDED_SALIENCY).all()
    assert (out["gate"][~vmask] == 0).all() and (out["memory"][~vmask] == 0).all()
    assert all(torch.isfinite(v.float()).all() for v in out.values())


def test_padding_does_not_change_valid_outputs(encoder, batch):
    video, vmask, text, tmask = batch
    # garbage in the padded slots must not matter either
    video = video.masked_fill(~vmask[..., None], 1e3)
    text = text.masked_fill(~tmask[..., None], float("nan"))
    with torch.no_grad():
        out = encoder(video, vmask, text, tmask)
        for i, (tv, tt) in enumerate(zip(V_LENS, T_LENS)):
            one = encoder(
                video[i : i + 1, :tv],
                vmask[i : i + 1, :tv],
                text[i : i + 1, :tt],
                tmask[i : i + 1, :tt],
            )
            for key in ("saliency", "sampler_logits", "gate", "memory"):
                torch.testing.assert_close(out[key][i, :tv], one[key][0], atol=1e-5, rtol=0)
            for key in ("retrieval_logit", "retrieval_token"):
                torch.testing.assert_close(out[key][i], one[key][0], atol=1e-5, rtol=0)


def test_encoder_without_temporal_context_and_backward(batch):
    torch.manual_seed(0)
    cfg = RGEncoderConfig(
        video_dim=DV,
        text_dim=DT,
        hidden=32,
        heads=4,
        ffn=64,
        t2v_layers=2,
        retrieval_layers=2,
        temporal_context=False,
    )
    enc = RGEncoder(cfg).train()
    out = enc(*batch)
    loss = out["retrieval_logit"].sum() + out["saliency"][batch[1]].sum()
    loss.backward()
    assert enc.sampler.proj.weight.grad is not None  # reaches the sampler through P = F_c + G·R
    assert enc.retrieval.token.grad.abs().sum() > 0


def test_no_nan_when_every_frame_is_irrelevant(encoder, batch):
    with torch.no_grad():
        encoder.sampler.proj.weight.zero_()
        encoder.sampler.proj.bias.fill_(-100.0)
    for train in (False, True):
        encoder.train(train)
        out = encoder(*batch)
        assert (out["gate"] == 0).all()
        assert all(torch.isfinite(v.float()).all() for v in out.values())


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="hidden=30"):
        RGEncoderConfig(video_dim=8, text_dim=8, hidden=30, heads=4)
    with pytest.raises(ConfigError, match="tau"):
        RGEncoderConfig(video_dim=8, text_dim=8, tau=0.0)


def test_empty_query_is_a_clear_error(encoder, batch):
    video, vmask, text, tmask = batch
    with pytest.raises(ConfigError, match="at least one valid word"):
        encoder(video, vmask, text, torch.zeros_like(tmask))


# ---------------------------------------------------------------- sampler and mask


def test_sampler_straight_through_gradient_and_eval_gate():
    torch.manual_seed(0)
    sampler = GumbelSampler(16, tau=0.3)
    x = torch.randn(2, 9, 16)
    mask = lengths_to_mask((9, 5), 9)

    sampler.train()
    logits, gate = sampler(x, mask)
    assert set(gate.detach().unique().tolist()) <= {0.0, 1.0}
    gate.sum().backward()
    assert sampler.proj.weight.grad is not None and sampler.proj.weight.grad.abs().sum() > 0

    sampler.eval()
    logits, gate = sampler(x, mask)
    assert torch.equal(gate, ((logits >= 0) & mask).float())
    assert (gate[~mask] == 0).all()


def test_sparse_mask_layout():
    gate = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    m = sparse_attention_mask(gate, valid)  # (B, 1+T, 1+T), True = blocked
    assert m.shape == (2, 5, 5) and m.dtype == torch.bool
    assert not m[:, :, 0].any()  # R is always a key
    assert not m.diagonal(dim1=1, dim2=2).any()  # diagonal always open: no empty row
    off_diag = ~torch.eye(5, dtype=torch.bool)
    # key columns: R, frame0 (relevant), frame1 (irrelevant), frame2 (relevant), frame3 (padded);
    # a key is blocked for every query but itself, whatever the query's own relevance
    blocked_key = torch.tensor([False, False, True, False, True])
    assert torch.equal(m[0], blocked_key[None, :] & off_diag)
    assert torch.equal(m[1], (torch.arange(5) > 0)[None, :] & off_diag)  # only R and self


def test_irrelevant_frames_are_invisible_to_others():
    torch.manual_seed(0)
    attn = RetrievalAttention(dim=16, heads=2, ffn=32, dropout=0.0, num_layers=2).eval()
    frames, pos = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    gate = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    r0, c0 = attn(frames, pos, gate, mask)

    poked = frames.clone()
    poked[0, 1] += 10.0  # an irrelevant frame
    r1, c1 = attn(poked, pos, gate, mask)
    torch.testing.assert_close(r1, r0, atol=1e-6, rtol=0)
    others = [0, 2, 3, 4, 5]
    torch.testing.assert_close(c1[0, others], c0[0, others], atol=1e-6, rtol=0)
    assert (c1[0, 1] - c0[0, 1]).abs().max() > 1e-3  # it still updates itself

    poked = frames.clone()
    poked[0, 2] += 10.0  # a relevant frame: R and the others see it
    r2, c2 = attn(poked, pos, gate, mask)
    assert (r2 - r0).abs().max() > 1e-3 and (c2[0, 0] - c0[0, 0]).abs().max() > 1e-3


# ---------------------------------------------------------------- temporal context


def test_temporal_context_receptive_field():
    torch.manual_seed(0)
    tc = TemporalContext(8, dropout=0.0).double().eval()
    assert tc.receptive_field == 61  # >= 60: the card's ~60 s at 1 fps
    x = torch.randn(1, 100, 8, dtype=torch.float64, requires_grad=True)
    out = tc(x, torch.ones(1, 100, dtype=torch.bool))
    half = (tc.receptive_field - 1) // 2  # 30 frames on each side
    probe = torch.randn(8, dtype=torch.float64)  # not .sum(): a LayerNorm output sums to a constant

    def sees_frame0(t: int) -> bool:
        (grad,) = torch.autograd.grad(out[0, t] @ probe, x, retain_graph=True)
        return bool(grad[0, 0].abs().sum() > 0)

    assert all(sees_frame0(t) for t in (0, 1, 15, half))  # frames 0..30 depend on frame 0
    assert not any(sees_frame0(t) for t in (half + 1, half + 2, 99))  # frame 31 onwards does not


def test_temporal_context_padding_invariance():
    torch.manual_seed(0)
    tc = TemporalContext(8, dropout=0.0).eval()
    x = torch.randn(2, 40, 8)
    mask = lengths_to_mask((40, 13), 40)
    x[1, 13:] = 1e4
    out = tc(x, mask)
    torch.testing.assert_close(out[1, :13], tc(x[1:, :13], mask[1:, :13])[0], atol=1e-5, rtol=0)
    assert (out[1, 13:] == 0).all()


def test_fractional_position_encoding_is_a_fraction():
    pe_int = fractional_position_encoding(4, 16)
    assert pe_int.shape == (4, 16)
    mask = lengths_to_mask((4, 8), 8)
    pe = fractional_position_encoding(mask, 16)
    assert pe.shape == (2, 8, 16)
    torch.testing.assert_close(pe[0, :4], pe_int)
    torch.testing.assert_close(pe[1, 1::2][:4], pe_int)  # frames 2,4,6,8 of 8 = frames 1..4 of 4
    assert (pe[0, 4:] == 0).all()
    # dims 0/1 are sin/cos of x = 2π·t/T: the last frame sits at 2π
    assert pe_int[-1, 0].abs() < 1e-4 and math.isclose(pe_int[-1, 1].item(), 1.0, abs_tol=1e-4)
    with pytest.raises(ConfigError, match="even"):
        fractional_position_encoding(4, 15)


# ---------------------------------------------------------------- context tokens


def test_context_tokens_are_normalised_and_mask_aware():
    torch.manual_seed(0)
    pooler = ContextTokenPooler(dim=32, k=3, hidden=16)
    frames = torch.randn(4, 10, 32)
    mask = lengths_to_mask((10, 6, 1, 3), 10)
    frames_garbage = frames.masked_fill(~mask[..., None], 1e4)
    tok = pooler(frames_garbage, mask)
    assert tok.shape == (4, 3, 32)
    torch.testing.assert_close(tok.norm(dim=-1), torch.ones(4, 3))
    torch.testing.assert_close(tok[1], pooler(frames[1:2, :6])[0], atol=1e-5, rtol=0)
    assert torch.isfinite(pooler(frames, torch.zeros_like(mask))).all()


def test_info_nce_prefers_matched_pairs():
    torch.manual_seed(0)
    pooler = ContextTokenPooler(dim=32, k=2, hidden=16)
    frames = torch.randn(8, 12, 32)
    query = frames.mean(1) + 0.1 * torch.randn(8, 32)  # each query describes its own proposal
    tokens = pooler(frames)
    matched = info_nce(tokens, query)
    shuffled = info_nce(tokens, query[torch.roll(torch.arange(8), 1)])
    assert matched < shuffled
    assert matched.ndim == 0 and torch.isfinite(matched)
    matched.backward()
    assert pooler.queries.grad is not None and pooler.queries.grad.abs().sum() > 0
