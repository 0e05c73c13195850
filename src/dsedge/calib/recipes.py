"""Calibration recipes: calibration/*.yaml (installed as dsedge/_data/calibration) resolved into
the CalibData every calibrated quantizer reads.

    calib = resolve_calibration("gptq-default", tokenizer)          # a recipe name
    calib = resolve_calibration("my_recipe.yaml", tokenizer)        # a recipe file
    calib = resolve_calibration("domain.jsonl", tokenizer, samples=64)  # a plain file, defaults apply
    calib = resolve_calibration(None, tokenizer)                    # calibration/reference.yaml

A recipe names a source (`reference`, `reference-text` (the real-text reference's split), a .txt / .jsonl path, `{file: F, field: K}`,
`{dataset: D, split: S, field: K}` on the Hugging Face Hub, or `{generate: {prompts: [...]}}`:
text the FP16 model samples itself, calib/generate.py, the `self` recipe), `samples`, `seq_len`,
`seed` and `chat_template` (on: each record is rendered with tokenizer.apply_chat_template; auto:
where the tokenizer has one). The text is
tokenized line by line as the eval text is (check.accuracy), and `samples` non-overlapping
windows of `seq_len` tokens are drawn from it with the seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Literal, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from ..errors import UsageError
from ..safe_yaml import load_yaml
from . import CalibData
from .generate import GenerateSpec, generate_stream, use_chat_template
from .sources import (JSONL_SUFFIXES, TEXT_SUFFIXES, SourceText, read_hub, read_jsonl, read_reference,
                      read_reference_text, read_text_file)

DEFAULT_RECIPE = "reference"
OVERRIDABLE = ("samples", "seq_len", "seed", "chat_template")
READ_FACTOR = 4          # tokenize at most this many times samples x seq_len tokens of a source


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FileSource(_Strict):
    file: str
    field: str | None = None     # JSON lines: the record's text (or chat messages) field


class HubSource(_Strict):
    dataset: str                 # Hugging Face dataset id, read only when online
    split: str = "train"
    field: str = "text"
    config: str | None = None
    data_files: str | None = None


class Generate(_Strict):
    prompts: list[str] = Field(min_length=1)
    new_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.6, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    batch: int = Field(8, gt=0)
    max_records: int = Field(512, gt=0)


class GenerateSource(_Strict):
    generate: Generate           # sampled from the FP16 model being quantized (calib/generate.py)


def _source_kind(v) -> str:
    """The union's tag, of a YAML mapping when validating and of a model when serializing."""
    if isinstance(v, dict):
        return "hub" if "dataset" in v else "generate" if "generate" in v else "file"
    return {HubSource: "hub", GenerateSource: "generate"}.get(type(v), "path" if isinstance(v, str) else "file")


Source = Annotated[Union[Annotated[str, Tag("path")], Annotated[FileSource, Tag("file")],
                         Annotated[HubSource, Tag("hub")], Annotated[GenerateSource, Tag("generate")]],
                   Discriminator(_source_kind)]


class Recipe(_Strict):
    description: str = ""
    source: Source = "reference"
    samples: int = Field(128, gt=0)          # defaults for a plain file: AWQ's 128 x 512
    seq_len: int = Field(512, gt=1)
    seed: int = 0
    chat_template: Union[bool, Literal["auto"]] = False     # auto: where the tokenizer has one

    @field_validator("chat_template", mode="plain")     # one message, not one per member of the union
    @classmethod
    def _on_off_auto(cls, v):
        if isinstance(v, bool) or v == "auto":
            return v
        raise ValueError("input should be on, off or auto")


def recipes_dirs(extra: Path | None = None) -> list[Path]:
    """Where recipes are looked up, first match wins: `extra`, the installed copy, the repo."""
    here = Path(__file__).resolve().parent.parent
    dirs = [Path(extra)] if extra else []
    dirs += [here / "_data" / "calibration", here.parent.parent / "calibration"]
    return [d for d in dirs if d.is_dir()]


def list_recipes(extra: Path | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in recipes_dirs(extra):
        for f in sorted(d.glob("*.yaml")):
            out.setdefault(f.stem, f)
    return out


def load_recipe(path: Path, overrides: dict | None = None) -> Recipe:
    """A recipe file validated (unknown keys and wrong types name the file and key)."""
    data = load_yaml(Path(path), "calibration recipe")
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a mapping", "see calibration/reference.yaml for the layout")
    return _validate(data, overrides or {}, str(path))


def _validate(data: dict, overrides: dict, where: str) -> Recipe:
    bad = sorted(set(overrides) - set(OVERRIDABLE))
    if bad:
        raise UsageError(f"calibration option {bad[0]!r} cannot be overridden",
                         f"override only {', '.join(OVERRIDABLE)}; other keys belong in a recipe file")
    try:
        return Recipe(**{**data, **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"]]
        if loc[:1] == ["source"] and len(loc) > 1 and loc[1] in ("path", "file", "hub", "generate"):
            del loc[1]                                      # the union's tag, not a key of the file
        key = ".".join(loc)
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].lower().removeprefix("value error, ")
        origin = f"calibration option {key}={overrides[key]!r}" if key in overrides else f"{where}: {key}"
        raise UsageError(f"{origin}: {what}",
                         "see calibration/reference.yaml for the keys and their types") from None


def find_recipe(spec: str | Path | None, recipes_dir: Path | None = None) -> tuple[Path | None, str]:
    """-> (recipe file, name); no recipe file means `spec` is a plain data file."""
    if spec is None:
        spec = DEFAULT_RECIPE
    p = Path(spec).expanduser()
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UsageError(f"calibration recipe {p} does not exist", "pass an existing recipe file or a recipe name")
        return p, p.stem
    if p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES:
        return None, str(p)
    recipes = list_recipes(recipes_dir)
    if str(spec) in recipes:
        return recipes[str(spec)], str(spec)
    raise UsageError(f"unknown calibration recipe or file {str(spec)!r}",
                     f"use a recipe name ({', '.join(recipes) or 'none found'}), a recipe .yaml, or a "
                     f"{'/'.join(TEXT_SUFFIXES + JSONL_SUFFIXES)} file")


def resolve_calibration(spec: str | Path | None, tokenizer, recipes_dir: Path | None = None,
                        model: Callable[[], object] | None = None, **overrides) -> CalibData:
    """Calibration samples for `spec` (recipe name, recipe .yaml, or a .txt / .jsonl file; None:
    the reference recipe). model(): the FP16 model, loaded only for a `generate` source (and
    dropped before this returns). overrides: samples, seq_len, seed, chat_template (None = keep)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    recipe_file, name = find_recipe(spec, recipes_dir)
    if recipe_file is not None:
        recipe = load_recipe(recipe_file, overrides)
        base = recipe_file.parent
    else:  # a plain data file: the schema's defaults apply
        recipe = _validate({"source": str(Path(spec).expanduser())}, overrides, "--calib")
        base = Path.cwd()
    if isinstance(recipe.source, GenerateSource):
        src, ids, records_used = _generated(recipe, tokenizer, model, name)
    else:
        src = _read_source(recipe, base)
        ids, records_used = _tokens(src, tokenizer, recipe)
    windows, note = cut_windows(ids, recipe.samples, recipe.seq_len, recipe.seed, src.label)
    resolved = {"name": name, "file": str(recipe_file) if recipe_file else None,
                **recipe.model_dump(mode="json"), "tokens_available": len(ids),
                "records_used": records_used, "records": len(src.records) or records_used}
    if not resolved["description"]:
        resolved.pop("description")
    max_len = getattr(tokenizer, "model_max_length", None)
    if isinstance(max_len, int) and max_len < recipe.seq_len:
        note = ((note + "; ") if note else "") + \
            f"seq_len {recipe.seq_len} exceeds the tokenizer's model_max_length {max_len}"
    if note:
        resolved["note"] = note
    return CalibData(input_ids=torch.from_numpy(windows), source=src.label, sha256=src.sha256, recipe=resolved,
                     tokenizer=tokenizer)


def _generated(recipe: Recipe, tokenizer, model, name: str) -> tuple[SourceText, list[int], int]:
    if model is None:
        raise UsageError(f"calibration recipe {name} generates its text with the model, and no model was given",
                         "pass it through dsedge build (it loads the model), or another recipe")
    stream = generate_stream(model(), tokenizer, _spec(recipe), recipe.samples * recipe.seq_len, recipe.seed,
                             recipe.chat_template)
    return SourceText([], stream.label, stream.sha256), stream.ids, stream.records


def _spec(recipe: Recipe) -> GenerateSpec:
    g = recipe.source.generate
    return GenerateSpec(tuple(g.prompts), g.new_tokens, g.temperature, g.top_p, g.batch, g.max_records)


SELF_RECIPE = "self"
EVAL_SEED_OFFSET = 1     # `--eval self` samples with the recipe's seed + 1: other records than calibration's


def self_eval_stream(tokenizer, model: Callable[[], object], tokens: int, chat_template: bool | None = None,
                     recipes_dir: Path | None = None):
    """`--eval self`: the `self` recipe's prompts and sampling, seed + EVAL_SEED_OFFSET, until
    `tokens` tokens (calib.generate.Stream)."""
    recipe = load_recipe(find_recipe(SELF_RECIPE, recipes_dir)[0])
    return generate_stream(model(), tokenizer, _spec(recipe), tokens, recipe.seed + EVAL_SEED_OFFSET,
                           recipe.chat_template if chat_template is None else chat_template)


def _read_source(recipe: Recipe, base: Path) -> SourceText:
    s = recipe.source
    if isinstance(s, HubSource):
        return read_hub(s.dataset, s.split, s.field, s.data_files, s.config,
                        max_chars=recipe.samples * recipe.seq_len * 8 * READ_FACTOR)
    if s == "reference":
        return read_reference()
    if s == "reference-text":
        return read_reference_text()
    file, field = (s.file, s.field) if isinstance(s, FileSource) else (s, None)
    path = Path(file).expanduser()
    path = path if path.is_absolute() else base / path
    if path.suffix in JSONL_SUFFIXES:
        return read_jsonl(path, field or "text")
    if field is not None:
        raise UsageError(f"calibration source {path} is not JSON lines, but a `field` ({field}) is given",
                         "remove `field:` for a text file, or name a .jsonl file")
    return read_text_file(path)


def _tokens(src: SourceText, tokenizer, recipe: Recipe) -> tuple[list[int], int]:
    """Token stream of the records in order, stopping once READ_FACTOR x samples x seq_len are read."""
    templated = use_chat_template(tokenizer, recipe.chat_template)
    budget = READ_FACTOR * recipe.samples * recipe.seq_len
    ids: list[int] = []
    for n, rec in enumerate(src.records, 1):
        if templated:
            messages = rec if isinstance(rec, list) else [{"role": "user", "content": rec}]
            rec = tokenizer.apply_chat_template(messages, tokenize=False)
        elif isinstance(rec, list):
            raise UsageError(f"calibration source {src.label} holds chat messages, and chat_template is off",
                             "set chat_template: on in the recipe, or point `field:` at a text field")
        ids += _tokenize_document(tokenizer, rec)
        if len(ids) >= budget:
            return ids, n
    return ids, len(src.records)


def _tokenize_document(tokenizer, text: str) -> list[int]:
    """One record as one document: its tokens (newlines inside it kept as text), then EOS, the
    boundary models are trained with between documents."""
    eos = getattr(tokenizer, "eos_token_id", None)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + ([eos] if eos is not None else [])


def cut_windows(ids: list[int], samples: int, seq_len: int, seed: int, label: str = "the text"
                ) -> tuple[np.ndarray, str | None]:
    """`samples` non-overlapping windows of seq_len tokens drawn with `seed` -> ((N, T) int64, note).
    A text too short for all of them gives every window it holds, and a note saying so."""
    avail = len(ids) // seq_len
    if avail == 0:
        raise UsageError(f"calibration source {label} has {len(ids)} tokens, fewer than one {seq_len}-token window",
                         f"use a longer text (at least {seq_len} tokens) or a smaller seq_len")
    rng = np.random.default_rng(seed)
    shift = int(rng.integers(0, len(ids) - avail * seq_len + 1))
    n = min(samples, avail)
    starts = shift + rng.permutation(avail)[:n] * seq_len
    arr = np.asarray(ids, dtype=np.int64)
    windows = np.stack([arr[s:s + seq_len] for s in starts])
    note = None
    if n < samples:
        note = (f"the text holds {len(ids)} tokens, fewer than samples x seq_len = {samples} x {seq_len} = "
                f"{samples * seq_len}: using {n} windows")
    return windows, note
