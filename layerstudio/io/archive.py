"""Reading ZIP containers (ORA and our bundles) defensively.

Archives come from users: they may be truncated, may claim huge uncompressed sizes (zip bombs)
or hold thousands of entries. These checks run before anything is decompressed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from ..errors import InvalidInputError
from ..limits import MAX_LAYERS, max_pixels
from .raster import read_file_bytes

__all__ = ["open_archive", "read_member"]


def _member_limit() -> int:
    # A 16-bit RGBA PNG of the largest allowed image, plus headroom for metadata.
    return max_pixels() * 8 + (1 << 20)


def open_archive(path: Path) -> zipfile.ZipFile:
    """Open a ZIP file or raise a clear error if it is not one, is corrupt, or is a bomb."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(read_file_bytes(path)))
    except InvalidInputError:
        raise
    except Exception:  # BadZipFile, or struct/overflow errors from damaged directories
        raise InvalidInputError(f"{path} is not a valid ZIP archive (corrupt or truncated)"
                                ) from None
    archive.filename = str(path)
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


def read_member(archive: zipfile.ZipFile, name: str, limit: int | None = None) -> bytes:
    """Read one entry (at most ``limit`` bytes), turning missing, encrypted, corrupt or
    oversized entries into clear errors."""
    where = f"{archive.filename}:{name}"
    limit = _member_limit() if limit is None else limit
    try:
        info = archive.getinfo(name)
        if info.flag_bits & 0x1:
            raise InvalidInputError(f"{where} is encrypted; LayerStudio reads only "
                                    "unencrypted archives")
        if info.file_size > limit:
            raise InvalidInputError(f"{where} is {info.file_size:,} bytes, above the limit "
                                    f"of {limit:,}")
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except KeyError:
        raise InvalidInputError(f"{where} is missing from the archive") from None
    except NotImplementedError:
        raise InvalidInputError(f"{where} uses a compression method LayerStudio does not "
                                "read (use deflate or none)") from None
    except InvalidInputError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, CRC mismatches, ...
        raise InvalidInputError(f"{where} is corrupt: {exc}") from None
    if len(data) > limit:
        raise InvalidInputError(f"{where} is larger than its declared size allows")
    return data
