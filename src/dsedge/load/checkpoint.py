"""Open a Hugging Face checkpoint folder (or hub id) and check it before any work is done.

Everything here reads headers only: config.json, the safetensors headers (memory-mapped), the
tokenizer files. Weights are read tensor by tensor (`Checkpoint.tensor`) or, for checks that
need a PyTorch forward, as a whole model (`Checkpoint.load_model`).

A checkpoint whose config.json carries a supported quantization_config (GPTQ, AWQ GEMM,
compressed-tensors; see prequant/) is imported: `Checkpoint.prequant` gives its quantized linears
as canonical QuantizedWeights, `tensor()` serves the float tensors (and a quantized linear's
`.weight`, dequantized), `load_model()` the model with the dequantized weights.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError
from ..archs import ArchSpec, arch_for, supported, truncated_config
from .config import HUB_ID as _HUB_ID, check_config

if TYPE_CHECKING:   # .prequant imports torch: loaded where a checkpoint is opened, not by file_sha256's users
    from .prequant import Prequant

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt")
CONFIG_FILES = ("config.json", "generation_config.json")


@dataclass
class TensorInfo:
    file: Path
    dtype: str            # safetensors dtype name: "BF16", "F16", "F32", "I32", ...
    shape: tuple[int, ...]


@dataclass
class Checkpoint:
    path: Path
    raw_config: dict
    spec: ArchSpec
    weight_files: list[Path]
    allow_pickle: bool = False
    _hash: str | None = field(default=None, repr=False)
    config_notes: list[str] = field(default_factory=list)   # what transformers said of config.json
    _prequant: Prequant | None = field(default=None, repr=False)   # parsed at open, bound on first use

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def architecture(self) -> str:
        return self.spec.name

    @cached_property
    def config(self):
        from transformers import AutoConfig

        with _rope_warnings() as heard:
            cfg = AutoConfig.from_pretrained(self.path)
        # config.json keys transformers does not read (e.g. R1-0528-Qwen3-8B's YaRN `attn_factor`):
        # the exported graph follows transformers, so the build says what was ignored
        self.config_notes = [f"config.json: {m} (transformers ignores them; the graph follows transformers)"
                             for m in heard]
        if hasattr(cfg, "quantization_config"):  # imported by dsedge: the architecture is the plain model's
            del cfg.quantization_config
        return cfg

    @property
    def prequant(self) -> Prequant | None:
        """The imported quantization (None for a float checkpoint); its quantized linears are found
        from the safetensors headers on first access."""
        if self._prequant is not None and not self._prequant.modules:
            self._prequant.bind(self._read, self.index, self.linear_shapes)
        return self._prequant

    @cached_property
    def _meta_model(self):
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(self.config)

    @cached_property
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """Every nn.Linear of the model (execution order) -> (out_features, in_features)."""
        import torch

        out = {n: tuple(m.weight.shape) for n, m in self._meta_model.named_modules()
               if isinstance(m, torch.nn.Linear)}
        for name, shape in self._disk_shapes(fused_only=True).items():   # MoE experts, one linear each
            out[name.removesuffix(".weight")] = shape
        return out

    def _disk_shapes(self, fused_only: bool = False) -> dict[str, tuple[int, ...]]:
        """State-dict names and shapes as stored on disk: transformers' fused 3-D expert
        parameters are listed as the per-expert 2-D linears of the checkpoint files (MoeSpec)."""
        moe = self.spec.moe
        out = {}
        for k, v in self._meta_model.state_dict().items():
            parts = moe.unfuse(k, tuple(v.shape)) if moe is not None else None
            if parts is not None:
                out.update(parts)
            elif not fused_only:
                out[k] = tuple(v.shape)
        return out

    @property
    def n_layers(self) -> int:
        return int(self.raw_config["num_hidden_layers"])

    @cached_property
    def index(self) -> dict[str, TensorInfo]:
        """Tensor name -> file, dtype and shape, from the safetensors headers only."""
        out: dict[str, TensorInfo] = {}
        for f in self.weight_files:
            if f.suffix != ".safetensors":
                continue
            for name, (dtype, shape) in _read_safetensors_header(f).items():
                out[name] = TensorInfo(f, dtype, shape)
        return out

    def tensor(self, name: str):
        """One tensor, memory-mapped from its file (no other tensor is read). For an imported
        checkpoint, a quantized linear's `.weight` is its dequantized value (float32). With tied
        embeddings and no stored head (a valid Hugging Face layout), the head is the embedding."""
        pq = self.prequant
        if pq is not None and name.endswith(".weight"):
            module = name[: -len(".weight")]
            if module in pq.weights:  # int-quantized stores the int8 codes under this very name
                return pq.weights[module].dequantize()
        if name not in self.index and name == f"{self.spec.head}.weight" and self.raw_config.get("tie_word_embeddings"):
            name = f"{self.spec.embed}.weight"
        return self._read(name)

    def _read(self, name: str):
        from safetensors import safe_open

        info = self.index[name]
        with safe_open(info.file, framework="pt") as f:
            return f.get_tensor(name)

    def sha256(self) -> str:
        """Hash of config.json and every weight file (names and bytes), computed once."""
        if self._hash is None:
            h = hashlib.sha256()
            for f in [self.path / "config.json", *self.weight_files]:
                h.update(f.name.encode())
                h.update(bytes.fromhex(file_sha256(f)))
            self._hash = h.hexdigest()
        return self._hash

    def tokenizer(self):
        """The tokenizer, from tokenizer.json when there is one (transformers 5's AutoTokenizer may
        pick a class by model_type that rebuilds its own pipeline and ignores tokenizer.json)."""
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        if not any((self.path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            raise CheckpointError(f"{self.path} has no tokenizer (tokenizer.json / tokenizer.model)",
                                  "copy the tokenizer files of the original model into the folder")
        try:
            if (self.path / "tokenizer.json").exists():
                return PreTrainedTokenizerFast.from_pretrained(self.path)
            return AutoTokenizer.from_pretrained(self.path)
        except Exception as e:  # noqa: BLE001 - tokenizers raises its own types (a corrupt tokenizer.json)
            raise CheckpointError(f"the tokenizer in {self.path} cannot be loaded ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200] if str(e) else ''})",
                                  "copy tokenizer.json / tokenizer_config.json of the original model into the "
                                  "folder again") from None

    def truncated_config(self, layers: int):
        """config with only the first `layers` decoder layers (same weights for those)."""
        return truncated_config(self.config, layers)

    def load_model(self, dtype=None, layers: int | None = None):
        """The model in PyTorch (eval mode), weights from safetensors unless pickle is allowed.
        layers: load only the first `layers` decoder layers (plus embeddings, norm and head)."""
        import torch
        from transformers import AutoModelForCausalLM

        kwargs = {}
        if layers is not None and layers < self.n_layers:
            kwargs["config"] = self.truncated_config(layers)
        if self.prequant is not None:
            return self._load_dequantized(dtype or torch.float32, kwargs.get("config", self.config))
        model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=dtype or torch.float32, use_safetensors=not self.allow_pickle, **kwargs)
        return model.eval()

    def _load_dequantized(self, dtype, config):
        """An imported checkpoint as a plain PyTorch model: float tensors as stored, quantized
        linears dequantized (QuantizedWeight.dequantize), one tensor read at a time."""
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.initialization import no_init_weights

        with no_init_weights():  # every parameter is overwritten below; buffers (rotary) are computed
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        tied = getattr(config, "tie_word_embeddings", False)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if tied and name.endswith("lm_head.weight") and name not in self.index:
                    continue
                if name not in self.index and name.removesuffix(".weight") not in self.prequant.weights:
                    raise CheckpointError(f"tensor {name} is missing from {self.path}",
                                          "the checkpoint is incomplete: download it again")
                p.copy_(self.tensor(name).to(dtype))
        if tied:
            model.tie_weights()
        return model.eval()

    def validate(self) -> None:
        """Check the safetensors headers against config.json: every tensor present, right shapes.
        Imported checkpoints: the packed tensors of each quantized linear against its config."""
        if not self.index:
            return  # pickle-only checkpoint with allow_pickle: checked when loaded
        expected = self._disk_shapes()
        tied = getattr(self.config, "tie_word_embeddings", False)
        pq = self.prequant
        quantized = {f"{m}.weight" for m in pq.modules} if pq is not None else set()
        if pq is not None:
            pq.check(self.index)
        for name, shape in expected.items():
            if name in quantized:
                continue
            info = self.index.get(name)
            if info is None:
                if tied and name == f"{self.spec.head}.weight":
                    continue
                raise CheckpointError(f"tensor {name} is missing from {self.path}",
                                      "the checkpoint is incomplete: download it again")
            if info.shape != shape:
                raise CheckpointError(
                    f"tensor {name} in {info.file.name} has shape {list(info.shape)}, "
                    f"config.json implies {list(shape)}",
                    "config.json and the weights come from different models: use the matching pair")
            if info.dtype not in ("BF16", "F16", "F32"):
                raise CheckpointError(f"tensor {name} has dtype {info.dtype}, expected BF16/F16/F32",
                                      "pre-quantized checkpoints are imported through their quantization_config")


def file_sha256(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Parse a safetensors header and check it before any tensor is read: a JSON object; each
    entry's dtype known, shape a list of sizes, data_offsets a span whose length is shape x dtype;
    spans inside the file and not overlapping."""
    size = path.stat().st_size

    def bad(why: str):
        return CheckpointError(f"{path} is not a valid safetensors file ({why})",
                               "the file is corrupt or truncated: download it again")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > min(size - 8, 100 << 20):
                raise ValueError("header length out of range")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(str(e)) from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    out, spans = {}, []
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(meta, dict):
            raise bad(f"entry {name} is not an object")
        dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise bad(f"{name}: dtype {dtype!r} is not a safetensors dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise bad(f"{name}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise bad(f"{name}: data_offsets {offsets!r} is not [begin, end]")
        begin, stop = offsets
        want = math.prod(shape) * DTYPE_BYTES[dtype]
        if begin < 0 or stop - begin != want:
            raise bad(f"{name}: data_offsets {offsets} span {stop - begin} bytes, shape {shape} x {dtype} is {want}")
        out[name] = (dtype, tuple(shape))
        spans.append((begin, stop, name))
    spans.sort()
    for (b0, e0, a), (b1, e1, b) in zip(spans, spans[1:]):
        if b1 < e0:
            raise bad(f"the bytes of {a} and {b} overlap")
    end = spans[-1][1] if spans else 0
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path} is truncated: its header describes {8 + n + end} bytes, the file has {size}",
            "the download was interrupted: download the file again")
    return out


def _weight_files(path: Path, allow_pickle: bool) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError("weight_map is not an object of tensor name -> shard file")
            shards = sorted(set(weight_map.values()))
            if any(Path(s).name != s for s in shards):   # a shard outside the folder
                raise ValueError(f"shard {next(s for s in shards if Path(s).name != s)!r} is not a file name")
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is not a valid safetensors index ({e})",
                                  "download model.safetensors.index.json again") from None
        missing = [s for s in shards if not (path / s).exists()]
        if missing:
            raise CheckpointError(f"{index.name} names shard {missing[0]}, which is not in {path}",
                                  "download the missing shard(s) into the folder")
        return [path / s for s in shards]
    # what transformers reads without an index: model.safetensors, never another file mixed in
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    files = sorted(path.glob("*.safetensors"))
    if len(files) == 1:   # a single differently named file (AutoGPTQ's gptq_model-4bit-128g.safetensors)
        return files
    if files:
        raise CheckpointError(f"{path} holds {len(files)} *.safetensors files ({', '.join(f.name for f in files[:3])}"
                              f"{', ...' if len(files) > 3 else ''}) but no model.safetensors.index.json",
                              "restore the index that says which tensors each shard holds (or remove stray files)")
    pickles = sorted(path.glob("pytorch_model*.bin")) + sorted(path.glob("*.pt"))
    if pickles and not allow_pickle:
        raise CheckpointError(
            f"{path} has only pickle weights ({pickles[0].name}); pickle files can run code when loaded",
            "convert them to safetensors, or pass --allow-pickle if you trust the source")
    if pickles:
        return pickles
    raise CheckpointError(f"{path} has no weights (*.safetensors)", "point --model at a complete checkpoint folder")


def resolve(model: str | os.PathLike, allow_pickle: bool = False) -> Path:
    """A local folder as it is; a hub id downloaded (only when online)."""
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"--model {model} is a file, not a checkpoint folder",
                                  "pass the folder that holds config.json")
        return p.resolve()
    if not _HUB_ID.match(str(model)):
        raise CheckpointError(f"checkpoint folder {model} does not exist",
                              "pass an existing folder with config.json and *.safetensors, or a hub id like org/name")
    return _download(str(model), allow_pickle)


def _download(repo_id: str, allow_pickle: bool) -> Path:
    fix = (f"download it where the Hub is reachable (`hf download {repo_id} --local-dir DIR`) "
           "and pass --model DIR")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise CheckpointError(f"{repo_id} is not a local folder and HF_HUB_OFFLINE is set", fix)
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
        if allow_pickle:
            patterns.append("*.bin")
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
    except Exception as e:  # noqa: BLE001 - any network / auth failure gets the same advice
        raise CheckpointError(f"cannot download {repo_id} from the Hugging Face Hub "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160]})", fix) from None


def open_checkpoint(model: str | os.PathLike, allow_pickle: bool = False) -> Checkpoint:
    path = resolve(model, allow_pickle)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{path} has no config.json", "pass the folder of a Hugging Face checkpoint")
    try:
        raw = json.loads(cfg_file.read_text())
        if not isinstance(raw, dict):
            raise ValueError("top level is not an object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({e})", "restore config.json from the original model") from None
    archs = raw.get("architectures") or []
    if not archs or not isinstance(archs, list) or not isinstance(archs[0], str):
        raise CheckpointError(f"{cfg_file} has no 'architectures' entry",
                              f'add e.g. "architectures": ["{supported()[0].name}"] to config.json')
    check_config(raw, cfg_file)
    # a quantization_config dsedge cannot import fails here, naming the format and the supported ones
    from .prequant import Prequant

    prequant = Prequant.from_config(raw["quantization_config"]) if "quantization_config" in raw else None
    spec = arch_for(archs[0])
    _require_transformers(spec)
    ckpt = Checkpoint(path=path, raw_config=raw, spec=spec,
                      weight_files=_weight_files(path, allow_pickle), allow_pickle=allow_pickle,
                      _prequant=prequant)
    if prequant is not None and not any(f.suffix == ".safetensors" for f in ckpt.weight_files):
        raise CheckpointError(f"{path} is quantized ({prequant.format}) but has no *.safetensors weights",
                              "pre-quantized checkpoints are imported from safetensors only: convert the weights")
    ckpt.index  # parse headers now: a truncated file fails before any work
    return ckpt


def _require_transformers(spec: ArchSpec) -> None:
    """The family's version floor (ArchSpec.min_transformers), read without importing transformers."""
    from importlib.metadata import version

    have = version("transformers")
    as_tuple = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])
    if as_tuple(have) < as_tuple(spec.min_transformers):
        raise CheckpointError(f"{spec.name} needs transformers >= {spec.min_transformers}; {have} is installed",
                              f"pip install 'transformers>={spec.min_transformers}'")


class _rope_warnings:
    """Collects transformers' warnings about rope parameters while a config loads, whatever the
    library's verbosity (dsedge sets it to errors), without printing them."""

    def __enter__(self) -> list[str]:
        import logging

        self.log = logging.getLogger("transformers.modeling_rope_utils")
        self.saved = self.log.level, self.log.propagate
        self.heard: list[str] = []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.heard.append(record.getMessage())
        self.log.addHandler(self.handler)
        self.log.setLevel(logging.WARNING)
        self.log.propagate = False
        return self.heard

    def __exit__(self, *exc) -> None:
        self.log.removeHandler(self.handler)
        self.log.level, self.log.propagate = self.saved
