"""Whom a cache directory trusts: who may write to it, and the entries' signatures.

Entries are pickles, and unpickling runs code: whoever can write to a cache
directory runs code in every process that reads it. So a :class:`~.storage.DiskCache`
refuses a directory (or database file) that another user owns or can write to, as
ssh refuses such a key file; and with a secret (kept outside the directory) every
entry carries a keyed BLAKE2b MAC over its key and bytes, checked before anything
is unpickled, so that even a writable directory cannot plant an entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

__all__ = ["SECRET_ENV", "check_private", "secret_key", "sign", "verify"]

SECRET_ENV = "HYPERNODES_CACHE_SECRET"
"""The environment variable a ``DiskCache`` without ``secret=`` takes its signing secret from."""

_SIGNED = b"HS1"  # a signed entry: this tag, the 16-byte MAC, then the entry's bytes
_MAC_SIZE = 16
_HEAD = len(_SIGNED) + _MAC_SIZE


def secret_key(secret: str | bytes | None) -> bytes | None:
    """The signing key for ``secret`` (or for :data:`SECRET_ENV` when None); None: entries unsigned.

    Raises:
        TypeError: ``secret`` is neither str, bytes nor None.
        ValueError: ``secret`` is empty.
    """
    if secret is None:
        secret = os.environ.get(SECRET_ENV) or None
        if secret is None:
            return None
    if isinstance(secret, str):
        secret = secret.encode()
    elif not isinstance(secret, bytes):
        raise TypeError(f"DiskCache(secret=...) takes str or bytes (or None), got a {type(secret).__name__}.")
    if not secret:
        raise ValueError("DiskCache(secret=...) is empty: give a long random string, or None for unsigned entries.")
    # BLAKE2b takes keys of at most 64 bytes: a longer secret is hashed down to one.
    return secret if len(secret) <= 64 else hashlib.blake2b(secret).digest()


def _mac(key: bytes, signature: str, blob: bytes) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=_MAC_SIZE)
    h.update(signature.encode())
    h.update(b"\0")  # a signature is hex: the separator keeps signature and bytes apart
    h.update(blob)
    return h.digest()


def sign(key: bytes, signature: str, blob: bytes) -> bytes:
    """``blob`` as stored under ``signature`` with signing key ``key``: tagged and MACed."""
    return _SIGNED + _mac(key, signature, blob) + blob


def verify(key: bytes, signature: str, stored: bytes) -> bytes | None:
    """The entry's bytes when ``stored`` carries a valid MAC for ``signature``; None otherwise
    (unsigned, forged, or moved from another signature)."""
    if stored[: len(_SIGNED)] != _SIGNED:
        return None
    blob = stored[_HEAD:]
    if not hmac.compare_digest(stored[len(_SIGNED) : _HEAD], _mac(key, signature, blob)):
        return None
    return blob


def check_private(path: Path) -> None:
    """Refuse ``path`` when another user owns it or can write to it.

    Group- or world-writable counts unless it is a directory with the sticky bit (as
    ``/tmp``: others may add files there, not replace ours). Owned by root is allowed,
    as ssh allows it. Where there are no POSIX users (Windows) nothing is checked.

    Raises:
        PermissionError: naming the path, its mode and owner, and the fix.
    """
    if not hasattr(os, "geteuid"):
        return
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    me = os.geteuid()
    sticky_dir = stat.S_ISDIR(st.st_mode) and bool(st.st_mode & stat.S_ISVTX)
    others_write = bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)) and not sticky_dir
    if st.st_uid in (me, 0) and not others_write:
        return
    mode = stat.filemode(st.st_mode)
    why = (
        f"it is owned by uid {st.st_uid}, not by you (uid {me}) or root"
        if st.st_uid not in (me, 0)
        else "other users can write to it"
    )
    fix = (
        f"`chmod go-w {path}`"
        if st.st_uid in (me, 0)
        else f"use a directory of your own (or `chown {me} {path}` if you trust its owner)"
    )
    raise PermissionError(
        f"DiskCache refuses {path} (mode {mode}, owner uid {st.st_uid}): {why}. Cache entries are pickles, so "
        f"whoever can write there runs code in every process that reads the cache. Fix: {fix}."
    )
