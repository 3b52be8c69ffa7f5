import torch

from groundzero.model.backbone import Backbone
from groundzero.model.lora import LoraConfig, add_vision_lora


def test_lora_adapts_only_the_last_vision_blocks(tiny_model_dir):
    model = Backbone(str(tiny_model_dir), device="cpu").model
    n_layers = model.config.vision_config.num_hidden_layers  # 2 in the tiny model
    peft_model = add_vision_lora(model, LoraConfig(r=4, n_blocks=1))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("vision_model.encoder.layers" in n and "lora_" in n for n in trainable)
    assert all(f"layers.{n_layers - 1}." in n for n in trainable)
    assert not any("text_model" in n for n in trainable)
    # q and v of one block, A and B each: 4 tensors; r*(in+out) params per adapted projection
    hidden = model.config.vision_config.hidden_size
    assert sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad) == 2 * 4 * (2 * hidden)
    x = torch.randn(2, 3, 32, 32)
    out = peft_model.get_image_features(pixel_values=x)
    loss = (out if torch.is_tensor(out) else out.pooler_output).sum()
    loss.backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if p.requires_grad)


def test_merge_is_computed_in_float32_then_rounded_once(tiny_model_dir, tmp_path):
    """A bf16 backbone's merged weights equal the fp32 merge rounded to bf16 (one rounding)."""
    from safetensors.torch import load_file

    from groundzero.model.lora import LoraImageEncoder

    backbone = Backbone(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)
    enc = LoraImageEncoder(backbone, LoraConfig(r=4, n_blocks=1))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in enc.peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.02)  # a small, non-zero update (B starts at zero)
    layer = enc.peft_model.base_model.model.vision_model.encoder.layers[-1].self_attn.q_proj
    w, a, b = (t.detach().float() for t in (layer.base_layer.weight, layer.lora_A["default"].weight,
                                            layer.lora_B["default"].weight))
    want = (w + layer.scaling["default"] * b @ a).to(torch.bfloat16)  # the fp32 merge, rounded once
    enc.save_merged(tmp_path / "merged")
    n_layers = backbone.model.config.vision_config.num_hidden_layers
    got = load_file(str(tmp_path / "merged" / "model.safetensors"))[
        f"vision_model.encoder.layers.{n_layers - 1}.self_attn.q_proj.weight"]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, want)
    assert not torch.equal(got, (w.to(torch.bfloat16) + (layer.scaling["default"] * b @ a).to(torch.bfloat16)))
