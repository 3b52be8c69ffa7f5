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
