"""Scene names as file names, both ways: the one place that decides what a scene is called on disk.

    encode_name("Area_5/office_1")              # 'Area_5%2Foffice_1'  the scene cache's files (data/store.py)
    encode_name_underscored("Area_5/office_1")  # 'Area_5__office_1'   pseudo-label folders, benchmark submissions

Both are lossless (two scene names never share a file) and reversible (`decode_name`,
`decode_name_underscored`). The two styles differ because each kept the names it already had on disk:
scene caches, pseudo-label caches and submissions written before keep their names for every real dataset.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from freepoint_bench.errors import DataError

__all__ = ["decode_name", "decode_name_underscored", "encode_name", "encode_name_underscored"]

_KEPT = "-_.~"  # besides letters and digits, what the underscored style writes as is


def encode_name(name: str) -> str:
    """Returns a file-name-safe, reversible encoding of a scene name (percent-encoding, no ``/``)."""
    encoded = quote(name, safe="-_.~ ")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded  # no hidden files


def decode_name(stem: str) -> str:
    """Returns the scene name of an encoded file stem (inverse of encode_name)."""
    return unquote(stem)


def encode_name_underscored(name: str) -> str:
    """Returns a reversible file name for a scene name that writes ``/`` as ``__`` (``Area_5__office_1``).

    Letters, digits and ``-_.~`` stay as they are; every other character is percent-encoded (``a b`` →
    ``a%20b``), and so is an ``_`` beside another ``_`` or a ``/``, so that ``__`` always stands for ``/``.
    """
    if not name:
        raise DataError("a scene name is empty: scene names name files, give every scene one")
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("__")
        elif ch == "_" and {name[i - 1 : i], name[i + 1 : i + 2]} & {"_", "/"}:
            out.append("%5F")
        elif ch.isalnum() or ch in _KEPT:
            out.append(ch)
        else:
            out.append(quote(ch, safe=""))
    encoded = "".join(out)
    return "%2E" + encoded[1:] if encoded in (".", "..") else encoded  # never this folder or its parent


def decode_name_underscored(stem: str) -> str:
    """Returns the scene name of a stem written by encode_name_underscored (its inverse)."""
    return unquote(stem.replace("__", "/"))
