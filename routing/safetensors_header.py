"""The one place that reads a safetensors header, strictly, without loading tensors.

safetensors itself accepts duplicate JSON keys, NUL bytes in names, huge
metadata and any dtype; an upload validator must not. Every problem found is
raised as a `ContractError` with a code and a message a person can act on.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_METADATA_BYTES = 64 * 1024
MAX_NAME_LENGTH = 300
MAX_INT_DIGITS = 20  # a uint64 byte offset has at most 20 digits
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


class ContractError(ValueError):
    """A file that breaks the expert contract. `code` names the kind of problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    header_size: int = 0
    file_size: int = 0


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ContractError("duplicate_key", f"the header names {key!r} twice")
        out[key] = value
    return out


class _TooManyDigits(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooManyDigits(
            f"holds an integer of {len(digits.lstrip('-')):,} digits; "
            f"at most {MAX_INT_DIGITS} are allowed"
        )
    return int(digits)


def parse_json(text: str, code: str, refusal: str, *, pairs_hook=None):
    """JSON from an upload, or a ContractError with `code` and the `refusal` message plus
    the reason: never the decoder's own ValueError (a 5,000-digit number) or
    RecursionError (200,000 nested brackets)."""
    try:
        return json.loads(text, object_pairs_hook=pairs_hook, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        reason = exc.msg
    except RecursionError:
        reason = "it nests too deeply"
    except _TooManyDigits as exc:
        reason = f"it {exc}"
    raise ContractError(code, f"{refusal} ({reason})")


def read_header(path: str | os.PathLike) -> Header:
    """Read and check the header of a safetensors file; never reads tensor data."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ContractError(
                "not_safetensors",
                f"not a safetensors file: {file_size} bytes is too short for the 8-byte "
                "header length",
            )
        (n,) = struct.unpack("<Q", prefix)
        if n == 0 or n > MAX_HEADER_BYTES:
            raise ContractError(
                "not_safetensors",
                f"not a safetensors file: the header length {n} is outside 1..{MAX_HEADER_BYTES}",
            )
        if 8 + n > file_size:
            raise ContractError(
                "truncated",
                f"the file is truncated: the header needs {8 + n} bytes, the file has {file_size}",
            )
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ContractError(
            "not_safetensors", "not a safetensors file: the header is not UTF-8 text"
        ) from None
    doc = parse_json(
        text.rstrip(" "),
        "not_safetensors",
        "not a safetensors file: the header is not JSON",
        pairs_hook=_no_duplicates,
    )
    if not isinstance(doc, dict):
        raise ContractError(
            "not_safetensors", "not a safetensors file: the header is not an object"
        )

    metadata = doc.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ContractError("bad_metadata", "__metadata__ must map strings to strings")
    meta_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if meta_bytes > MAX_METADATA_BYTES:
        raise ContractError(
            "bad_metadata",
            f"__metadata__ is {meta_bytes} bytes; at most {MAX_METADATA_BYTES} are allowed",
        )

    tensors: dict[str, TensorInfo] = {}
    for name, entry in doc.items():
        if not name or len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 for c in name):
            raise ContractError(
                "bad_name", f"tensor name {name!r} is empty, too long or has control characters"
            )
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ContractError(
                "bad_entry", f"tensor {name!r} must have exactly dtype, shape and data_offsets"
            )
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise ContractError(
                "bad_dtype",
                f"tensor {name!r} has dtype {dtype!r}; allowed: {', '.join(DTYPE_SIZES)}",
            )
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ContractError("bad_entry", f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ContractError("bad_offsets", f"tensor {name!r} has invalid data_offsets")
        start, end = offsets
        if end - start != math.prod(shape) * DTYPE_SIZES[dtype]:
            raise ContractError(
                "bad_offsets",
                f"tensor {name!r}: data_offsets span {end - start} bytes but shape {shape} "
                f"of {dtype} needs {math.prod(shape) * DTYPE_SIZES[dtype]}",
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), start, end)

    # Offsets must tile the data section exactly: no gaps, overlaps or tails.
    position = 0
    for name, info in sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if info.start != position:
            raise ContractError(
                "bad_offsets",
                f"tensor {name!r} starts at byte {info.start}; expected {position} "
                "(offsets must be contiguous)",
            )
        position = info.end
    data_size = file_size - 8 - n
    if position != data_size:
        code = "truncated" if position > data_size else "bad_offsets"
        raise ContractError(
            code,
            f"the tensors need {position} data bytes but the file holds {data_size}"
            + (" (the file is truncated)" if code == "truncated" else ""),
        )
    return Header(tensors=tensors, metadata=metadata, header_size=n, file_size=file_size)


def rewrite(path: str | os.PathLike, out, rename, metadata: dict[str, str]) -> None:
    """Write the checked safetensors file at `path` to the binary stream `out` with its
    tensors renamed by `rename(name)` (None leaves a tensor out) and `metadata` as its
    metadata, copying each tensor's bytes as they are (any dtype; no framework needed)."""
    header = read_header(path)
    entries, kept, position = {}, [], 0
    for name, info in sorted(header.tensors.items(), key=lambda kv: kv[1].start):
        new = rename(name)
        if new is None:
            continue
        size = info.end - info.start
        entries[new] = {"dtype": info.dtype, "shape": list(info.shape),
                        "data_offsets": [position, position + size]}  # fmt: skip
        kept.append(info)
        position += size
    doc = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    doc += b" " * (-len(doc) % 8)  # the data section starts 8-byte aligned
    out.write(struct.pack("<Q", len(doc)) + doc)
    with open(path, "rb") as f:
        for info in kept:
            f.seek(8 + header.header_size + info.start)
            out.write(f.read(info.end - info.start))
