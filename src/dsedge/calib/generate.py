"""Text the FP16 model writes itself, for `--calib self` and `--eval self`.

R1-style models are used for their chains of thought, and calibrating them on generic web text
(C4, the Pile) leaves the `<think>` distribution out; llm-compressor's maintainers have an open
request for exactly this (vllm-project/llm-compressor issue 2974). No maintained library samples
calibration text from the model it is about to quantize, offline, so it is written here: a few
seed prompts (through the chat template where the tokenizer has one), sampled continuations, the
token stream cut into windows like any other calibration text.

    stream = generate_stream(model, tokenizer, GenerateSpec(prompts=[...]), tokens=64 * 128, seed=0)
    stream.ids          # prompt + continuation + EOS, one record after another
    stream.scored       # True on the continuations' tokens
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ..check.accuracy import bos_prefix
from ..errors import UsageError


@dataclass(frozen=True)
class GenerateSpec:
    prompts: tuple[str, ...]
    new_tokens: int = 256          # per record, at most (a record also ends at EOS)
    temperature: float = 0.6       # DeepSeek's recommended sampling for R1 (0.5-0.7, top-p 0.95)
    top_p: float = 0.95
    batch: int = 8                 # records sampled at once, all from one prompt (no padding)
    max_records: int = 512         # stop here even when the token budget is not met


@dataclass
class Stream:
    ids: list[int]
    scored: list[bool]             # per id: part of a continuation (not of a prompt)
    records: int
    chat_template: bool            # prompts were rendered by the tokenizer's chat template
    sha256: str                    # of the token stream (int64, little-endian)
    label: str


def render_prompt(tokenizer, prompt: str, chat_template: bool) -> list[int]:
    """A prompt's ids: one user turn with the generation prompt (R1: `<｜User｜>p<｜Assistant｜><think>\\n`),
    or BOS + the plain text."""
    if chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return bos_prefix(tokenizer) + tokenizer(prompt, add_special_tokens=False)["input_ids"]


def use_chat_template(tokenizer, setting: bool | str) -> bool:
    """A recipe's chat_template (on / off / auto) for this tokenizer; on without one is an error."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if setting is True and not has:
        raise UsageError("the calibration recipe sets chat_template: on, but this tokenizer has no chat template",
                         "set chat_template: off (or auto) in the recipe (or --no-chat-template), or use a "
                         "checkpoint whose tokenizer_config.json defines chat_template")
    return has if setting == "auto" else bool(setting)


def generate_stream(model, tokenizer, spec: GenerateSpec, tokens: int, seed: int,
                    chat_template: bool | str = "auto") -> Stream:
    """Sample records from `model` (eval mode, any dtype) until the stream holds `tokens` tokens
    or spec.max_records records: prompts in turn, spec.batch records per call, each batch seeded
    with (seed, call number) so the stream depends on the seed, not on how it was cut. The global
    torch RNG is left as it was. A record is prompt + continuation + EOS; `scored` marks the
    continuation's tokens (an evaluation scores what the model writes, given the prompt, not the
    user's words)."""
    if not spec.prompts:
        raise UsageError("the self-generated calibration source has no prompts",
                         "give `prompts:` a list of one or more seed prompts in the recipe")
    templated = use_chat_template(tokenizer, chat_template)
    eos = getattr(tokenizer, "eos_token_id", None)
    prompts = [render_prompt(tokenizer, p, templated) for p in spec.prompts]
    ids: list[int] = []
    scored: list[bool] = []
    records = call = 0
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        while len(ids) < tokens and records < spec.max_records:
            prompt = prompts[call % len(prompts)]
            torch.manual_seed(seed * 1_000_003 + call)
            n = min(spec.batch, spec.max_records - records)
            x = torch.tensor([prompt] * n, dtype=torch.long)                          # (n, P)
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=True,
                                 temperature=spec.temperature, top_p=spec.top_p, top_k=0,
                                 max_new_tokens=spec.new_tokens, eos_token_id=eos, pad_token_id=eos)
            for row in out[:, x.shape[1]:].tolist():                                  # (n, <= new_tokens)
                cut = row.index(eos) if eos is not None and eos in row else len(row)
                body = row[:cut] + ([eos] if eos is not None else [])
                ids += prompt + body
                scored += [False] * len(prompt) + [True] * len(body)
            records += n
            call += 1
    digest = hashlib.sha256(np.asarray(ids, dtype="<i8").tobytes() + np.asarray(scored, dtype=bool).tobytes()).hexdigest()
    label = (f"self-generated: {records} records from {len(prompts)} prompts (seed {seed}, temperature "
             f"{spec.temperature}, top-p {spec.top_p}{', chat template' if templated else ''})")
    return Stream(ids, scored, records, templated, digest, label)
