"""Training a small SigLIP from scratch: loss, tokenizer, and an overfit-a-tiny-task run.

The synthetic task: 32x32 frames of a coloured outlined circle or filled square on
black (4 colours x 2 shapes = 8 captions), random size and position. An outlined
circle rather than a filled disc because a 2-layer, 32-wide ViT with 8x8 patches
separates "hollow vs filled" in a few epochs, while a filled disc vs a filled
square (a few corner pixels apart) needs far more steps than a unit test can spend.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from groundzero.errors import ConfigError
from groundzero.model.backbone import Backbone
from groundzero.model.identity import fingerprint_weights
from groundzero.synthetic.siglip_config import SiglipTrainConfig
from groundzero.synthetic.siglip_model import (
    image_embeddings,
    positive_mask,
    sigmoid_loss,
    text_embeddings,
)
from groundzero.synthetic.siglip_tokenizer import caption_classes, tokenize, train_tokenizer
from groundzero.synthetic.siglip_train import train_siglip

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 240), "yellow": (240, 220, 30)}
SHAPES = ("circle", "square")
CAPTIONS = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
TINY = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
        "intermediate_size": 64, "device": "cpu"}


def draw(colour: str, shape: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One uint8 (size, size, 3) frame: an outlined circle or a filled square on black."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    r = int(rng.integers(9, 14))
    cx, cy = rng.integers(r, size - r, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, outline=COLOURS[colour], width=3)
    else:
        d.rectangle(box, fill=COLOURS[colour])
    return np.asarray(im)


def shapes_dataset(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """uint8 (n, 32, 32, 3) frames and their captions, the 8 captions in turn."""
    rng = np.random.default_rng(seed)
    caps = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
    frames = np.stack([draw(c.split()[1], c.split()[2], rng) for c in caps])
    return frames, caps


@pytest.fixture
def one_thread():
    """Two tiny towers are faster on one thread, and immune to a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """800 frames, 10 epochs of batch 32 (250 steps): about 5 s on one CPU thread."""
    frames, caps = shapes_dataset(800, seed=0)
    cfg = SiglipTrainConfig(**TINY, epochs=10, batch_size=32, lr=3e-3, warmup_steps=20, seed=0)
    out = tmp_path_factory.mktemp("siglip") / "shapes"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        records: list[tuple[int, dict]] = []
        history = train_siglip(frames, caps, out, cfg, on_epoch=lambda e, r: records.append((e, r)))
    finally:
        torch.set_num_threads(before)
    return out, history, records


# ---------------------------------------------------------------- loss


def test_sigmoid_loss_hand_worked_2x2():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # cos = [[1, .6], [0, .8]]; t = 10, b = -10 -> z = [[0, -4], [-10, -2]];
    # labels [[+1, -1], [-1, +1]]; -log sigmoid(l z) = log(1 + exp(-l z)).
    want = (math.log(2) + math.log1p(math.exp(-4)) + math.log1p(math.exp(-10)) + math.log1p(math.exp(2))) / 2
    got = sigmoid_loss(x, y, math.log(10.0), -10.0)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # embeddings are L2-normalised inside: scaling them changes nothing
    assert sigmoid_loss(3 * x, 0.5 * y, torch.tensor([math.log(10.0)]), torch.tensor([-10.0])).item() \
        == pytest.approx(want, rel=1e-6)


def test_equal_captions_in_a_batch_are_positives():
    cls = torch.tensor([0, 1, 0])
    mask = positive_mask(cls)
    assert mask.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # rows 0 and 2: the same caption
    z = 10 * (x @ y.T) - 10
    labels = torch.tensor([[1, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=torch.float32)
    want = torch.log1p(torch.exp(-labels * z)).sum() / 3
    assert sigmoid_loss(x, y, math.log(10.0), -10.0, mask).item() == pytest.approx(want.item(), rel=1e-6)
    # The ideal embedding of a batch with a repeated caption — both frames on their
    # shared caption — costs almost nothing only when equal captions are positives.
    ideal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert sigmoid_loss(ideal, y, math.log(20.0), -10.0, mask).item() < 1e-3
    assert sigmoid_loss(ideal, y, math.log(20.0), -10.0).item() > 6.0  # 2 pairs at z = +10 as negatives


def test_caption_classes_follow_the_tokens(tmp_path):
    caps = ["a red circle", "A Red  circle", "a blue square", "a red circle"]
    tok = train_tokenizer(caps, tmp_path, max_len=8)
    ids, cls = caption_classes(tok, caps, 8)
    assert ids.shape == (2, 8)
    assert cls[0] == cls[1] == cls[3] != cls[2]


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_lower_cases_ends_in_eos_and_pads(tmp_path):
    from transformers import AutoTokenizer

    train_tokenizer(["a red circle", "a blue square"], tmp_path, vocab_size=64, max_len=6)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert [tok.pad_token_id, tok.unk_token_id, tok.eos_token_id] == [0, 1, 2]
    vocab = tok.get_vocab()
    ids = tokenize(tok, ["A RED zebra", "a red circle a blue square"], 6).tolist()
    assert ids[0] == [vocab["a"], vocab["red"], 1, 2, 0, 0]
    assert ids[1][-1] == 2 and len(ids[1]) == 6  # truncated, </s> kept


def test_tokenizer_without_eos_matches_tiny_py(tmp_path, tiny_model_dir):
    from groundzero.model.tiny import BASE_VOCAB

    train_tokenizer([BASE_VOCAB], tmp_path, vocab_size=512, add_eos=False)
    mine = json.loads((tmp_path / "tokenizer.json").read_text())["model"]["vocab"]
    tiny = json.loads((tiny_model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert mine == tiny


# ---------------------------------------------------------------- training


def test_loss_decreases_and_held_out_retrieval_is_learnt(trained):
    _, history, records = trained
    assert len(history["loss"]) == 10 and [e for e, _ in records] == list(range(1, 11))
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["n_train"] == 720 and history["n_val"] == 80 and history["n_val_captions"] == 8
    assert history["val_accuracy"][-1] >= 0.9  # chance: 1/8
    assert history["device"] == "cpu" and history["lr"][-1] < 1e-6  # cosine ends at 0


def test_checkpoint_loads_through_backbone(trained):
    out, _, _ = trained
    assert json.loads((out / "siglip_train.json").read_text())["config"]["hidden_size"] == 32
    b = Backbone(str(out), device="cpu")
    assert b.embed_dim == 32 and b.image_size == 32 and b.text_max_len == 16
    frames, caps = shapes_dataset(40, seed=123)  # fresh frames, never seen in training
    img = b.embed_images(frames)
    txt = b.embed_texts(CAPTIONS)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    red_circle = frames[caps.index("a red circle")][None]
    sims = b.embed_images(red_circle) @ txt.T  # (1, 8)
    assert CAPTIONS[int(sims.argmax())] == "a red circle"
    assert (b.embed_texts(["a red circle"]) @ b.embed_images(red_circle).T).item() == pytest.approx(sims.max(), abs=1e-5)
    acc = np.mean([CAPTIONS[i] == c for i, c in zip((img @ txt.T).argmax(1), caps)])
    assert acc >= 0.9


def test_training_inputs_match_backbone_inference(trained):
    """Images and captions are preprocessed in training exactly as Backbone does at inference."""
    from transformers import AutoTokenizer, SiglipModel

    out, _, _ = trained
    model = SiglipModel.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    b = Backbone(str(out), device="cpu")
    frames, _ = shapes_dataset(4, seed=7)
    with torch.no_grad():
        img = torch.nn.functional.normalize(image_embeddings(model, torch.from_numpy(frames)), dim=-1)
        txt = torch.nn.functional.normalize(text_embeddings(model, tokenize(tok, ["A Red Circle"], 16)), dim=-1)
    np.testing.assert_allclose(img.numpy(), b.embed_images(frames), atol=1e-6)
    np.testing.assert_allclose(txt.numpy(), b.embed_texts(["a red circle"]), atol=1e-6)


def test_training_is_deterministic_for_a_seed(tmp_path, one_thread):
    frames, caps = shapes_dataset(48, seed=1)
    cfg = SiglipTrainConfig(**TINY, epochs=2, batch_size=16, warmup_steps=2, seed=3)
    h1 = train_siglip(frames, caps, tmp_path / "a", cfg)
    h2 = train_siglip(frames, caps, tmp_path / "b", cfg)
    assert h1["loss"] == h2["loss"] and h1["val_accuracy"] == h2["val_accuracy"]
    assert fingerprint_weights(tmp_path / "a") == fingerprint_weights(tmp_path / "b")
    h3 = train_siglip(frames, caps, tmp_path / "c", SiglipTrainConfig(**{**TINY, "seed": 4}, epochs=2,
                                                                       batch_size=16, warmup_steps=2))
    assert fingerprint_weights(tmp_path / "c") != fingerprint_weights(tmp_path / "a")
    assert h3["n_val"] == 5


def test_bad_inputs_are_clear_errors(tmp_path):
    frames, caps = shapes_dataset(8, seed=0)
    with pytest.raises(ConfigError, match=r"uint8 \(N, 64, 64, 3\)"):
        train_siglip(frames, caps, tmp_path, SiglipTrainConfig())
    with pytest.raises(ConfigError, match="one caption per item"):
        train_siglip(frames, caps[:-1], tmp_path, SiglipTrainConfig(**TINY))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        SiglipTrainConfig(image_size=30).validate()
    with pytest.raises(ConfigError, match="val_fraction"):
        SiglipTrainConfig(val_fraction=1.0).validate()


def test_default_config_is_the_demo_size():
    cfg = SiglipTrainConfig().validate()
    assert (cfg.image_size, cfg.patch_size, cfg.hidden_size, cfg.num_layers, cfg.num_heads) == (64, 8, 128, 4, 4)
    assert cfg.init_logit_scale == pytest.approx(math.log(10)) and cfg.init_logit_bias == -10


def test_groups_are_held_out_and_shuffled_whole(tmp_path, one_thread):
    """Contrast pairs (equal group ids) stay together: both in training or both held out, adjacent."""
    from groundzero.synthetic.siglip_train import _gather, _split, _units

    groups = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5, 6])
    units = _units(len(groups), groups)
    assert [u.tolist() for u in units] == [[0, 1], [2], [3, 4], [5], [6, 7], [8], [9]]
    gen = torch.Generator().manual_seed(0)
    train_u, val_u = _split(len(units), 0.3, gen)
    order = _gather(units, train_u[torch.randperm(len(train_u), generator=gen)]).tolist()
    held = set(_gather(units, val_u).tolist())
    for a, b in ((0, 1), (3, 4), (6, 7)):
        assert (a in held) == (b in held)
        if a in order:
            assert abs(order.index(a) - order.index(b)) == 1
    assert sorted(order + sorted(held)) == list(range(10))
    # without groups every image is its own unit: the same split and order as before groups existed
    assert [u.tolist() for u in _units(3, None)] == [[0], [1], [2]]

    frames, caps = shapes_dataset(24, seed=1)
    cfg = SiglipTrainConfig(**TINY, epochs=1, batch_size=8, warmup_steps=1, seed=3)
    pairs = np.arange(24) // 2
    assert train_siglip(frames, caps, tmp_path / "g", cfg, groups=pairs)["n_val"] % 2 == 0
    with pytest.raises(ConfigError, match="non-decreasing"):
        train_siglip(frames, caps, tmp_path / "bad", cfg, groups=pairs[::-1].copy())


def mover_clips(n: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """n/2 forward clips and their time reversals: a red or blue square at x_a, then at x_b.

    Captions "a red square moving left" / "... right"; the reversal of a clip is the same
    two frames swapped with the other direction, in the same group. Only the order of the
    frames tells the two captions of a group apart.
    Returns images (n, 32, 32, 3), captions (n,), groups (n,), items (n, 2).
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, captions, groups, items = [], [], [], []
    for g in range(n // 2):
        colour = ("red", "blue")[g % 2]
        y = int(rng.integers(4, 20))
        xa, xb = rng.choice(np.arange(2, 22), size=2, replace=False)
        for x in (xa, xb):
            im = Image.new("RGB", (32, 32))
            ImageDraw.Draw(im).rectangle((int(x), y, int(x) + 9, y + 9), fill=COLOURS[colour])
            images.append(np.asarray(im))
        a, b = 2 * g, 2 * g + 1
        fwd, back = ("right", "left") if xb > xa else ("left", "right")
        captions += [f"a {colour} square moving {fwd}", f"a {colour} square moving {back}"]
        groups += [g, g]
        items += [(a, b), (b, a)]
    return np.stack(images), captions, np.array(groups), np.array(items)


def test_clips_teach_the_text_tower_which_way_a_shape_moved(tmp_path, one_thread):
    """Two-frame items: the learned frame-change term lets captions that differ only in direction separate.

    With clips and their reversals, held-out clips score their own direction above the
    reversed one (checked after training), and the text tower's pooled embeddings of
    "moving left" and "moving right" move apart. A run that ignored frame order (a plain
    mean of the two frames) would tie every reversed pair and score 0 here.
    """
    images, caps, groups, items = mover_clips(480, seed=2)
    cfg = SiglipTrainConfig(**TINY, epochs=14, batch_size=32, lr=3e-3, warmup_steps=10, seed=0)
    history = train_siglip(images, caps, tmp_path / "clips", cfg, groups=groups, items=items)
    assert history["n_clips"] == 480 and history["val_accuracy"][-1] is None  # no single frames
    assert history["val_reverse_accuracy"][-1] >= 0.85, history["val_reverse_accuracy"]
    b = Backbone(str(tmp_path / "clips"), device="cpu")
    left, right = b.embed_texts(["a red square moving left", "a red square moving right"])
    assert float(left @ right) < 0.9
    from safetensors.torch import load_file

    from groundzero.synthetic.clip_check import CLIP_ADAPTER_FILE, embed_clips, load_clip_adapter

    assert load_file(str(tmp_path / "clips" / CLIP_ADAPTER_FILE))["weight"].abs().sum() > 0  # A was trained
    # search's clip embedding (clip_check.embed_clips, numpy) is the one training used (torch)
    from groundzero.synthetic.siglip_model import item_embeddings

    adapter = torch.nn.Linear(32, 32, bias=False)
    adapter.weight.data = load_file(str(tmp_path / "clips" / CLIP_ADAPTER_FILE))["weight"]
    with torch.inference_mode():
        trained = item_embeddings(b.model, adapter, torch.from_numpy(images), torch.from_numpy(items[:6]))
    x = b.embed_images(images[items[:6].reshape(-1)]).reshape(6, 2, -1)
    np.testing.assert_allclose(embed_clips(load_clip_adapter(b.model_dir, 32), x[:, 0], x[:, 1]),
                               torch.nn.functional.normalize(trained, dim=-1).numpy(), atol=1e-5)
    # items must index the images, one caption per item
    with pytest.raises(ConfigError, match="indices into the 480 images"):
        train_siglip(images, caps, tmp_path / "bad", cfg, groups=groups, items=items + 1)
    with pytest.raises(ConfigError, match="one caption per item"):
        train_siglip(images, caps[:-1], tmp_path / "bad", cfg, groups=groups, items=items)


# ---------------------------------------------------------------- position embeddings


def test_sincos_table_layout():
    """Row r * grid + c is patch (row r, column c): sin/cos of the column, then of the row."""
    from groundzero.synthetic.siglip_model import sincos_2d

    t = sincos_2d(4, 16)  # omega = 10000^(-i/4), i = 0..3
    assert t.shape == (16, 16)
    omega = 10000.0 ** (-torch.arange(4.0) / 4)
    r, c = 2, 3
    row = t[r * 4 + c]
    assert torch.allclose(row[:4], torch.sin(c * omega)) and torch.allclose(row[4:8], torch.cos(c * omega))
    assert torch.allclose(row[8:12], torch.sin(r * omega)) and torch.allclose(row[12:], torch.cos(r * omega))
    assert len(torch.unique(t, dim=0)) == 16  # every patch has its own code


def test_vision_position_init_is_the_table_or_transformers_default():
    from groundzero.synthetic.siglip_model import build_siglip, sincos_2d

    table = build_siglip(SiglipTrainConfig(**TINY), vocab_size=16).vision_model.embeddings.position_embedding
    assert table.weight.requires_grad  # a start, then learned
    assert torch.equal(table.weight.detach(), sincos_2d(4, 32))
    rand = build_siglip(SiglipTrainConfig(**TINY, vision_pos_init="random"), vocab_size=16)
    assert not torch.allclose(rand.vision_model.embeddings.position_embedding.weight.detach(), sincos_2d(4, 32),
                              atol=0.1)
    with pytest.raises(ConfigError, match="vision_pos_init"):
        SiglipTrainConfig(vision_pos_init="learned").validate()
    with pytest.raises(ConfigError, match="multiple of 4"):
        SiglipTrainConfig(hidden_size=30, num_heads=3, vision_pos_init="sincos-2d").validate()


def x_probe_r2_at_init(init: str, n: int = 300, train: int = 200) -> float:
    """R² of a linear probe of a square's x position from an *untrained* demo-size SigLIP's image embeddings."""
    from groundzero.synthetic.siglip_model import build_siglip

    rng = np.random.default_rng(0)
    xs, ys = rng.integers(0, 56, n), rng.integers(0, 56, n)
    frames = np.zeros((n, 64, 64, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, ys[i]:ys[i] + 8, xs[i]:xs[i] + 8] = COLOURS["red"]
    model = build_siglip(SiglipTrainConfig(seed=0, vision_pos_init=init), vocab_size=16).eval()
    with torch.no_grad():
        emb = torch.nn.functional.normalize(image_embeddings(model, torch.from_numpy(frames)), dim=-1).numpy()
    X = np.c_[emb, np.ones(n)]
    w = np.linalg.lstsq(X[:train], xs[:train], rcond=None)[0]
    resid = X[train:] @ w - xs[train:]
    return 1.0 - float((resid**2).mean() / xs[train:].var())


def test_sincos_start_makes_position_linearly_readable(one_thread):
    """Why the demo backbone starts from the table: before any training its embeddings already say where a
    shape is (R² 0.98 here), while transformers' random start does not (-0.27), and 846 steps of sigmoid
    loss on the demo captions do not teach it (bench/backbone_probe.py: -0.045 against 0.83)."""
    assert x_probe_r2_at_init("sincos-2d") > 0.9
    assert x_probe_r2_at_init("random") < 0.3
