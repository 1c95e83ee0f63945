"""Caching: skip nodes whose code and inputs have not changed, across runs, processes and map items.

``Pipeline(..., cache=DiskCache(".cache"))`` caches every node (``@node(cache=False)``
opts out). A node's **key** is a digest of

* its *code*: the code that runs, from memory (never the source on disk): the bytecode,
  and what it reaches at call time (globals by value, the project's helpers and classes in
  any module, recursively; libraries by name and version), closures, defaults, decorators,
  a bound instance; and ``@node(version=...)`` (see :mod:`._code`);
* per parameter, either the *key of the upstream node* that produces it, or, for
  an external input (and for the output of an uncached upstream node), the input's
  *value*, hashed by its exact type and all of its state (:func:`hash_value`;
  :func:`register_hasher` for classes you do not own).

So a key is known from the inputs alone: :class:`~.lookup.CacheLookup` computes the keys of
a whole map slice up front and asks the cache for all of them in one query; a
downstream node never hashes a large upstream output. Changing a function's body
invalidates it and everything downstream; a comment, a docstring or an unrelated
node does not.

A value that cannot be hashed deterministically (a lock, an open file, a generator,
a cycle) makes the nodes reading it uncached for that call, with one
:class:`CacheWarning` naming the node and the type. Results are stored pickled,
behind a checksum: a hit is a fresh copy; a corrupt entry is a miss (with a
warning) and is overwritten. ``None`` is a result like any other; a node that
raises stores nothing.

The package: :mod:`.hashing` (values in :mod:`._values`, code in :mod:`._code`, which asks
:mod:`._where` whether code is a library's), :mod:`.storage` (the caches),
:mod:`.lookup` (the seam's ``Lookup`` that the cores and drivers ask; the keys it computes in
:mod:`._keys`, and :func:`explain` in :mod:`._explain`).
"""

from __future__ import annotations

from ._explain import explain
from .hashing import Unhashable, compute_signature, hash_code, hash_inputs, hash_value, register_hasher
from .storage import Cache, CacheWarning, DiskCache, MemoryCache

__all__ = [
    "Cache",
    "CacheWarning",
    "DiskCache",
    "MemoryCache",
    "Unhashable",
    "compute_signature",
    "explain",
    "hash_code",
    "hash_inputs",
    "hash_value",
    "register_hasher",
]
