"""The from-scratch SigLIP model: its construction, embeddings, and SigLIP's pairwise sigmoid loss.

:func:`build_siglip` builds the real transformers ``SiglipModel`` from a small config
(:class:`~groundzero.synthetic.siglip_config.SiglipTrainConfig`), its vision position
embeddings started from :func:`sincos_2d`. Images are normalised exactly as
``Backbone.image_features`` does ((x / 255 - 0.5) / 0.5; :func:`normalise_frames`).
:func:`item_embeddings` embeds single frames and two-frame clips (with the clip
adapter A); :func:`sigmoid_loss` is the loss of Zhai et al. 2023.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from groundzero.model.backbone import pooled_output
from groundzero.synthetic.siglip_config import IMAGE_MEAN, IMAGE_STD, SiglipTrainConfig

# ---------------------------------------------------------------- model


def sincos_2d(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table of a ``grid x grid`` patch grid: (grid², dim).

    Row ``r * grid + c`` is patch (row r, column c) in the order SigLIP's patch
    embedding flattens them. Columns: [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)] with
    ω_i = temperature^(-i / (dim / 4)), i = 0…dim/4 - 1 (MAE's table; ``dim % 4 == 0``).
    """
    r, c = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                          indexing="ij")
    omega = temperature ** (-torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))  # (dim/4,)
    oc, orow = c.reshape(-1, 1) * omega, r.reshape(-1, 1) * omega  # (grid², dim/4) each
    return torch.cat([oc.sin(), oc.cos(), orow.sin(), orow.cos()], dim=1)


def build_siglip(cfg: SiglipTrainConfig, vocab_size: int, eos_token_id: int = 2):
    """A freshly initialised ``SiglipModel`` with the paper's logit scale/bias init.

    The vision position embeddings start as :func:`sincos_2d` (``cfg.vision_pos_init``)
    and stay learnable: same architecture and checkpoint format, another init. The
    fixed table gives every patch its place from the first step, so the tower can
    learn where a shape is, which a temporal model needs to tell "moving left" from
    "moving right"; ``cfg.vision_pos_init="random"`` keeps transformers' random init
    (``experiments/backbone_probe.py`` compares the two with a linear probe of a
    mover's x position; figures in docs/RESULTS.md).
    """
    from transformers import SiglipConfig, SiglipModel

    common = {"hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
              "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads}
    config = SiglipConfig(
        text_config=dict(common, vocab_size=vocab_size, max_position_embeddings=cfg.text_max_len,
                         projection_size=cfg.hidden_size, pad_token_id=0, bos_token_id=None,
                         eos_token_id=eos_token_id),
        vision_config=dict(common, image_size=cfg.image_size, patch_size=cfg.patch_size),
    )
    torch.manual_seed(cfg.seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(cfg.init_logit_scale)
        model.logit_bias.fill_(cfg.init_logit_bias)
        if cfg.vision_pos_init == "sincos-2d":
            table = model.vision_model.embeddings.position_embedding.weight  # (grid², hidden)
            table.copy_(sincos_2d(cfg.image_size // cfg.patch_size, cfg.hidden_size))
    return model


def preprocessor_config(image_size: int) -> dict:
    """The ``preprocessor_config.json`` fields tiny.py writes (Backbone reads mean/std)."""
    return {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True, "size": {"height": image_size, "width": image_size},
        "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(IMAGE_MEAN), "image_std": list(IMAGE_STD),
    }


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S), the same ops as ``Backbone.image_features``."""
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    x = frames.permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, S, S) in [0, 1]
    return (x - mean) / std


def image_embeddings(model, frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) on the model's device -> pooled image features (N, D), unnormalised."""
    return pooled_output(model.get_image_features(pixel_values=normalise_frames(frames)))


def text_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    """int64 (N, L) -> pooled text features (N, D), unnormalised; no attention mask, as Backbone."""
    return pooled_output(model.get_text_features(input_ids=input_ids))


def item_embeddings(model, adapter: torch.nn.Module | None, frames: torch.Tensor,
                    pairs: torch.Tensor) -> torch.Tensor:
    """Embed items: int64 (B, 2) frame indices into uint8 (N, S, S, 3) ``frames`` -> (B, D).

    Without an adapter (no clips) the image features of ``pairs[:, 0]``, unnormalised;
    with one, ``(x_a + x_b) / 2 + A (x_b - x_a)`` of the L2-normalised features (see
    :func:`~groundzero.synthetic.siglip_train.train_siglip`). Each distinct frame of the
    batch goes through the tower once.
    """
    if adapter is None:
        return image_embeddings(model, frames[pairs[:, 0]])
    uniq, inv = torch.unique(pairs.reshape(-1), return_inverse=True)
    x = F.normalize(image_embeddings(model, frames[uniq]).float(), dim=-1)[inv].view(len(pairs), 2, -1)
    return (x[:, 0] + x[:, 1]) / 2 + adapter(x[:, 1] - x[:, 0])


# ---------------------------------------------------------------- loss


def sigmoid_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                 logit_bias: torch.Tensor | float, positives: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1).

    z_ij = t · <x_i, y_j> + b with t = exp(logit_scale) and x, y L2-normalised here;
    label l_ij = +1 for a positive pair, -1 otherwise;
    loss = -(1 / B) · Σ_ij log σ(l_ij · z_ij)  (sum over all B² pairs divided by B).

    Args:
        img_emb: (B, D) image features (normalised here).
        txt_emb: (B, D) text features, row i the caption of image i (normalised here).
        logit_scale: log t, as stored in ``SiglipModel.logit_scale``.
        logit_bias: b, as ``SiglipModel.logit_bias``.
        positives: bool (B, B), True where image i and caption j match; default the
            diagonal. Pass :func:`positive_mask` of the caption classes so that equal
            captions in one batch count as positives.
    Returns:
        scalar float32 loss.
    """
    x = F.normalize(img_emb.float(), dim=-1)
    y = F.normalize(txt_emb.float(), dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=x.device).exp()
    logits = scale * x @ y.T + torch.as_tensor(logit_bias, dtype=torch.float32, device=x.device)  # (B, B)
    if positives is None:
        positives = torch.eye(len(x), dtype=torch.bool, device=x.device)
    labels = positives.float() * 2 - 1  # (B, B): +1 / -1
    return -F.logsigmoid(labels * logits).sum() / len(x)


def positive_mask(caption_cls: torch.Tensor) -> torch.Tensor:
    """int64 (B,) caption classes -> bool (B, B), True where the two captions are equal."""
    return caption_cls[:, None] == caption_cls[None, :]
