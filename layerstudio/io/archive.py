"""Reading ZIP containers (ORA and our bundles) defensively.

Archives come from users: they may be truncated, may claim huge uncompressed sizes (zip bombs)
or hold thousands of entries. These checks run before anything is decompressed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import InvalidInputError
from ..limits import MAX_LAYERS, max_pixels

__all__ = ["open_archive", "read_member"]


def _member_limit() -> int:
    # A 16-bit RGBA PNG of the largest allowed image, plus headroom for metadata.
    return max_pixels() * 8 + (1 << 20)


def open_archive(path: Path) -> zipfile.ZipFile:
    """Open a ZIP file or raise a clear error if it is not one, is corrupt, or is a bomb."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InvalidInputError(f"{path} is not a valid ZIP archive (corrupt or truncated)"
                                ) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = archive.infolist()
    if len(entries) > 4 * MAX_LAYERS + 16:
        archive.close()
        raise InvalidInputError(f"{path} holds {len(entries)} entries; too many to be a "
                                "layered image")
    for info in entries:
        if info.file_size > _member_limit():
            archive.close()
            raise InvalidInputError(f"{path}: entry {info.filename!r} claims "
                                    f"{info.file_size:,} bytes, above the size limit")
    return archive


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """Read one entry, turning missing or corrupt entries into clear errors."""
    where = f"{archive.filename}:{name}"
    try:
        with archive.open(name) as handle:
            data = handle.read(_member_limit() + 1)
    except KeyError:
        raise InvalidInputError(f"{where} is missing from the archive") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{where} is corrupt: {exc}") from None
    if len(data) > _member_limit():
        raise InvalidInputError(f"{where} is larger than its declared size allows")
    return data
