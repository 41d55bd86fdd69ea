"""Reading IDX files, the format of MNIST, Fashion-MNIST and their relatives.

An IDX file is a 4-byte big-endian magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the data in row-major order. Fashion-MNIST uses type
``0x08`` (unsigned byte): images are ``N x 28 x 28`` (ndim 3), labels ``N`` (ndim 1). Files may
be gzipped (Debian ships ``*.gz``; torchvision unpacks them). Every inconsistency -- a wrong
magic number, a wrong number of dimensions, a body shorter or longer than the header promises, a
broken gzip stream -- is a :class:`~hafcls.errors.HafclsError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from hafcls.errors import HafclsError

#: IDX type codes -> numpy dtypes (multi-byte types are big-endian).
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path, fix: str) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HafclsError(f"No such file: {path}.", fix) from None
    except OSError as err:
        raise HafclsError(f"Cannot read {path} ({err.strerror}).", fix) from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise HafclsError(f"{path} is a damaged gzip file ({type(err).__name__}: {err}).",
                          fix) from None


def read_idx(path: str | os.PathLike, ndim: int | None = None,
             fix: str = "re-download or re-install the file.") -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped or not), checked against its header.

    ``ndim`` (when given) is the number of dimensions the caller expects (3 for images, 1 for
    labels). The returned array owns its memory and has native byte order.
    """
    path = Path(path)
    data = read_bytes(path, fix)
    if len(data) < 4:
        raise HafclsError(f"{path} is too short to be an IDX file ({len(data)} bytes).", fix)
    zero, dtype_code, dims = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code not in IDX_TYPES or dims == 0:
        raise HafclsError(
            f"{path} is not an IDX file (magic number 0x{data[:4].hex()}; expected 0x0000 "
            f"followed by a type code and the number of dimensions, e.g. 0x00000803).", fix)
    if ndim is not None and dims != ndim:
        raise HafclsError(f"{path} holds a {dims}-dimensional array; expected a {ndim}-dimensional "
                          f"one (magic number 0x{data[:4].hex()}).", fix)
    header = 4 + 4 * dims
    if len(data) < header:
        raise HafclsError(f"{path} is truncated inside its header.", fix)
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    dtype = IDX_TYPES[dtype_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header
    if body != expected:
        state = "truncated" if body < expected else "longer than its header says"
        raise HafclsError(f"{path} is {state}: the header promises {'x'.join(map(str, shape))} "
                          f"values ({expected:,} bytes) but {body:,} bytes follow.", fix)
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)
