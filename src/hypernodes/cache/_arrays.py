"""Value keys for array libraries: numpy, pandas, pyarrow, torch (see :mod:`._values`).

Each library's handlers are installed into :mod:`._values`'s dispatch the first time a value
is keyed after the library was imported (dask's ``register_lazy``): hashing never imports
one. Content is hashed from buffers in one blake2b pass, never element by element, except
where the buffer holds pointers (object arrays, numpy's variable-width strings): there each
element goes back through the dispatch (``_values._feed_buffer`` says how buffers are hashed).
The keys cover what a node can observe: dtype
(field names, byte order, units, time zones, categories), shape, subclass, masks, labels,
names, ``attrs`` and flags; not the memory layout (strides, chunking), where a difference
only misses.
"""

from __future__ import annotations

import sys
from typing import Any

from . import _values
from ._values import Handler, Unhashable, _enter, _feed, _feed_buffer, _feed_reduced, _instance_state, _name, _tname

__all__: list[str] = []


def _register(cls: type, handler: Handler, subclasses: bool = False) -> None:
    _values._LIBRARY[cls] = (handler, subclasses)


# ---- numpy ---------------------------------------------------------------------------------------

_BUFFER_KINDS = frozenset("biufcmMSUV")  # dtypes whose buffer is their content (no pointers)


def _dtype_key(dt: Any) -> bytes:
    # .str has the byte order and size; repr adds field names, offsets and alignment.
    return _name(dt.str) + _name(repr(dt))


def _feed_array_content(h: Any, a: Any, active: set[int]) -> None:
    """``a``: an ndarray (the base class's view): dtype, shape and content, independent of strides."""
    np = sys.modules["numpy"]
    dt = a.dtype
    h.update(b"a" + _dtype_key(dt) + b"%r" % (a.shape,))
    if dt.hasobject or dt.kind not in _BUFFER_KINDS:
        # Pointers in the buffer: each element through the dispatch, as stored (iterating an object
        # array yields its objects; tolist() would turn numpy scalars into Python ones).
        items = list(a.ravel()) if dt.kind == "O" else a.ravel().tolist()
        _feed(h, items, active)
        return
    _feed_buffer(h, np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _feed_ndarray(h: Any, v: Any, active: set[int]) -> None:
    np = sys.modules["numpy"]
    t = type(v)
    if t is np.ndarray:
        _feed_array_content(h, v, active)
        return
    ma = sys.modules.get("numpy.ma")
    _enter(v, active)
    h.update(b"A" + _tname(t))
    _feed_array_content(h, v.view(np.ndarray), active)
    if ma is not None and isinstance(v, ma.MaskedArray):
        # The data under the mask too: a node may read .data. The fill value as set (None until
        # read: reading .fill_value would store the default, and np.ma.masked refuses that).
        _feed(h, (v.mask, getattr(v, "_fill_value", None), v.hardmask), active)
    if t not in (np.matrix, np.memmap, np.recarray) and t.__module__.split(".")[0] != "numpy":
        _feed(h, _instance_state(v), active)  # a user's subclass: its own attributes
    active.discard(id(v))


def _feed_np_scalar(h: Any, v: Any, active: set[int]) -> None:
    dt = v.dtype
    h.update(b"g" + _tname(type(v)) + _dtype_key(dt))
    if dt.hasobject or dt.kind not in _BUFFER_KINDS:
        _feed(h, v.item(), active)
    else:
        _feed(h, v.tobytes(), active)


def _feed_np_dtype(h: Any, v: Any, active: set[int]) -> None:
    h.update(b"D" + _dtype_key(v))


def _install_numpy() -> None:
    np = sys.modules["numpy"]
    _register(np.ndarray, _feed_ndarray, subclasses=True)
    _register(np.generic, _feed_np_scalar, subclasses=True)
    _register(np.dtype, _feed_np_dtype, subclasses=True)


# ---- pandas --------------------------------------------------------------------------------------


def _feed_pd_dtype(h: Any, dt: Any, active: set[int]) -> None:
    h.update(b"p" + _tname(type(dt)) + _name(str(dt)))
    pd = sys.modules["pandas"]
    if isinstance(dt, pd.CategoricalDtype):
        _feed(h, (dt.categories, dt.ordered), active)


def _feed_pd_values(h: Any, arr: Any, active: set[int]) -> None:
    """The values behind a column or an index: their backing buffers (the dtype is fed apart)."""
    np = sys.modules["numpy"]
    h.update(b"v" + _tname(type(arr)))
    if isinstance(arr, np.ndarray):
        _feed(h, arr, active)
    elif hasattr(arr, "_pa_array"):  # Arrow-backed (strings by default since pandas 3)
        _feed(h, arr._pa_array, active)
    elif isinstance(getattr(arr, "_ndarray", None), np.ndarray):  # numpy, datetimes, categorical codes
        _feed(h, arr._ndarray, active)
    elif isinstance(getattr(arr, "_data", None), np.ndarray) and isinstance(getattr(arr, "_mask", None), np.ndarray):
        _feed(h, (arr._data, arr._mask), active)  # nullable ints, floats, booleans
    else:
        _feed_reduced(h, arr, active)


def _feed_pd_extras(h: Any, v: Any, active: set[int]) -> None:
    # State a node can read besides the data: attrs, flags, and a subclass's declared _metadata.
    extras = {name: getattr(v, name, None) for name in getattr(type(v), "_metadata", ())}
    _feed(h, (v.attrs, v.flags.allows_duplicate_labels, extras), active)


def _feed_pd_frame(h: Any, v: Any, active: set[int]) -> None:
    _enter(v, active)
    h.update(b"P" + _tname(type(v)) + b"%r" % (v.shape,))
    _feed_pd_extras(h, v, active)
    _feed(h, v.columns, active)
    _feed(h, v.index, active)
    for i in range(v.shape[1]):
        column = v.iloc[:, i]
        _feed_pd_dtype(h, column.dtype, active)
        _feed_pd_values(h, column.array, active)
    active.discard(id(v))


def _feed_pd_series(h: Any, v: Any, active: set[int]) -> None:
    _enter(v, active)
    h.update(b"Q" + _tname(type(v)))
    _feed_pd_extras(h, v, active)
    _feed(h, v.name, active)
    _feed(h, v.index, active)
    _feed_pd_dtype(h, v.dtype, active)
    _feed_pd_values(h, v.array, active)
    active.discard(id(v))


def _feed_pd_index(h: Any, v: Any, active: set[int]) -> None:
    pd = sys.modules["pandas"]
    _enter(v, active)
    h.update(b"X" + _tname(type(v)))
    _feed(h, tuple(v.names), active)
    if isinstance(v, pd.RangeIndex):
        _feed(h, (v.start, v.stop, v.step), active)
    elif isinstance(v, pd.MultiIndex):
        _feed(h, (list(v.levels), list(v.codes)), active)
    else:
        _feed_pd_dtype(h, v.dtype, active)
        _feed(h, getattr(v, "freqstr", None), active)
        _feed_pd_values(h, v.array, active)
    active.discard(id(v))


def _feed_pd_categorical(h: Any, v: Any, active: set[int]) -> None:
    h.update(b"C" + _tname(type(v)))
    _feed_pd_dtype(h, v.dtype, active)
    _feed(h, v.codes, active)


def _install_pandas() -> None:
    pd = sys.modules["pandas"]
    _register(pd.DataFrame, _feed_pd_frame, subclasses=True)  # subclasses: their _metadata is fed
    _register(pd.Series, _feed_pd_series, subclasses=True)
    _register(pd.Index, _feed_pd_index, subclasses=True)  # DatetimeIndex & co.: their dtype and freq are fed
    _register(pd.Categorical, _feed_pd_categorical)


# ---- pyarrow -------------------------------------------------------------------------------------


def _feed_arrow(h: Any, v: Any, active: set[int]) -> None:
    # The IPC stream: schema (names, types, metadata), dictionaries and every buffer, with the
    # offsets of sliced arrays applied. Raw buffers would not do: a sliced child's offset is not
    # in them. A difference in chunking only misses.
    pa = sys.modules["pyarrow"]
    if isinstance(v, pa.Array):
        v = pa.RecordBatch.from_arrays([v], names=[""])
    elif isinstance(v, pa.ChunkedArray):
        v = pa.Table.from_arrays([v], names=[""])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, v.schema) as writer:
        writer.write(v)
    h.update(b"W" + _tname(type(v)))
    _feed_buffer(h, sink.getvalue())


def _install_pyarrow() -> None:
    pa = sys.modules["pyarrow"]
    for cls in (pa.Array, pa.ChunkedArray, pa.Table, pa.RecordBatch):
        _register(cls, _feed_arrow, subclasses=cls is pa.Array)  # Int64Array & co. are pa.Array's


# ---- torch ---------------------------------------------------------------------------------------


def _feed_tensor(h: Any, v: Any, active: set[int]) -> None:
    torch = sys.modules["torch"]
    if v.layout != torch.strided or v.is_quantized or v.device.type == "meta":
        raise Unhashable(v, f"a {v.layout} tensor on {v.device.type}: only strided, unquantized tensors are keyed")
    # requires_grad is state: a node's output differs with it. The device type too (a node may
    # branch on it); the content is read on the CPU.
    h.update(b"T" + _tname(type(v)) + _name(str(v.dtype)) + b"%r" % (tuple(v.shape),))
    h.update(_name(v.device.type) + (b"G" if v.requires_grad else b"g"))
    t = v.detach().resolve_conj().resolve_neg().to("cpu").contiguous().reshape(-1)
    _feed_buffer(h, t.view(torch.uint8).numpy() if t.numel() else b"")


def _install_torch() -> None:
    torch = sys.modules["torch"]
    # Exact types only: a Python subclass goes through its pickle reduction, which holds the data
    # torch keeps in C, plus its own attributes.
    _register(torch.Tensor, _feed_tensor)
    _register(torch.nn.Parameter, _feed_tensor)


_values._LAZY.update(numpy=_install_numpy, pandas=_install_pandas, pyarrow=_install_pyarrow, torch=_install_torch)
