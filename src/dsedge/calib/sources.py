"""Where calibration text comes from: a text file, JSON lines, the project's generated corpus, or
a Hugging Face dataset (online only). Every reader returns the records (one text, or one list of
chat messages, per record) and the sha256 of the bytes they were read from."""
from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .. import reference
from ..errors import UsageError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
MAX_CALIB_BYTES = 256 << 20


@dataclass
class SourceText:
    records: list            # str (text) or list[dict] (chat messages {"role", "content"})
    label: str               # what CalibData.source says
    sha256: str              # of the bytes the records were read from


def read_reference() -> SourceText:
    path = reference.calib_text_path()
    src = read_text_file(path)
    src.label = f"reference corpus ({path.name})"
    return src


def read_reference_text() -> SourceText:
    """The real-text reference's calibration split (held-out KJV passages, reference/text.py)."""
    path = reference.text_calib_path()
    src = read_text_file(path)
    src.label = f"real-text reference corpus (kjv/{path.name})"
    return src


def read_text_file(path: Path) -> SourceText:
    """One record per non-empty line."""
    raw = _read(path)
    text = raw.decode("utf-8", errors="replace")
    records = [line for line in text.splitlines() if line.strip()]
    if not records:
        raise UsageError(f"calibration file {path} is empty",
                         "pass a UTF-8 text file with one or more lines of in-domain text")
    return SourceText(records, str(path), hashlib.sha256(raw).hexdigest())


def read_jsonl(path: Path, field: str) -> SourceText:
    """One record per JSON line: the value of `field`, a string or a list of chat messages."""
    raw = _read(path)
    records = []
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}, line {n}: not valid JSON ({e.msg})",
                             "write one JSON object per line (JSON lines)") from None
        if not isinstance(obj, dict) or field not in obj:
            keys = ", ".join(obj) if isinstance(obj, dict) else type(obj).__name__
            raise UsageError(f"{path}, line {n}: no field {field!r} (found: {keys})",
                             "name the text's field with `field:` in the recipe's source "
                             "(a plain .jsonl passed to --calib is read from `text`)")
        records.append(_check_record(obj[field], f"{path}, line {n}, field {field!r}"))
    if not records:
        raise UsageError(f"calibration file {path} holds no JSON lines", "pass a non-empty .jsonl file")
    return SourceText(records, f"{path} [{field}]", hashlib.sha256(raw).hexdigest())


def read_hub(dataset: str, split: str, field: str, data_files: str | None, config: str | None,
             max_chars: int) -> SourceText:
    """The first records of a Hub dataset, streamed until max_chars of text (needs `datasets`)."""
    fix = (f"where the Hub is reachable, save the {field!r} field of {dataset} ({split}) as JSON lines and "
           f"pass --calib FILE.jsonl, or a recipe with `source: {{file: FILE.jsonl, field: {field}}}`; "
           f"a plain .txt file works too (one sample per line)")
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
               if os.environ.get(v, "0").lower() not in ("0", "", "false", "no", "off")]
    if offline:
        raise UsageError(f"calibration source is the Hugging Face dataset {dataset}, but {offline[0]} is set "
                         "(offline)", fix)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if not _reachable(endpoint):
        raise UsageError(f"calibration source is the Hugging Face dataset {dataset}, and the Hub ({endpoint}) "
                         "cannot be reached from this machine (offline)", fix)
    try:
        import datasets
    except ImportError:
        raise UsageError(f"calibration source is the Hugging Face dataset {dataset}, and the `datasets` "
                         "package is not installed", "pip install datasets; or " + fix) from None
    h = hashlib.sha256()
    records, chars = [], 0
    try:
        stream = datasets.load_dataset(dataset, config, data_files=data_files, split=split, streaming=True)
        for row in stream:
            rec = _check_record(row[field], f"{dataset} ({split}), field {field!r}")
            records.append(rec)
            blob = json.dumps(rec, ensure_ascii=False).encode()
            h.update(blob + b"\n")
            chars += len(blob)
            if chars >= max_chars:
                break
    except Exception as e:  # noqa: BLE001 - network, auth, missing split or field: same advice
        raise UsageError(f"cannot read the Hugging Face dataset {dataset} ({split}): "
                         f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}", fix) from None
    if not records:
        raise UsageError(f"the Hugging Face dataset {dataset} ({split}) returned no records", fix)
    return SourceText(records, f"hf:{dataset}" + (f"/{config}" if config else "") + f" [{split}, {field}]",
                      h.hexdigest())


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """A TCP connection to the Hub's host opens (fails fast offline, instead of download retries)."""
    u = urlsplit(url)
    try:
        socket.create_connection((u.hostname or "", u.port or (80 if u.scheme == "http" else 443)), timeout).close()
        return True
    except OSError:
        return False


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise UsageError(f"calibration file {path} does not exist",
                         "pass --calib with an existing .txt or .jsonl file, or a recipe name (dsedge "
                         "looks in calibration/*.yaml)")
    size = path.stat().st_size
    if size > MAX_CALIB_BYTES:
        raise UsageError(f"calibration file {path} is {size / 2**20:.0f} MiB, over the {MAX_CALIB_BYTES >> 20} MiB "
                         "limit (a few hundred windows of text are used)",
                         "pass a sample of the text (a few MB is plenty), or a recipe with samples / seq_len")
    return path.read_bytes()


def _check_record(value, where: str):
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value):
        return value
    raise UsageError(f"{where}: holds a {type(value).__name__}, not text or a list of chat messages",
                     "point `field:` at a string field (or at {role, content} messages with chat_template: on)")
