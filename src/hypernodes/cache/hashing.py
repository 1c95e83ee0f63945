"""Hashing for cache keys: values by content and type, functions by their code.

:func:`hash_value` digests a value (``1``, ``1.0``, ``"1"`` and ``True`` differ;
never the salted ``hash()``); :func:`hash_code` a function's code as a key sees it.
Values live in :mod:`._values` (array libraries in :mod:`._arrays`), code in :mod:`._code`;
this module is their public face.
"""

from __future__ import annotations

from . import _arrays  # noqa: F401  (installs the numpy, pandas, pyarrow and torch handlers, lazily)
from ._code import hash_code
from ._values import Unhashable, compute_signature, hash_inputs, hash_value, register_hasher

__all__ = ["Unhashable", "compute_signature", "hash_code", "hash_inputs", "hash_value", "register_hasher"]
