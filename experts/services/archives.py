"""Zips assembled while they download, from files that are stored once (an export's
files, see services.shared), with Python's own `zipfile` writing to a stream it cannot
seek: no zip is stored, so a version's download does not store its base a second time.

The bytes are the same on every download (fixed dates, sorted names, stored not
compressed: weights do not shrink), so the size measured when the export is written is
the download's Content-Length.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
DATE = (1980, 1, 1, 0, 0, 0)  # zip's first date: the same bytes every time

# (name in the zip, size in bytes, a function that opens the file for reading)
Entry = tuple[str, int, Callable[[], BinaryIO]]


class _Sink(io.RawIOBase):
    """What `zipfile` writes, held until the generator hands it on (cannot seek)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def zip_chunks(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The zip of `entries`, in pieces of about a megabyte."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for name, size, open_file in entries:
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.file_size = size  # chooses zip64 for files over 4 GiB before they are written
            info.external_attr = 0o644 << 16
            with open_file() as src, archive.open(info, "w") as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def folder_entries(folder: Path, top: str) -> list[Entry]:
    """A local folder's files as entries under `top/` in the zip."""
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    return [
        (f"{top}/{name}", path.stat().st_size, lambda path=path: open(path, "rb"))
        for name, path in sorted(files.items())  # the order of a manifest's names
    ]


def zip_size(entries: Iterable[Entry]) -> int:
    """The bytes `zip_chunks(entries)` gives (it reads the files: the CRCs are in it)."""
    return sum(len(chunk) for chunk in zip_chunks(entries))
