import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.data.spans import format_timestamp, nms, temporal_iou
from groundzero.errors import ConfigError


def test_temporal_iou_hand_worked():
    a = np.array([[0.0, 10.0], [5.0, 5.0]])
    b = np.array([[5.0, 15.0], [0.0, 10.0], [20.0, 30.0]])
    iou = temporal_iou(a, b)
    np.testing.assert_allclose(iou[0], [5 / 15, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])  # zero-length span: no union area counted


def test_nms_keeps_best_and_suppresses_overlaps_above_threshold():
    spans = np.array([[0, 10], [1, 11], [20, 30], [5, 15]], float)
    keep = nms(spans, np.array([0.9, 0.8, 0.7, 0.6]), 0.5)
    # [1,11] has IoU 9/11 with [0,10]: gone; [5,15] has IoU 1/3: kept
    assert keep.tolist() == [0, 2, 3]


def test_format_timestamp():
    assert format_timestamp(0) == "00:00:00.0"
    assert format_timestamp(59.96) == "00:01:00.0"
    assert format_timestamp(3725.26) == "01:02:05.3"


def test_windows_cover_every_frame_with_full_length_windows():
    cfg = ProposalConfig(48, 24)
    for T in (1, 47, 48, 49, 100, 1000):
        w = make_windows(T, 1.0, cfg)
        covered = np.zeros(T, bool)
        for s, e in w:
            covered[s:e] = True
            assert e - s == min(48, T)
        assert covered.all() and w[0, 0] == 0 and w[-1, 1] == T
    assert make_windows(0, 1.0, cfg).shape == (0, 2)
    # at 2 fps the same seconds are twice the frames
    assert make_windows(200, 2.0, cfg)[:2].tolist() == [[0, 96], [48, 144]]


def test_any_moment_up_to_the_stride_lies_inside_one_window():
    w = make_windows(500, 1.0, ProposalConfig(48, 24))
    for start in range(500 - 24):
        assert any(s <= start and start + 24 <= e for s, e in w), start


def test_zero_shot_tokens_are_segment_means():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tok = zero_shot_tokens(emb, np.array([[0, 10], [8, 10]]), 2)
    assert tok.shape == (2, 2, 4)
    expect = emb[0:5].mean(0)
    np.testing.assert_allclose(tok[0, 0], expect / np.linalg.norm(expect), atol=1e-6)
    # a 2-frame window split in 2 tokens: one frame each
    np.testing.assert_allclose(tok[1, 1], emb[9], atol=1e-6)


def test_proposal_config_validation_names_the_field():
    with pytest.raises(ConfigError, match=r"stride_sec must be in \(0, window_sec=48") as e:
        ProposalConfig(48, 60).validate()
    assert e.value.field == "stride_sec"
    with pytest.raises(ConfigError, match="window_sec") as e:
        ProposalConfig(0, 1).validate()
    assert e.value.field == "window_sec"
