"""A character-level tokenizer made locally, for the tiny test and demo models.

Real checkpoints ship their own tokenizer; tiny models need one that exists offline.
Each character of Latin, Cyrillic and common punctuation is one token, and byte fallback
covers everything else (CJK included), so any text round-trips exactly.
"""

from __future__ import annotations

import string

_EXTRA = "ґҐ«»—–’“”№€£¥°±×÷§"


def charset() -> list[str]:
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    chars += [chr(c) for c in range(0x0400, 0x0460)] + list(_EXTRA)
    return list(dict.fromkeys(chars))


def build_tokenizer(special_tokens: list[str], **named_tokens):
    """A ``PreTrainedTokenizerFast`` whose first ids are ``special_tokens`` (in order).

    ``named_tokens`` become tokenizer attributes (``eos_token="<eos>"``,
    ``image_token="<|image_pad|>"``), as a real checkpoint's tokenizer_config sets them.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    for char in charset():
        vocab.setdefault(char, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, fuse_unk=False))
    core.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    core.add_special_tokens(special_tokens)
    standard = {k: named_tokens.pop(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in named_tokens}
    return PreTrainedTokenizerFast(tokenizer_object=core, extra_special_tokens=named_tokens, **standard)
