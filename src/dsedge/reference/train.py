"""Train a tiny reference checkpoint from scratch on the synthetic corpus (CPU, fp32).

    python -m dsedge.reference.train --arch FAMILY --out DIR [--steps N] [--seed S]

(FAMILY: a model_type of dsedge.archs, e.g. the first family's; each family's ArchSpec.reference
holds its tokenizer kind and the config values that make it tiny.)

Writes a standard Hugging Face folder (config.json, model.safetensors in bf16,
tokenizer.json, tokenizer_config.json, generation_config.json) plus
training.json with the run's settings, timing, eval perplexity, task accuracy
and INT8/INT4 fake-quantization sanity figures.

Evaluation protocol (also used by the tests; reuse `eval_perplexity` to match it):
  * text -> token stream: every line is tokenized without specials and followed
    by "</s>"; the lines' streams are concatenated.
  * the stream is cut into non-overlapping windows of 127 tokens (a shorter
    tail is dropped) and "<s>" is put in front of each -> windows of 128 tokens.
  * perplexity = exp(mean next-token NLL over the 127 predicted positions of
    every window), computed in fp32 with the bf16-rounded weights.
  * task accuracy: greedy next token after "<s> {prompt}" equals the answer.
Training batches are built the same way from the 'train' split.

Tokenizers (Reference.tokenizer).  Both map every corpus word to one token with the same id
(<s>=0, </s>=1, <unk>=2, <pad>=3, then the sorted corpus vocabulary):
  * "wordlevel": WordLevel model + whitespace pre-tokenizer + space-joining decoder.
  * "bpe": a byte-level BPE in exactly the layout its Reference.tokenizer_class rebuilds.
    transformers 5 always loads some model types' folders with that tokenizer class
    (which rebuilds a byte-level BPE from vocab + merges and ignores any other
    model in tokenizer.json), so a WordLevel tokenizer would silently mis-tokenize
    there.  The BPE holds "Ġ" + word for every corpus word, the 256 byte symbols
    and the prefix merges that build each word, so any text still encodes.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

from ..archs.moe import RouterProbe
from . import corpus, text
from .tiny import ARCHS, BOS, EOS, PAD, build_tokenizer, make_config, save_tokenizer  # noqa: F401

SEQ_LEN = 128
# Switch-Transformer load-balancing loss weight for MoE training (Fedus et al. 2021 use 0.01):
# transformers' MoE models have no auxiliary loss of their own, and without one the router collapses
# onto a few experts, which would make the reference useless for per-expert calibration.
AUX_LOSS_COEF = 0.01
DATA_DIR = Path(__file__).parent / "data"

# ---- data ---------------------------------------------------------------------
def encode_lines(tokenizer, lines: list[str]) -> torch.Tensor:
    """Token stream: each line's ids (no specials) followed by </s>.  (N,) int64.

    `tokenizer` is a `tokenizers.Tokenizer` or a transformers fast tokenizer.
    """
    if isinstance(tokenizer, Tokenizer):
        ids = [e.ids for e in tokenizer.encode_batch(lines, add_special_tokens=False)]
    else:
        ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    eos = tokenizer.token_to_id("</s>") if isinstance(tokenizer, Tokenizer) else tokenizer.eos_token_id
    return torch.tensor([t for line in ids for t in (*line, eos)], dtype=torch.long)


def make_windows(stream: torch.Tensor, bos_id: int = BOS, seq_len: int = SEQ_LEN) -> torch.Tensor:
    """Non-overlapping windows "<s>" + (seq_len-1) stream tokens.  (W, seq_len); tail dropped."""
    n = stream.numel() // (seq_len - 1)
    body = stream[: n * (seq_len - 1)].view(n, seq_len - 1)  # (W, T-1)
    return torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), body], dim=1)  # (W, T)


def read_lines(path: Path) -> list[str]:
    return [l for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]


# ---- evaluation -----------------------------------------------------------------
@torch.no_grad()
def eval_perplexity(model, tokenizer, lines: list[str] | None = None, batch_size: int = 32,
                    seq_len: int = SEQ_LEN) -> float:
    """Token-level perplexity on `lines` (default: data/eval.txt) per the module protocol."""
    lines = read_lines(DATA_DIR / "eval.txt") if lines is None else lines
    windows = make_windows(encode_lines(tokenizer, lines), seq_len=seq_len)  # (W, T)
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        x = windows[i: i + batch_size]                           # (B, T)
        logits = model(input_ids=x).logits.float()               # (B, T, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)         # (B, T-1, V)
        tgt = x[:, 1:]                                           # (B, T-1)
        nll -= logp.gather(-1, tgt.unsqueeze(-1)).sum().item()
        count += tgt.numel()
    model.train(was_training)
    return math.exp(nll / count)


@torch.no_grad()
def task_accuracy(model, tokenizer, examples: list[dict] | None = None) -> float:
    """Fraction of examples whose greedy next token after "<s> prompt" is the answer."""
    if examples is None:
        examples = [json.loads(l) for l in read_lines(DATA_DIR / "task.jsonl")]
    was_training = model.training
    model.eval()
    correct = 0
    for ex in examples:  # prompts are short; one at a time keeps it padding-free
        ids = tokenizer(ex["prompt"])["input_ids"]  # post-processor adds <s>
        ans = tokenizer(ex["answer"], add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([ids])).logits  # (1, T, V)
        correct += len(ans) == 1 and logits[0, -1].argmax().item() == ans[0]
    model.train(was_training)
    return correct / len(examples)


@torch.no_grad()
def fake_quantize_(model, scheme: str, include_lm_head: bool = False):
    """Round-to-nearest symmetric fake quantization of linear weights, in place.

    scheme "int8": per output channel, scale = max|w_row| / 127, q in [-127, 127].
    scheme "int4_g128": per group of 128 along in_features, scale = max|w_g| / 7, q in [-8, 7].
    Embeddings are never touched; lm_head only with `include_lm_head`.
    """
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or (name.endswith("lm_head") and not include_lm_head):
            continue
        w = mod.weight.data.float()                              # (O, I)
        if scheme == "int8":
            scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127  # (O, 1)
            q = (w / scale).round().clamp(-127, 127) * scale
        elif scheme == "int4_g128":
            O, I = w.shape
            g = w.view(O, I // 128, 128)                         # (O, I/128, 128)
            scale = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 7  # (O, I/128, 1)
            q = ((g / scale).round().clamp(-8, 7) * scale).view(O, I)
        else:
            raise ValueError(scheme)
        mod.weight.data = q.to(mod.weight.dtype)
    return model


def quant_report(model, tokenizer, corpus_: "Corpus") -> dict:
    """Eval ppl after fake-quantizing a copy of the (bf16-rounded) model with each scheme."""
    import copy

    out = {}
    for scheme in ("int8", "int4_g128"):
        for head in (False, True):
            m = fake_quantize_(copy.deepcopy(model), scheme, include_lm_head=head)
            out[f"{scheme}{'_with_lm_head' if head else ''}"] = {
                "eval_ppl": eval_perplexity(m, tokenizer, corpus_.eval_lines, seq_len=corpus_.seq_len),
                **({"task_accuracy": task_accuracy(m, tokenizer)} if corpus_.task else {})}
    return out


# ---- corpora ----------------------------------------------------------------------
@dataclass
class Corpus:
    """What a reference trains and is evaluated on: the generated world (corpus.py, the tiny
    references) or real English text (text.py, the text reference)."""
    name: str
    tokenizer: object            # tokenizers.Tokenizer
    train_lines: list[str]
    eval_lines: list[str]
    seq_len: int = SEQ_LEN
    task: bool = True            # data/task.jsonl applies (the generated world's additions)
    config: dict = field(default_factory=dict)   # config.json values over the family's tiny ones
    add_prefix_space: bool | None = None          # tokenizer_config.json's, where not the family's


def generated_corpus(arch: str, steps: int, batch_size: int, seed: int) -> Corpus:
    # One pass over fresh training text, never repeated: ~9 tokens per line.
    n_lines = int(steps * batch_size * (SEQ_LEN - 1) / 8.5) + 1000
    return Corpus("generated", build_tokenizer(arch), corpus.generate("train", n_lines, seed),
                  read_lines(DATA_DIR / "eval.txt"))


def kjv_corpus(arch: str, steps: int, batch_size: int, seed: int) -> Corpus:
    if arch != text.SPEC.model_type:
        raise SystemExit(f"--corpus kjv trains the text reference's layout only (--arch {text.SPEC.model_type})")
    train_lines = text.split("train")
    return Corpus("kjv", text.train_tokenizer(train_lines), train_lines, read_lines(text.DATA / "eval.txt"),
                  seq_len=text.SEQ_LEN, task=False, config=text.CONFIG, add_prefix_space=False)


CORPORA = {"generated": generated_corpus, "kjv": kjv_corpus}


# ---- training -------------------------------------------------------------------
def train(arch: str, out: Path, steps: int, seed: int, batch_size: int, lr: float,
          warmup: int, weight_decay: float, log_every: int = 50, corpus_name: str = "generated") -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(seed)
    data = CORPORA[corpus_name](arch, steps, batch_size, seed)
    tok, seq_len = data.tokenizer, data.seq_len
    config = make_config(arch, tok.get_vocab_size(), **data.config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.train()
    probe = RouterProbe(model)   # no routers in dense models: aux loss 0

    windows = make_windows(encode_lines(tok, data.train_lines), seq_len=seq_len)  # (W, T)
    epochs = math.ceil(steps * batch_size / len(windows))   # generated: 1 (fresh text, never repeated)
    g = torch.Generator().manual_seed(seed)                 # real text: each epoch in a new order
    windows = windows if epochs == 1 else torch.cat([windows[torch.randperm(len(windows), generator=g)]
                                                     for _ in range(epochs)])

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]   # matrices + embeddings
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]  # norms, biases
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))

    def lr_at(step):  # linear warmup, cosine decay to 10% of peak
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    t0 = time.time()
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = windows[step * batch_size: (step + 1) * batch_size]  # (B, T)
        loss = model(input_ids=x, labels=x).loss                 # shifted CE inside
        if probe.counts:
            loss = loss + AUX_LOSS_COEF * probe.aux_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step):.2e}  "
                  f"{time.time() - t0:6.1f}s", flush=True)
    train_seconds = time.time() - t0

    # Save in bf16 like the real DeepSeek checkpoints.
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
                                               do_sample=False, max_new_tokens=32)
    model.to(torch.bfloat16).save_pretrained(out)
    save_tokenizer(tok, arch, out, add_prefix_space=data.add_prefix_space)

    # Evaluate exactly what was shipped: reload, fp32 compute on bf16-rounded weights.
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    hf_tok = AutoTokenizer.from_pretrained(out)
    probe = RouterProbe(model)
    ppl = eval_perplexity(model, hf_tok, data.eval_lines, seq_len=seq_len)
    expert_load = probe.load()   # tokens per expert over the eval windows
    acc = task_accuracy(model, hf_tok) if data.task else None
    n_eval = make_windows(encode_lines(hf_tok, data.eval_lines), seq_len=seq_len).numel()
    report = {
        "arch": arch, "model_class": ARCHS[arch].name, "corpus": data.name, "steps": steps, "seed": seed,
        "batch_size": batch_size, "seq_len": seq_len, "lr": lr, "warmup": warmup,
        "weight_decay": weight_decay, "train_tokens": steps * batch_size * seq_len, "epochs": epochs,
        "train_seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
        "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "vocab_size": config.vocab_size, "tokenizer_size": tok.get_vocab_size(),
        "n_params": sum(p.numel() for p in model.parameters()),
        "eval_ppl": ppl, "eval_windows": n_eval // seq_len, **({"task_accuracy": acc} if data.task else {}),
        "fake_quant": quant_report(model, hf_tok, data),
        **({"expert_load_eval": expert_load} if expert_load else {}),
        "command": "python -m dsedge.reference.train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "torch_version": torch.__version__,
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="generated",
                    help="generated: the invented world (corpus.py); kjv: real English text (text.py)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = train(args.arch, args.out, args.steps, args.seed, args.batch_size, args.lr,
                   args.warmup, args.weight_decay, corpus_name=args.corpus)
    print(json.dumps({k: report.get(k) for k in ("train_seconds", "eval_ppl", "task_accuracy")}))
    print(json.dumps(report["fake_quant"], indent=1))


if __name__ == "__main__":
    main()
