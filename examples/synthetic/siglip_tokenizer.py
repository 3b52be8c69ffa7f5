"""The caption tokenizer of a from-scratch SigLIP: word-level, lower-casing, trained on the captions.

Captions are tokenised exactly as ``Backbone._tokenize`` does (lower-cased,
``padding="max_length"``, only ``input_ids`` passed), so training and inference see
the same padded sequence. :func:`caption_classes` finds the distinct captions as the
model sees them (equal token ids), which the loss needs to treat repeats as positives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from groundzero.synthetic.siglip_config import SPECIAL_TOKENS


def train_tokenizer(texts: list[str], out_dir: str | Path | None, vocab_size: int = 1024,
                    max_len: int = 16, add_eos: bool = True):
    """Train a lower-casing word-level tokenizer on ``texts`` and save it to ``out_dir``.

    Word-level rather than BPE: the captions come from a closed synthetic
    vocabulary, so one token per word wastes no positions of the 16, and a query
    word is either known exactly or ``<unk>`` — never split into pieces whose
    embeddings the model never learnt in that combination. It is also what
    ``model/tiny.py`` builds (``add_eos=False`` reproduces its vocabulary), so
    tiny.py could call this instead of its inline copy.

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``</s>`` 2, then words by decreasing count (ties
    alphabetical), at most ``vocab_size`` entries in all. With ``add_eos`` every
    sequence ends in ``</s>`` (kept under truncation), as SigLIP's own tokenizers do.

    Returns:
        a ``PreTrainedTokenizerFast`` (``AutoTokenizer.from_pretrained(out_dir)`` loads it).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pad, unk, eos = SPECIAL_TOKENS
    tok = Tokenizer(models.WordLevel(unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS)))
    if add_eos:
        eos_id = tok.token_to_id(eos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, eos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token=unk, eos_token=eos,
                                   model_max_length=max_len)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(out_dir)
    return fast


def tokenize(tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    """Token ids exactly as ``Backbone._tokenize`` makes them: int64 (N, max_len)."""
    enc = tokenizer([t.lower() for t in texts], padding="max_length", truncation=True,
                    max_length=max_len, return_tensors="pt")
    return enc["input_ids"]


def caption_classes(tokenizer, captions: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct captions, as the model sees them (equal token ids = equal caption).

    Returns:
        ids: int64 (C, max_len), one row per distinct caption.
        cls: int64 (N,), index into ``ids`` of each caption.
    """
    strings, str_cls = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)
    ids, inv = torch.unique(tokenize(tokenizer, list(strings), max_len), dim=0, return_inverse=True)
    return ids, inv[torch.from_numpy(str_cls.reshape(-1))]
