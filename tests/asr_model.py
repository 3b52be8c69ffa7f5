"""A tiny random Whisper for speech-recognition tests, built offline with the real classes.

:func:`tiny_whisper_dir` writes a transformers checkpoint (``WhisperConfig`` with d_model 64,
2 + 2 layers, the real multilingual layout of 51865 tokens) and a byte-level tokenizer built
with the ``tokenizers`` library, then converts it with CTranslate2's ``TransformersConverter``
into the directory faster-whisper (and :func:`groundzero.indexer.asr.load_asr`) loads.
Random weights: the text it produces is garbage; tests assert structure, not words.

Token layout (as OpenAI's multilingual Whisper, which faster-whisper's arithmetic relies on):
256 byte tokens and fillers up to id 50256, ``<|endoftext|>`` 50257, ``<|startoftranscript|>``,
99 language tokens, ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``,
``<|nocaptions|>``, ``<|notimestamps|>`` 50363, then the 1501 timestamp tokens
``<|0.00|>`` ... ``<|30.00|>`` that the converter appends.
"""

from __future__ import annotations

import json
from pathlib import Path

N_TEXT = 50257  #: ids below <|endoftext|>
N_TIMESTAMPS = 1501  #: <|0.00|> ... <|30.00|>
#: speech-recognition tests need a few seconds per transcription at most
TINY = {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
        "num_mel_bins": 80, "max_source_positions": 1500, "max_target_positions": 448}


#: Whisper's 99 languages (before large-v3) in its token order: ``<|en|>`` is 50259
LANGUAGES = ["en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su"]


def _languages() -> list[str]:
    assert len(LANGUAGES) == 99
    return LANGUAGES


def special_tokens() -> list[str]:
    """Whisper's special tokens in id order, from ``<|endoftext|>`` to ``<|notimestamps|>``."""
    return (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in _languages()]
            + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
               "<|nocaptions|>", "<|notimestamps|>"])


def _build_tokenizer(out: Path) -> int:
    """Write a byte-level BPE tokenizer (``tokenizer.json`` + config) to ``out``; return its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()  # the 256 printable stand-ins of the byte-level scheme
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for i in range(len(vocab), N_TEXT - 1):  # fillers: reachable only by id, as merges would be
        vocab[f"\u0120filler{i}"] = i
    # an empty token (50256 in OpenAI's vocabulary) is how CTranslate2 4.8 tells a multilingual Whisper
    vocab[""] = N_TEXT - 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = special_tokens()
    tok.add_special_tokens(specials)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 448,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "additional_special_tokens": specials[1:],
    }))
    return tok.get_vocab_size()


def build_hf_whisper(out: Path, seed: int = 0) -> Path:
    """A random tiny ``WhisperForConditionalGeneration`` + tokenizer saved with save_pretrained
    (a transformers checkpoint, *not* loadable by faster-whisper before conversion)."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    n_tok = _build_tokenizer(out)
    vocab_size = n_tok + N_TIMESTAMPS
    assert vocab_size == 51865, vocab_size  # CTranslate2 calls a model multilingual from 51865 up
    specials = {t: N_TEXT + i for i, t in enumerate(special_tokens())}
    cfg = WhisperConfig(vocab_size=vocab_size, pad_token_id=N_TEXT, bos_token_id=N_TEXT,
                        eos_token_id=N_TEXT, decoder_start_token_id=specials["<|startoftranscript|>"],
                        suppress_tokens=[], begin_suppress_tokens=[220, N_TEXT], **TINY)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=specials["<|startoftranscript|>"], eos_token_id=N_TEXT,
        pad_token_id=N_TEXT, suppress_tokens=[], begin_suppress_tokens=[220, N_TEXT],
        lang_to_id={f"<|{c}|>": specials[f"<|{c}|>"] for c in _languages()},
        alignment_heads=[[1, 0], [1, 1]], no_timestamps_token_id=specials["<|notimestamps|>"])
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30,
        "n_fft": 400, "feature_extractor_type": "WhisperFeatureExtractor"}))
    return out


def convert(hf_dir: Path, out: Path, quantization: str = "int8") -> Path:
    """CTranslate2-convert ``hf_dir`` to ``out``, copying the tokenizer and preprocessor config
    (as ``ct2-transformers-converter --copy_files tokenizer.json preprocessor_config.json``)."""
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
                          ).convert(str(out), quantization=quantization, force=True)
    return out


def tiny_whisper_dir(tmp_path: Path) -> Path:
    """A converted tiny random Whisper under ``tmp_path`` (``tmp_path/ct2``), ready for
    :func:`groundzero.indexer.asr.load_asr`; the transformers checkpoint is ``tmp_path/hf``."""
    tmp_path = Path(tmp_path)
    return convert(build_hf_whisper(tmp_path / "hf"), tmp_path / "ct2")
