r"""Find the images of a dataset: a folder tree ``<root>/<split>/<label>/**/<image>`` or a
manifest file (CSV or Parquet with columns ``path``, ``split`` and optional ``label``).

A folder tree may also hold drops that arrive whole: ``<root>/drops/<drop>/<split>/<label>/...``,
where the split and label are read below the drop's folder. Marker files (``_SUCCESS``) are not
inputs.

Nothing is dropped silently: every input that cannot become an image record (a file outside
any split folder, a manifest row without a split, a missing file, a path listed twice) comes
back as a :class:`SourceProblem` with the reason, and ends up in the ``image_errors`` table.

Paths are kept as text that is valid UTF-8 (Parquet and DuckDB store nothing else), readable and
reversible: :func:`stored_path` writes each byte of a name that is not UTF-8 (names copied from
old Windows shares and zip archives: Latin-1 ``été.jpg``) as ``\xNN`` and a backslash as ``\\``,
and :func:`local_path` gives the name back to open the file. Every other path stays as it is.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import polars as pl

MANIFEST_SUFFIXES = {".csv", ".parquet", ".pq"}
# Drops that arrive whole: <root>/drops/<drop name>/<split>/<label>/..., complete once the marker
# file is in the drop's folder (or once nothing in it has changed for a while; see ``changes``).
DROPS_FOLDER = "drops"
READY_MARKER = "_SUCCESS"
# Python hands a byte b >= 0x80 that is not UTF-8 over as the lone surrogate U+DC00 + b.
_ESCAPED = re.compile(r"\\(\\|x[89a-f][0-9a-f])")


def stored_path(raw: str) -> str:
    """``raw`` (as the operating system gave it) as the store keeps it: see the module."""
    if "\\" not in raw and (raw.isascii() or not _undecodable(raw)):
        return raw
    return "".join(
        "\\\\" if char == "\\" else f"\\x{ord(char) - 0xDC00:02x}" if "\udc80" <= char <= "\udcff" else char
        for char in raw
    )


def local_path(stored: str) -> str:
    """The path to open for a :func:`stored_path`."""
    if "\\" not in stored:
        return stored
    return _ESCAPED.sub(lambda match: "\\" if match[1] == "\\" else chr(0xDC00 + int(match[1][1:], 16)), stored)


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class ImageSource:
    """One input image: ``path`` is relative to the data root (absolute if listed so)."""

    path: str
    split: str
    label: str | None
    file: str  # where to read it
    bytes: int | None = None  # size and modification time when listed (None: not looked at yet)
    mtime_ns: int | None = None


@dataclass(frozen=True)
class SourceProblem:
    path: str
    split: str | None
    label: str | None
    reason: str


@dataclass(frozen=True)
class DatasetSources:
    root: Path
    images: list[ImageSource]
    problems: list[SourceProblem]


class DatasetError(ValueError):
    """The dataset location itself is unusable (missing, empty, malformed manifest)."""


def data_root(data: str | Path) -> Path:
    """The folder that image paths are relative to: the dataset folder, or the manifest's folder."""
    location = Path(data).expanduser().resolve()
    return location if location.is_dir() else location.parent


def discover(data: str | Path, allowed_roots: Sequence[str | Path] = ()) -> DatasetSources:
    """Read a dataset from a folder tree or a manifest file, sorted by path. A manifest's rows may
    only name files below its own folder or one of ``allowed_roots`` (see :func:`_outside`)."""
    location = Path(data).expanduser().resolve()
    if not location.exists():
        raise DatasetError(f"dataset not found: {location}")
    if location.is_dir():
        sources = _discover_tree(location)
    elif location.suffix.lower() in MANIFEST_SUFFIXES:
        sources = _read_manifest(location, [location.parent, *allowed_roots])
    else:
        raise DatasetError(
            f"{location} is neither a folder nor a manifest file ({', '.join(sorted(MANIFEST_SUFFIXES))})"
        )
    if not sources.images and not sources.problems:
        raise DatasetError(f"no input files found in {location}")
    return sources


def _walk(root: str, problems: list[SourceProblem]) -> list[tuple[str, str, int, int]]:
    """(path relative to ``root``, full path, size, modification time in ns) of every file below
    ``root``, skipping hidden names (.DS_Store, .git, editor swap files: documented as skipped)
    and following symbolic links. A link back to one of its own ancestors (a loop), a link that
    leads nowhere, a file that cannot be looked at and a folder that cannot be listed are recorded
    as problems. One ``scandir`` per folder and one ``stat`` per file (the size and time tell a
    later run whether the file changed)."""
    files: list[tuple[str, str, int, int]] = []
    # each folder to list: its path relative to root, its path, its real path, its ancestors' real paths
    pending = [("", root, root, frozenset({root}))]
    while pending:
        relative, folder, real, ancestors = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = [entry for entry in listing if not entry.name.startswith(".") and entry.name != READY_MARKER]
        except OSError as error:
            problems.append(SourceProblem(relative or ".", None, None, f"folder not listed: {error.strerror}"))
            continue
        for entry in entries:
            name = stored_path(entry.name)
            path = f"{relative}/{name}" if relative else name
            try:
                is_folder = entry.is_dir()
            except OSError as error:  # links that lead to each other: ELOOP
                problems.append(SourceProblem(path, *_split_and_label(path), _unreachable(entry, error)))
                continue
            if not is_folder:
                try:
                    stat = entry.stat()
                except OSError as error:
                    problems.append(SourceProblem(path, *_split_and_label(path), _unreachable(entry, error)))
                    continue
                if not S_ISREG(stat.st_mode):  # a FIFO would block the reader forever
                    problems.append(SourceProblem(path, *_split_and_label(path), "not a regular file"))
                    continue
                files.append((path, stored_path(entry.path), stat.st_size, stat.st_mtime_ns))
                continue
            target = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
            if target in ancestors:
                problems.append(SourceProblem(path, None, None, "symbolic link loop: folder not followed"))
            else:
                pending.append((path, entry.path, target, ancestors | {target}))
    return sorted(files)


def _unreachable(entry: os.DirEntry, error: OSError) -> str:
    """Why an entry cannot be looked at."""
    if error.errno == errno.ELOOP:
        return "symbolic link loop: file not read"
    return "broken symbolic link" if entry.is_symlink() else f"cannot stat: {error.strerror}"


def drop_folder(path: str) -> str | None:
    """The drop a path belongs to (``drops/<drop>/...``), or None for the tree that grows in place."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == DROPS_FOLDER else None


def _split_and_label(path: str) -> tuple[str | None, str | None]:
    """``<split>/<label>/...`` (below ``drops/<drop>/`` for a drop's files): a file directly in a
    split folder has no label."""
    parts = path.split("/")
    if drop_folder(path) is not None:
        parts = parts[2:]
    return (parts[0] if len(parts) > 1 else None), (parts[1] if len(parts) > 2 else None)


def _discover_tree(root: Path) -> DatasetSources:
    images: list[ImageSource] = []
    problems: list[SourceProblem] = []
    for path, file, size, modified in _walk(str(root), problems):  # root is resolved: its own path is real
        split, label = _split_and_label(path)
        if split is None:
            problems.append(SourceProblem(path, None, None, "not inside a split folder (<root>/<split>/...)"))
        else:
            images.append(ImageSource(path, split, label, file, size, modified))
    return DatasetSources(root, images, sorted(problems, key=lambda problem: problem.path))


def _read_manifest_table(manifest: Path) -> pl.DataFrame:
    try:
        if manifest.suffix.lower() == ".csv":
            return pl.read_csv(manifest, infer_schema=False)
        return pl.read_parquet(manifest)
    except Exception as error:  # polars raises several error types for malformed files
        raise DatasetError(f"cannot read manifest {manifest}: {error}") from error


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _absolute(path: str | Path) -> Path:
    """``path`` made absolute with its ``..`` resolved as text (symbolic links not followed)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _outside(file: Path, roots: Sequence[Path]) -> bool:
    """True when ``file`` is below none of ``roots`` (both as :func:`_absolute` makes them). A
    manifest is data from elsewhere: a row ``../../home/me/.ssh/key.png`` must not be read, decoded
    and shown in reports. Symbolic links are the user's own layout and are not followed for this
    test (a manifest of a symlink farm stays usable)."""
    where = _absolute(file)
    return not any(where.is_relative_to(root) for root in roots)


def _read_manifest(manifest: Path, allowed: Sequence[str | Path]) -> DatasetSources:
    table = _read_manifest_table(manifest)
    missing = {"path", "split"} - set(table.columns)
    if missing:
        raise DatasetError(f"manifest {manifest} lacks column(s) {sorted(missing)}; it has {table.columns}")
    root = manifest.parent
    allowed_roots = [_absolute(folder) for folder in allowed]
    labels = table["label"] if "label" in table.columns else [None] * table.height
    images: dict[str, ImageSource] = {}
    problems: list[SourceProblem] = []
    for row_number, (raw_path, raw_split, raw_label) in enumerate(
        zip(table["path"], table["split"], labels, strict=True), start=2 if manifest.suffix == ".csv" else 1
    ):
        path, split, label = _optional_text(raw_path), _optional_text(raw_split), _optional_text(raw_label)
        if path is None:
            problems.append(SourceProblem(f"<row {row_number}>", split, label, "manifest row has no path"))
            continue
        if split is None:
            problems.append(SourceProblem(path, None, label, f"manifest row {row_number} has no split"))
            continue
        if path in images:
            first = images[path]
            problems.append(
                SourceProblem(
                    path,
                    split,
                    label,
                    f"listed again at row {row_number}; first listing (split {first.split!r}) is used",
                )
            )
            continue
        file = Path(path) if Path(path).is_absolute() else root / path
        if _outside(file, allowed_roots):
            problems.append(
                SourceProblem(
                    stored_path(path), split, label, "outside the allowed roots (the manifest's folder, --allow-root)"
                )
            )
            continue
        if not file.is_file():
            reason = "not a regular file" if file.exists() else "file not found"
            problems.append(SourceProblem(stored_path(path), split, label, reason))
            continue
        images[path] = ImageSource(stored_path(path), split, label, stored_path(str(file)))
    return DatasetSources(root, sorted(images.values(), key=lambda image: image.path), problems)
