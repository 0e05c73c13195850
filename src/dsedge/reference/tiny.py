"""The tiny reference checkpoints' tokenizers and configs, from each family's ArchSpec.reference:
shared by the training script (train.py) and the random-weight real-shape checkpoints
(synthetic.py). See train.py's docstring for the tokenizers' layout."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..archs import supported
from ..archs.base import ArchSpec
from . import corpus

SPECIALS = ["<s>", "</s>", "<unk>", "<pad>"]  # ids 0..3
BOS, EOS, UNK, PAD = range(4)
# family (--arch) -> its spec: every family dsedge builds has a reference checkpoint
ARCHS: dict[str, ArchSpec] = {s.family: s for s in supported() if s.reference is not None}


def build_tokenizer(arch: str) -> Tokenizer:
    """The raw `tokenizers.Tokenizer` for family `arch` (see module docstring)."""
    words = corpus.vocabulary()
    kind = ARCHS[arch].reference.tokenizer if arch in ARCHS else None
    if kind == "wordlevel":
        vocab = {t: i for i, t in enumerate(SPECIALS + words)}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with " "
    elif kind == "bpe":
        vocab = {t: i for i, t in enumerate(SPECIALS + ["Ġ" + w for w in words])}
        for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):  # every byte stays encodable
            vocab.setdefault(ch, len(vocab))
        merges = []  # "Ġ"+"z" -> "Ġz", "Ġz"+"u" -> "Ġzu", ... up to the whole word
        for w in words:
            t = "Ġ" + w
            for k in range(2, len(t) + 1):
                merges.append((t[:k - 1], t[k - 1]))
                vocab.setdefault(t[:k], len(vocab))
        merges = list(dict.fromkeys(merges))  # drop repeats of shared prefixes, keep order
        tok = Tokenizer(models.BPE(vocab, merges, continuing_subword_prefix="",
                                   end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(ARCHS[arch].reference.split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False),  # "zuka" -> "Ġzuka"
        ])
        tok.decoder = decoders.ByteLevel()
    else:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}")
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(  # tokenizer(text) -> "<s> text"
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)])
    return tok


def save_tokenizer(tok: Tokenizer, arch: str, out: Path, add_prefix_space: bool | None = None):
    """Write tokenizer.json + tokenizer_config.json so AutoTokenizer loads it with specials set.
    `add_prefix_space`: the BPE's (default: True, the generated world's word tokens carry "Ġ")."""
    from transformers import PreTrainedTokenizerFast

    bpe = ARCHS[arch].reference.tokenizer == "bpe"
    extra = {"add_prefix_space": True if add_prefix_space is None else add_prefix_space} if bpe else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=512, **extra)
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = ARCHS[arch].reference.tokenizer_class
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def make_config(arch: str, n_tokens: int, **overrides):
    """The tiny config of family `arch` (its ArchSpec.reference.config); vocab padded up to a
    multiple of 128. `overrides`: other config values (e.g. q_lora_rank for MLA's query compression)."""
    from transformers import AutoConfig

    spec = ARCHS[arch]
    values = dict(spec.reference.config, vocab_size=(n_tokens + 127) // 128 * 128, bos_token_id=BOS,
                  eos_token_id=EOS, pad_token_id=PAD, architectures=[spec.name])
    return AutoConfig.for_model(spec.model_type, **{**values, **overrides})


