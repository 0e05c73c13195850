"""`dsedge run`: talk to a built artifact. The prompt is tokenized with the artifact's own
tokenizer (tokenizer.json, as transformers does: BOS included), decoded greedily through the
artifact's model.onnx with the KV cache fed back (the device runner's OrtDecoder, run here), and
the text streamed as it is decoded; prefill and decode tokens/s at the end.

With a device (user@host), the artifact's release there generates the tokens through the
release's runtime (TensorRT or onnxruntime, `python3 -m dsedge_device smoke`): the prompt is
tokenized and the tokens decoded here, so both paths see the same ids.

No torch here: `dsedge run` starts in about a second."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UsageError

@dataclass
class Generation:
    prompt_ids: list[int]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    stopped: str = "max_new_tokens"       # or "eos", "context"
    runtime: str = "onnxruntime"
    graph: str | None = None              # this host: which graph ran (run.open_on_host)
    where: str = "this host"
    prefill_s: float | None = None
    decode_s: float | None = None
    total_s: float = 0.0

    @property
    def prefill_tokens_per_s(self) -> float | None:
        return len(self.prompt_ids) / self.prefill_s if self.prefill_s else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first (the first comes out of the prefill) over the decode steps."""
        n = len(self.tokens) - 1
        return n / self.decode_s if self.decode_s and n > 0 else None

    def to_dict(self) -> dict:
        return {**asdict(self), "prompt_tokens": len(self.prompt_ids), "new_tokens": len(self.tokens),
                "prefill_tokens_per_s": self.prefill_tokens_per_s, "decode_tokens_per_s": self.decode_tokens_per_s}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as e:
        raise UsageError(f"{path} is not valid JSON ({e})", "rebuild the artifact (dsedge build)") from None


class Runner:
    """An artifact opened for generation: its tokenizer, EOS ids and context length; the
    onnxruntime session is opened on the first host generation."""

    def __init__(self, artifact: str | Path, graph: str = "auto"):
        from .deploy.releases import read_manifest   # no torch (dsedge.artifact's reader pulls it in)

        self.folder = Path(artifact)
        if not self.folder.is_dir():
            raise UsageError(f"{self.folder} is not a folder", "pass an artifact folder from `dsedge build`")
        read_manifest(self.folder)
        for name, why in (("model.onnx", "the graph"), ("tokenizer.json", "the tokenizer")):
            if not (self.folder / name).is_file():
                raise UsageError(f"{self.folder} has no {name} ({why})", "rebuild the artifact with dsedge build")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        config = _json(self.folder / "config.json")
        gen = _json(self.folder / "generation_config.json")
        eos = gen.get("eos_token_id", config.get("eos_token_id"))
        self.eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.context = int(config.get("max_position_embeddings") or 0) or None
        self._decoder, self.graph, self.graph_used = None, graph, None

    # ------------------------------------------------------------------ tokens
    def encode(self, prompt: str, chat_template: bool = False) -> list[int]:
        """The ids transformers' tokenizer gives: special tokens (BOS) added by the tokenizer's
        post-processor; with chat_template, the tokenizer_config's template around a user turn."""
        if not chat_template:
            return self.tokenizer.encode(prompt).ids
        tc = _json(self.folder / "tokenizer_config.json")
        if not tc.get("chat_template") and not (self.folder / "chat_template.jinja").is_file():
            raise UsageError(f"{self.folder}'s tokenizer has no chat template", "drop --chat-template")
        from transformers import AutoTokenizer   # the template is Jinja with transformers' helpers

        tok = AutoTokenizer.from_pretrained(str(self.folder))
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return tok(text, add_special_tokens=False).input_ids   # the template writes its own BOS

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _budget(self, n_prompt: int, max_new_tokens: int) -> int:
        if max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens {max_new_tokens} is below 1", "pass --max-new-tokens 1 or more")
        if self.context is not None and n_prompt >= self.context:
            raise UsageError(f"the prompt is {n_prompt} tokens, the model's context is {self.context}",
                             "pass a shorter prompt")
        return max_new_tokens if self.context is None else min(max_new_tokens, self.context - n_prompt)

    # ------------------------------------------------------------------ host
    @property
    def decoder(self):
        if self._decoder is None:
            from .deploy.host import open_on_host

            self._decoder, self.graph_used = open_on_host(self.folder, "onnxruntime", graph=self.graph,
                                                          max_length=self.context)
        return self._decoder

    def generate(self, prompt_ids: list[int], max_new_tokens: int = 64,
                 on_text: Callable[[str], None] | None = None) -> Generation:
        """Greedy decoding on this host through onnxruntime; on_text gets each new piece of text
        as soon as it decodes to whole characters."""
        import numpy as np

        n = self._budget(len(prompt_ids), max_new_tokens)
        g = Generation(list(prompt_ids))
        dec, shown = self.decoder, ""
        g.graph = self.graph_used
        t0 = time.perf_counter()
        logits, past = dec.run(np.asarray([prompt_ids], np.int64))
        g.prefill_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        while True:
            tok = int(logits.argmax())
            if tok in self.eos:
                g.stopped = "eos"
                break
            g.tokens.append(tok)
            text = self.decode(g.tokens)
            if on_text and not text.endswith("\ufffd") and text.startswith(shown):   # wait for whole UTF-8 characters
                on_text(text[len(shown):])
                shown = text
            if len(g.tokens) >= n:
                g.stopped = "max_new_tokens" if n == max_new_tokens else "context"
                break
            logits, past = dec.run(np.asarray([[tok]], np.int64), past)
        g.decode_s = time.perf_counter() - t1
        g.total_s = time.perf_counter() - t0
        g.text = self.decode(g.tokens)
        if on_text and g.text != shown and g.text.startswith(shown):
            on_text(g.text[len(shown):])
        return g

    # ------------------------------------------------------------------ device
    def generate_on_device(self, prompt_ids: list[int], max_new_tokens: int, device: str, *, root=None,
                           python=None, known_hosts=None, identity=None, accept_new_host_key: bool = False,
                           runtime: str = "auto") -> Generation:
        """The flashed release of this artifact generates on `device` (user@host[:port])."""
        from .deploy import _setup
        from .deploy.fleet import device_side
        from .deploy.releases import artifact_id

        n = self._budget(len(prompt_ids), max_new_tokens)
        (target,), ssh = _setup([device], None, root, python, known_hosts, identity, accept_new_host_key)
        rid = artifact_id(self.folder)
        dev = device_side(target, ssh)
        if rid not in dev.call("releases", what="listing releases").get("releases", []):
            raise UsageError(f"{target.name}: this artifact (release {rid}) is not on the device",
                             f"flash it first: dsedge flash {self.folder} --device {target.address}")
        t0 = time.perf_counter()
        res = dev.call("run", rid, "smoke", "--ids", ",".join(map(str, prompt_ids)), "--n", str(n),
                       "--runtime", runtime, what="generation", timeout=None)
        g = Generation(list(prompt_ids), runtime=res.get("runtime", runtime), where=f"{target.name}, release {rid}")
        for tok in res.get("tokens", []):   # the device runner does not stop at EOS: cut here
            if tok in self.eos:
                g.stopped = "eos"
                break
            g.tokens.append(int(tok))
        else:
            g.stopped = "max_new_tokens" if n == max_new_tokens else "context"
        g.total_s = float(res.get("seconds") or (time.perf_counter() - t0))
        g.text = self.decode(g.tokens)
        return g


def generate(artifact: str | Path, prompt: str, max_new_tokens: int = 64, chat_template: bool = False,
             device: str | None = None, on_text: Callable[[str], None] | None = None, **device_kw) -> Generation:
    """Greedy generation from `prompt` with a built artifact: on this host through onnxruntime,
    or on `device` through its flashed release. -> Generation (tokens, text, timings)."""
    r = Runner(artifact)
    ids = r.encode(prompt, chat_template)
    if device:
        return r.generate_on_device(ids, max_new_tokens, device, **device_kw)
    return r.generate(ids, max_new_tokens, on_text)
