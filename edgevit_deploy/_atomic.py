"""Atomic writes: a crash, ``kill -9`` or a full disk never leaves half a file under its final name.

Everything is written under a hidden temporary name in the destination folder (same file system, so the
final rename is atomic), flushed to disk (``fsync`` of the file, or of every file of a package directory),
then renamed over the final name; the folder itself is fsynced so that the rename survives a power cut.
On any exception the temporary file or folder is removed and the final name is untouched.

    with atomic_path(out / "model.onnx") as tmp:   # tmp: out/.model.onnx.tmp-XXXX.onnx
        torch.onnx.export(..., str(tmp))

A directory artifact (``.mlpackage``) is replaced in two renames (old -> hidden name, new -> final name,
then the old one is deleted); a crash between the two leaves the old package under its hidden name and no
package under the final name, never a mix of both.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"


def temp_sibling(final: Path) -> Path:
    """A fresh hidden name beside ``final`` that keeps its suffix (converters pick formats by suffix)."""
    return final.parent / f".{final.name}{TMP_MARK}{uuid.uuid4().hex[:8]}{final.suffix}"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the data files are synced anyway
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync a file, or every file and folder under a directory (deepest first)."""
    if path.is_dir():
        for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            if p.is_file() or p.is_dir():
                _fsync_path(p)
    _fsync_path(path)


def remove(path: Path) -> None:
    """Remove a file or a directory tree; no error when it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def commit(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` (file or directory) to ``final`` atomically, after flushing it to disk."""
    if not tmp.exists():
        raise FileNotFoundError(f"nothing was written to {tmp}")
    fsync_tree(tmp)
    if tmp.is_dir() and final.exists():
        old = temp_sibling(final)
        os.replace(final, old)  # a directory cannot be replaced in one rename: move the old one aside first
        os.replace(tmp, final)
        remove(old)
    else:
        if final.is_dir():
            remove(final)
        os.replace(tmp, final)
    _fsync_path(final.parent)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success move it to ``final``, on error delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(final)
    try:
        yield tmp
        commit(tmp, final)
    except BaseException:
        remove(tmp)
        raise


def write_bytes(final: str | Path, data: bytes) -> Path:
    final = Path(final)
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return final


def write_text(final: str | Path, text: str) -> Path:
    return write_bytes(final, text.encode())


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if p is not path:
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def stale_temporaries(folder: str | Path) -> list[Path]:
    """Hidden temporaries a killed run left in ``folder`` (never under a final name)."""
    return sorted(p for p in Path(folder).glob(f".*{TMP_MARK}*"))
