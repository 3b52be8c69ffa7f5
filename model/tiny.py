"""Tiny SigLIP checkpoints built offline with the real transformers classes.

Used by the tests (random weights, exercised through the production loader)
and by the benchmarks (:func:`bench_siglip`: mechanics and speed, no semantics). The tokenizer is a word-level one
trained with the ``tokenizers`` library on a given vocabulary corpus, wrapped
as a ``PreTrainedTokenizerFast`` so ``AutoTokenizer.from_pretrained`` loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

#: Words every tiny tokenizer knows: enough to tokenise test queries.
BASE_VOCAB = (
    "a an the of in on at to is are and with from moving left right up down appears disappears "
    "red green blue yellow white black orange purple circle square triangle star ball box "
    "witness exhibit lecturer chain rule goal scored person walks door opens slide title "
    "background changes big small fast slow screen word text scene"
)


@dataclass(frozen=True)
class TinySiglipConfig:
    """Sizes of a tiny SigLIP dual encoder (defaults: ~0.2 M parameters)."""

    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    text_max_len: int = 16
    vocab_size: int = 512
    seed: int = 0
    #: a NaFlex checkpoint (transformers' Siglip2Model): its position grid is image_size / patch_size a
    #: side, and its processor allows this many patches a frame; 0: a fixed-resolution SigLIP
    naflex_patches: int = 0

    @classmethod
    def so400m(cls) -> TinySiglipConfig:
        """SigLIP 2 So400m's shapes (patch 14 at 384 px, 27 blocks of width 1152): random weights of the
        real size, for speed checks (``bench/gpu_check.py``); a tokenizer of the test vocabulary."""
        return cls(image_size=384, patch_size=14, hidden_size=1152, intermediate_size=4304, num_layers=27,
                   num_heads=16, text_max_len=64, seed=0)

    @classmethod
    def siglip2_base(cls) -> TinySiglipConfig:
        """SigLIP 2 base's shapes at 224 px (patch 16, 12 blocks of width 768): the CPU default's size."""
        return cls(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_layers=12,
                   num_heads=12, text_max_len=64, seed=0)

    @classmethod
    def bench(cls) -> TinySiglipConfig:
        """The benchmarks' model: 64 px images, 16 px patches, 64-d embeddings, 2 layers, seed 0."""
        return cls(image_size=64, patch_size=16, hidden_size=64, intermediate_size=128, num_layers=2,
                   num_heads=2, text_max_len=16, seed=0)


def build_tiny_siglip(out_dir: str | Path, cfg: TinySiglipConfig = TinySiglipConfig(),
                      corpus: tuple[str, ...] = (BASE_VOCAB,)) -> Path:
    """Write a random tiny SigLIP checkpoint + tokenizer to ``out_dir`` (SigLIP 2 NaFlex with
    ``cfg.naflex_patches``).

    The result is an ordinary ``save_pretrained`` directory: config.json,
    model.safetensors, tokenizer.json, tokenizer_config.json,
    preprocessor_config.json. Deterministic for a given ``cfg.seed``.
    """
    from transformers import Siglip2Config, Siglip2Model, SiglipConfig, SiglipModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast = _siglip2_tokenizer(corpus, cfg) if cfg.naflex_patches else _word_tokenizer(corpus, cfg)
    vocab_size = len(fast)
    common = {"hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
              "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads}
    text_config = {**common, "vocab_size": vocab_size, "max_position_embeddings": cfg.text_max_len,
                   "projection_size": cfg.hidden_size, "pad_token_id": fast.pad_token_id, "bos_token_id": None,
                   "eos_token_id": fast.eos_token_id}
    norm = {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    if cfg.naflex_patches:
        config = Siglip2Config(text_config=text_config, vision_config={
            **common, "num_patches": (cfg.image_size // cfg.patch_size) ** 2, "patch_size": cfg.patch_size})
        model_cls = Siglip2Model
        processor = {"image_processor_type": "Siglip2ImageProcessor", "do_resize": True, "resample": 2,
                     "patch_size": cfg.patch_size, "max_num_patches": cfg.naflex_patches, **norm}
    else:
        config = SiglipConfig(text_config=text_config, vision_config={
            **common, "image_size": cfg.image_size, "patch_size": cfg.patch_size})
        model_cls = SiglipModel
        processor = {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                     "size": {"height": cfg.image_size, "width": cfg.image_size}, "resample": 3, **norm}
    torch.manual_seed(cfg.seed)
    model = model_cls(config).eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return out


def _word_tokenizer(corpus: tuple[str, ...], cfg: TinySiglipConfig):
    """A lower-casing word-level tokenizer of ``corpus``' words, as transformers' generic fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(corpus), trainers.WordLevelTrainer(vocab_size=cfg.vocab_size,
                                                                    special_tokens=["<pad>", "<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                                   model_max_length=cfg.text_max_len)


def _siglip2_tokenizer(corpus: tuple[str, ...], cfg: TinySiglipConfig):
    """A small BPE vocabulary of ``corpus``' words in transformers' ``Siglip2Tokenizer`` (Gemma's
    pipeline, lower-casing), the class transformers loads for every ``siglip2`` checkpoint."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    words = ["\u2581" + w for text in corpus for w in text.split()]
    tok.train_from_iterator(words, trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], show_progress=False))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return Siglip2Tokenizer(vocab=model["vocab"], merges=merges, model_max_length=cfg.text_max_len)


def bench_siglip(workdir: str | Path) -> Path:
    """``workdir/siglip-tiny-random``: the benchmarks' random tiny SigLIP (:meth:`TinySiglipConfig.bench`),
    built there on first use. Deterministic, so every build has the same weights fingerprint."""
    out = Path(workdir).expanduser() / "siglip-tiny-random"
    if not (out / "model.safetensors").is_file():
        build_tiny_siglip(out, TinySiglipConfig.bench())
    return out
