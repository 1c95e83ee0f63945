# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, freethreading_compatible=True
"""The compiled scheduling core: a twin of ``_sched_py.py`` (the spec).

Same names, same behaviour, same tests. What the compilation buys:

* the node loop runs in C: argument slots are read from the values list as
  borrowed pointers into a C array and the function is called with one
  vectorcall, so no argument tuple is built per call;
* map batches index the item columns in C (zip or mixed-radix product) and
  write results into pre-sized lists;
* the ready queue keeps indegree counters and states in C arrays.

With an observer or a lookup configured (the event seam, see ``_events``), a
batch runs ``_run_nodes_observed`` instead of ``_run_nodes``: the choice is made
once per batch, so the plain loop carries no per-item or per-node check.

Safety of the unchecked indexing (boundscheck/wraparound are off): every slot
index comes from ``_graph.compile_plan`` and is < ``plan.n_slots``; each entry
point checks ``len(values) >= n_slots``, ``len(funcs) == n_nodes`` and that the
item range fits the columns before its loop, and the values list is private to
the call (no user code holds it), so its length cannot change under the loop.
Python calls always hold the GIL; nothing here releases it, because every
integer step between two calls is far cheaper than a GIL hand-off.
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast_ITEMS
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.string cimport memcpy

import operator
import types

from collections.abc import Iterator

from time import perf_counter

from ._errors import coroutine_returned, note_node
from .errors import OutputArityError
from .failures import Failure, MapResult, failure_of

cdef extern from "Python.h":
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)

__all__ = [
    "API_VERSION",
    "IMPLEMENTATION",
    "ReadyQueue",
    "find_failures",
    "map_zip",
    "pack_column",
    "plan_batches",
    "run_batch",
    "run_batch_continue",
    "run_dict",
    "run_one",
    "unpack_column",
]

IMPLEMENTATION = "cython"
API_VERSION = 9

# A node result of this exact type is a coroutine from a plain node: funcs wraps async
# nodes so that they return the awaited value. One pointer comparison per call.
cdef object _CoroutineType = types.CoroutineType
# The error marker of on_error="continue" (see failures.py); compared by exact type.
cdef object _Failure = Failure
# map_zip's result: MapResult._of, without the Python-level __init__ (see failures.py).
cdef object _new_result = MapResult._of

# Shared inputs of these exact types are no one-shot iterators; anything else is asked.
cdef frozenset _NOT_ITERATORS = frozenset({int, float, complex, str, bytes, bool, type(None), list, tuple, dict})

# The node loop's argument pointers live on the C stack for nodes of at most this many arguments.
cdef enum:
    _SMALL_ARGS = 8


@cython.final
cdef class _Prepared:
    """A plan's int32 arrays held as typed memoryviews (acquired once per plan)."""

    cdef const int[::1] arg_ptr, arg_slots, out_ptr, out_slots, unpack
    cdef const int[::1] succ_ptr, succ_idx, indegree, result_slots
    cdef Py_ssize_t n_nodes, n_slots, max_args
    cdef tuple names, template, map_template, input_pairs, result_names
    cdef dict results_template

    def __cinit__(self, plan):
        self.arg_ptr = plan.arg_ptr
        self.arg_slots = plan.arg_slots
        self.out_ptr = plan.out_ptr
        self.out_slots = plan.out_slots
        self.unpack = plan.unpack
        self.succ_ptr = plan.succ_ptr
        self.succ_idx = plan.succ_idx
        self.indegree = plan.indegree
        self.result_slots = plan.result_slots
        self.n_nodes = plan.n_nodes
        self.n_slots = plan.n_slots
        self.max_args = plan.max_args
        self.names = tuple(plan.node_names)
        self.template = tuple(plan.template)
        self.map_template = self.template + (None,)  # map_zip's scratch slot: mapped inputs the plan does not read
        self.input_pairs = tuple(plan.input_pairs)
        self.result_names = tuple(plan.result_names)
        self.results_template = dict.fromkeys(self.result_names)
        if self.arg_ptr.shape[0] != self.n_nodes + 1 or self.out_ptr.shape[0] != self.n_nodes + 1:
            raise ValueError("malformed plan: pointer arrays do not match n_nodes")
        if len(self.template) != self.n_slots or len(self.result_names) != self.result_slots.shape[0]:
            raise ValueError("malformed plan: template or results do not match the slots")


cdef inline _Prepared _prepared(plan):
    p = plan._native
    if type(p) is not _Prepared:  # None, or the other core's form after a switch in tests
        p = _Prepared(plan)
        plan._native = p
    return <_Prepared>p


cdef tuple _check_call(_Prepared p, funcs, list values):
    if len(values) < p.n_slots:
        raise ValueError(f"values holds {len(values)} slots, the plan needs {p.n_slots}")
    cdef tuple f = funcs if type(funcs) is tuple else tuple(funcs)
    if len(f) != p.n_nodes:
        raise ValueError(f"{len(f)} funcs given for a plan of {p.n_nodes} nodes")
    return f


cdef int _store_unpacked(_Prepared p, Py_ssize_t k, object result, list values) except -1:
    cdef Py_ssize_t o0 = p.out_ptr[k], o1 = p.out_ptr[k + 1], o
    if not isinstance(result, (tuple, list)):
        raise OutputArityError(
            f"Node `{p.names[k]}` has {o1 - o0} output names and must return a tuple (or list) of {o1 - o0} "
            f"values, but returned {type(result).__name__}."
        )
    # A private copy: storing into `values` drops the previous item's objects, whose
    # __del__ is user code that could shrink a returned list under unchecked indexing.
    cdef tuple t = tuple(result)
    if len(t) != o1 - o0:
        raise OutputArityError(f"Node `{p.names[k]}` has {o1 - o0} output names but returned a tuple of {len(t)}.")
    for o in range(o0, o1):
        values[p.out_slots[o]] = t[o - o0]
    return 0


cdef int _run_nodes(
    _Prepared p, tuple funcs, list values, PyObject** argv, Py_ssize_t item, object errors
) except -1:
    cdef Py_ssize_t k = 0, a, a0, a1
    cdef object result
    try:
        for k in range(p.n_nodes):
            a0 = p.arg_ptr[k]
            a1 = p.arg_ptr[k + 1]
            # Borrowed pointers: `values` owns them and no user code can reach it
            # during the call, so they stay alive until the vectorcall returns.
            for a in range(a0, a1):
                argv[a - a0] = PyList_GET_ITEM(values, p.arg_slots[a])
            result = PyObject_Vectorcall(<object>PyTuple_GET_ITEM(funcs, k), argv, <size_t>(a1 - a0), NULL)
            if type(result) is _CoroutineType:
                raise coroutine_returned(result, p.names[k])
            if p.unpack[k]:
                _store_unpacked(p, k, result, values)
            else:
                values[p.out_slots[p.out_ptr[k]]] = result
    except Exception as exc:
        note_node(exc, p.names[k], item)
        if errors is not None:
            errors.node_error(k, item, exc)
        raise
    return 0


cdef int _run_nodes_observed(
    _Prepared p, tuple funcs, list values, Py_ssize_t item, object events, object errors, object lookup
) except -1:
    # The same loop as _run_nodes, reporting each node to `events` and asking `lookup`
    # first; taken only when one of them is configured, so the plain loop stays as it is.
    # The arguments are a tuple here (the lookup may keep them), not borrowed pointers.
    cdef Py_ssize_t k = 0, a
    cdef object result, hit, started = None
    cdef tuple argv
    try:
        for k in range(p.n_nodes):
            argv = tuple([values[p.arg_slots[a]] for a in range(p.arg_ptr[k], p.arg_ptr[k + 1])])
            hit = lookup.get(k, item, argv) if lookup is not None else None
            if hit is not None:
                result = hit[0]
                if events is not None:
                    events.node_cached(k, item, result)
            else:
                if events is not None:
                    events.node_start(k, item, argv)
                    started = perf_counter()
                result = (<object>PyTuple_GET_ITEM(funcs, k))(*argv)
                if type(result) is _CoroutineType:  # before the lookup keeps it
                    raise coroutine_returned(result, p.names[k])
                if lookup is not None:
                    lookup.put(k, item, argv, result)
                if events is not None:
                    events.node_end(k, item, perf_counter() - started, result)
            if p.unpack[k]:
                _store_unpacked(p, k, result, values)
            else:
                values[p.out_slots[p.out_ptr[k]]] = result
    except Exception as exc:
        note_node(exc, p.names[k], item)
        if errors is not None:
            errors.node_error(k, item, exc)
        raise
    return 0


cdef PyObject** _alloc_argv(_Prepared p) except NULL:
    cdef PyObject** argv = <PyObject**>PyMem_Malloc((p.max_args + 1) * sizeof(PyObject*))
    if argv == NULL:
        raise MemoryError()
    return argv


def run_one(plan, funcs, list values, observer=None, lookup=None):
    """Run every node of ``plan`` once, in topological order, on ``values``.

    See ``_sched_py.run_one`` (the spec) for the contract.
    """
    cdef _Prepared p = _prepared(plan)
    cdef tuple f = _check_call(p, funcs, values)
    events = observer if observer is not None and observer.node_events else None
    if events is not None or lookup is not None:
        _run_nodes_observed(p, f, values, -1, events, observer, lookup)
        return
    cdef PyObject** argv = _alloc_argv(p)
    try:
        _run_nodes(p, f, values, argv, -1, observer)
    finally:
        PyMem_Free(argv)


cdef dict _result_dict(_Prepared p, list values):
    # {output name: value}, built here rather than by a comprehension in the caller: a
    # copy of a dict that already has the keys (no resizing), whose values are replaced
    cdef dict out = p.results_template.copy()
    cdef Py_ssize_t j
    for j in range(p.result_slots.shape[0]):
        out[<object>PyTuple_GET_ITEM(p.result_names, j)] = <object>PyList_GET_ITEM(values, p.result_slots[j])
    return out


def run_dict(plan, funcs, dict inputs):
    """Run ``plan`` once on ``inputs`` and return ``{output name: value}``.

    See ``_sched_py.run_dict`` (the spec) for the contract.
    """
    cdef _Prepared p = _prepared(plan)
    cdef list values = list(p.template)
    cdef tuple f = _check_call(p, funcs, values)
    cdef PyObject* small[_SMALL_ARGS]
    cdef PyObject** argv = small
    for name, slot in p.input_pairs:
        values[slot] = inputs[name]
    if p.max_args > _SMALL_ARGS:
        argv = _alloc_argv(p)
    try:
        _run_nodes(p, f, values, argv, -1, None)
    finally:
        if argv != small:
            PyMem_Free(argv)
    return _result_dict(p, values)


def map_zip(plan, funcs, dict inputs, tuple mapped, tuple map_slots, tuple shared):
    """Map ``plan`` over the lists ``inputs[m]`` for ``m`` in ``mapped``, zipped; ``{output: [values]}`` as a MapResult.

    See ``_sched_py.map_zip`` (the spec) for the contract.
    """
    cdef _Prepared p = _prepared(plan)
    cdef list values = list(p.map_template)
    cdef tuple f = _check_call(p, funcs, values)
    cdef Py_ssize_t n_cols = len(mapped), n_res = p.result_slots.shape[0], n = 0, i, j
    cdef Py_ssize_t n_values = len(values)
    if len(map_slots) != n_cols or n_cols == 0:
        raise ValueError(f"{len(map_slots)} map slots for {n_cols} mapped inputs")
    for name, slot in shared:  # unpacked with checks: a malformed pair raises, never reads past a tuple
        value = inputs[name]
        if type(value) not in _NOT_ITERATORS and isinstance(value, Iterator):
            return None
        values[slot] = value
    cdef list cols = []
    for j in range(n_cols):
        column = inputs[<object>PyTuple_GET_ITEM(mapped, j)]
        if type(column) is not list:
            return None
        if j == 0:
            n = len(<list>column)
        elif len(<list>column) != n:
            return None
        cols.append(tuple(<list>column))  # a snapshot: a node may change the user's list
    # Slots and argument pointers live on the C stack unless a plan needs more.
    cdef Py_ssize_t small_slots[_SMALL_ARGS]
    cdef Py_ssize_t* slots = small_slots
    cdef PyObject* small[_SMALL_ARGS]
    cdef PyObject** argv = small
    cdef list out, cols_out
    cdef dict results = p.results_template.copy()  # the keys in order, no resizing
    try:
        if n_cols > _SMALL_ARGS:
            slots = <Py_ssize_t*>PyMem_Malloc(n_cols * sizeof(Py_ssize_t))
            if slots == NULL:
                raise MemoryError()
        for j in range(n_cols):
            slots[j] = map_slots[j]
            if not 0 <= slots[j] < n_values:
                raise ValueError(f"map slot {slots[j]} is outside the {n_values} value slots")
        if p.max_args > _SMALL_ARGS:
            argv = _alloc_argv(p)
        cols_out = [[None] * n for _ in range(n_res)]
        for i in range(n):
            for j in range(n_cols):
                values[slots[j]] = <object>PyTuple_GET_ITEM(<tuple>PyList_GET_ITEM(cols, j), i)
            _run_nodes(p, f, values, argv, i, None)
            for j in range(n_res):
                out = <list>PyList_GET_ITEM(cols_out, j)
                out[i] = <object>PyList_GET_ITEM(values, p.result_slots[j])
    finally:
        if slots != small_slots:
            PyMem_Free(slots)
        if argv != small:
            PyMem_Free(argv)
    for j in range(n_res):
        results[<object>PyTuple_GET_ITEM(p.result_names, j)] = <object>PyList_GET_ITEM(cols_out, j)
    return _new_result(results, (mapped, tuple(cols), False))


cdef inline int _fill(
    list values, tuple cols, Py_ssize_t* slots, Py_ssize_t* lengths, Py_ssize_t n_cols, Py_ssize_t i, bint product
) except -1:
    # Item i's mapped values into their slots: element i of each column (zip), or the
    # mixed-radix digits of i, last column fastest (product). Indices are in range:
    # run_batch checked the item range against the columns.
    cdef Py_ssize_t j, rest, idx
    if product:
        rest = i
        for j in range(n_cols - 1, -1, -1):
            idx = rest % lengths[j]
            rest = rest // lengths[j]
            values[slots[j]] = <object>PyTuple_GET_ITEM(cols[j], idx)
    else:
        for j in range(n_cols):
            values[slots[j]] = <object>PyTuple_GET_ITEM(cols[j], i)
    return 0


cdef inline int _collect(_Prepared p, list values, list results, Py_ssize_t n_res, Py_ssize_t at) except -1:
    cdef Py_ssize_t j
    for j in range(n_res):
        (<list>results[j])[at] = <object>PyList_GET_ITEM(values, p.result_slots[j])
    return 0


cdef int _layout(
    list values, tuple cols, map_slots, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t base, bint product,
    Py_ssize_t* lengths, Py_ssize_t* slots
) except -1:
    # A batch's item layout, checked, into C arrays: each column's length and slot
    # (run_batch and run_batch_continue read the same layout).
    cdef Py_ssize_t n_cols = len(cols), j, total
    if len(map_slots) != n_cols:
        raise ValueError(f"{len(map_slots)} map slots for {n_cols} columns")
    if lo < 0 or hi < lo:
        raise ValueError(f"bad item range [{lo}, {hi})")
    if base < 0:
        raise ValueError(f"base must be >= 0, got {base}")
    total = 1 if (product or n_cols == 0) else -1
    for j in range(n_cols):
        lengths[j] = len(<tuple>cols[j])
        slots[j] = map_slots[j]
        if not 0 <= slots[j] < len(values):
            raise ValueError(f"map slot {slots[j]} is outside the {len(values)} value slots")
        if product:
            total *= lengths[j]
        elif total < 0 or lengths[j] < total:
            total = lengths[j]
    if n_cols and hi > total:
        raise ValueError(f"item range [{lo}, {hi}) exceeds the {total} items of the columns")
    return 0


def run_batch(plan, funcs, list values, items, observer=None, lookup=None):
    """Run the items ``items.lo <= i < items.hi`` of a map through the whole plan.

    See ``_sched_py.run_batch`` (the spec) for the contract.
    """
    cdef _Prepared p = _prepared(plan)
    cdef tuple f = _check_call(p, funcs, values)
    cdef tuple cols = tuple([c if type(c) is tuple else tuple(c) for c in items.columns])
    map_slots = items.map_slots
    cdef Py_ssize_t lo = items.lo, hi = items.hi, base = items.base
    cdef bint product = items.product
    events = observer if observer is not None and observer.node_events else None
    cdef bint per_node = events is not None or lookup is not None
    cdef bint per_item = observer is not None and observer.item_events
    cdef Py_ssize_t n_cols = len(cols), n_res = p.result_slots.shape[0]
    cdef Py_ssize_t i, j, rest, idx
    cdef Py_ssize_t* lengths = <Py_ssize_t*>PyMem_Malloc((n_cols + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* slots = <Py_ssize_t*>PyMem_Malloc((n_cols + 1) * sizeof(Py_ssize_t))
    cdef PyObject** argv = NULL
    cdef list results, out
    cdef object started
    try:
        if lengths == NULL or slots == NULL:
            raise MemoryError()
        _layout(values, cols, map_slots, lo, hi, base, product, lengths, slots)
        argv = _alloc_argv(p)
        results = [[None] * (hi - lo) for _ in range(n_res)]
        if not per_node and not per_item:
            # The plain loop, written out (not through _fill/_collect, which gcc does not
            # inline): exactly the instructions per item it had before the event seam. An
            # observer that wants neither node nor item events (progress) runs it too.
            for i in range(lo, hi):
                if product:
                    rest = i
                    for j in range(n_cols - 1, -1, -1):
                        idx = rest % lengths[j]
                        rest = rest // lengths[j]
                        values[slots[j]] = <object>PyTuple_GET_ITEM(<tuple>cols[j], idx)
                else:
                    for j in range(n_cols):
                        values[slots[j]] = <object>PyTuple_GET_ITEM(<tuple>cols[j], i)
                _run_nodes(p, f, values, argv, base + i, observer)
                for j in range(n_res):
                    out = <list>results[j]
                    out[i - lo] = <object>PyList_GET_ITEM(values, p.result_slots[j])
            if observer is not None:
                observer.items_done(hi - lo)
            return results
        for i in range(lo, hi):
            _fill(values, cols, slots, lengths, n_cols, i, product)
            if per_item:
                observer.item_start(base + i)
                started = perf_counter()
            if per_node:
                _run_nodes_observed(p, f, values, base + i, events, observer, lookup)
            else:
                _run_nodes(p, f, values, argv, base + i, observer)
            if per_item:
                observer.item_end(base + i, perf_counter() - started)
            _collect(p, values, results, n_res, i - lo)
        if observer is not None:
            observer.items_done(hi - lo)
        return results
    finally:
        PyMem_Free(lengths)
        PyMem_Free(slots)
        PyMem_Free(argv)


cdef object _run_nodes_continue(
    _Prepared p, tuple funcs, list values, PyObject** argv, Py_ssize_t item, object events, object errors,
    object lookup
):
    # The loop of on_error="continue" (see _sched_py._run_nodes_continue, the spec): a node
    # that raises gets a Failure in its output slots; a node reading one is not called and
    # passes it on. Only the call and the storing of its result are the node's failure. With
    # neither events nor a lookup the call is one vectorcall on borrowed pointers (safe as in
    # _run_nodes); else the arguments are a tuple, as in _run_nodes_observed.
    cdef Py_ssize_t k, a, a0, a1, o
    cdef object result, marker, failed = None, hit, started = None
    cdef tuple argt
    cdef bint observed = events is not None or lookup is not None
    for k in range(p.n_nodes):
        a0 = p.arg_ptr[k]
        a1 = p.arg_ptr[k + 1]
        marker = None
        for a in range(a0, a1):
            argv[a - a0] = PyList_GET_ITEM(values, p.arg_slots[a])
            if type(<object>argv[a - a0]) is _Failure:
                marker = <object>argv[a - a0]
                break
        if marker is None:
            hit = None
            if observed:
                argt = tuple([<object>argv[a] for a in range(a1 - a0)])
                if lookup is not None:
                    hit = lookup.get(k, item, argt)
            if hit is not None:
                result = hit[0]
                if events is not None:
                    events.node_cached(k, item, result)
                if p.unpack[k]:
                    _store_unpacked(p, k, result, values)
                else:
                    values[p.out_slots[p.out_ptr[k]]] = result
                continue
            if events is not None:
                events.node_start(k, item, argt)
                started = perf_counter()
            try:
                if observed:
                    result = (<object>PyTuple_GET_ITEM(funcs, k))(*argt)
                else:
                    result = PyObject_Vectorcall(<object>PyTuple_GET_ITEM(funcs, k), argv, <size_t>(a1 - a0), NULL)
                if type(result) is _CoroutineType:
                    raise coroutine_returned(result, p.names[k])
                if p.unpack[k]:
                    _store_unpacked(p, k, result, values)
                else:
                    values[p.out_slots[p.out_ptr[k]]] = result
            except Exception as exc:
                note_node(exc, p.names[k], item)
                if errors is not None:
                    errors.node_error(k, item, exc)
                marker = failure_of(exc, p.names[k], item)
            else:
                if lookup is not None:
                    lookup.put(k, item, argt, result)
                if events is not None:
                    events.node_end(k, item, perf_counter() - started, result)
                continue
        if failed is None:
            failed = marker
        for o in range(p.out_ptr[k], p.out_ptr[k + 1]):
            values[p.out_slots[o]] = marker
    return failed


def run_batch_continue(plan, funcs, list values, items, observer=None, lookup=None):
    """:func:`run_batch` for ``on_error="continue"``: a failing item does not stop the batch.

    See ``_sched_py.run_batch_continue`` (the spec) for the contract.
    """
    cdef _Prepared p = _prepared(plan)
    cdef tuple f = _check_call(p, funcs, values)
    cdef tuple cols = tuple([c if type(c) is tuple else tuple(c) for c in items.columns])
    map_slots = items.map_slots
    cdef Py_ssize_t lo = items.lo, hi = items.hi, base = items.base
    cdef bint product = items.product
    events = observer if observer is not None and observer.node_events else None
    cdef bint per_item = observer is not None and observer.item_events
    cdef Py_ssize_t n_cols = len(cols), n_res = p.result_slots.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t* lengths = <Py_ssize_t*>PyMem_Malloc((n_cols + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* slots = <Py_ssize_t*>PyMem_Malloc((n_cols + 1) * sizeof(Py_ssize_t))
    cdef PyObject** argv = NULL
    cdef list results
    cdef object started = None, failed
    try:
        if lengths == NULL or slots == NULL:
            raise MemoryError()
        _layout(values, cols, map_slots, lo, hi, base, product, lengths, slots)
        argv = _alloc_argv(p)
        results = [[None] * (hi - lo) for _ in range(n_res)]
        for i in range(lo, hi):
            _fill(values, cols, slots, lengths, n_cols, i, product)
            if per_item:
                observer.item_start(base + i)
                started = perf_counter()
            failed = _run_nodes_continue(p, f, values, argv, base + i, events, observer, lookup)
            if failed is not None:
                if observer is not None:
                    observer.item_failed(base + i, failed)
            elif per_item:
                observer.item_end(base + i, perf_counter() - started)
            _collect(p, values, results, n_res, i - lo)
        if observer is not None:
            observer.items_done(hi - lo)
        return results
    finally:
        PyMem_Free(lengths)
        PyMem_Free(slots)
        PyMem_Free(argv)


def find_failures(columns):
    """Every ``Failure`` in ``columns`` (lists of values), column by column.

    See ``_sched_py.find_failures`` (the spec).
    """
    cdef list out = []
    cdef list column
    for c in columns:
        column = c if type(c) is list else list(c)
        for value in column:
            if type(value) is _Failure:
                out.append(value)
    return out


def plan_batches(Py_ssize_t n_items, Py_ssize_t n_workers, Py_ssize_t tasks_per_worker=1, Py_ssize_t min_batch=1):
    """Split ``range(n_items)`` into contiguous ``(lo, hi)`` slices for executors.

    See ``_sched_py.plan_batches`` (the spec) for the contract.
    """
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    if n_workers < 1 or tasks_per_worker < 1 or min_batch < 1:
        raise ValueError(
            f"n_workers, tasks_per_worker and min_batch must be >= 1, got {n_workers}, {tasks_per_worker}, {min_batch}"
        )
    cdef Py_ssize_t n_tasks = min(n_items, n_workers * tasks_per_worker, max(1, n_items // min_batch))
    if n_tasks == 0:
        return []
    cdef Py_ssize_t size = n_items // n_tasks, extra = n_items % n_tasks, lo = 0, hi, t
    cdef list out = []
    for t in range(n_tasks):
        hi = lo + size + (1 if t < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


cdef enum:
    _PENDING = 0
    _ISSUED = 1
    _DONE = 2


@cython.final
cdef class ReadyQueue:
    """Dependency counting over a plan, in the shape of ``graphlib.TopologicalSorter``.

    See ``_sched_py.ReadyQueue`` (the spec). State lives in C arrays; one mutex
    makes every method atomic, also on free-threaded CPython.
    """

    cdef _Prepared p
    cdef int* remaining
    cdef unsigned char* state
    cdef int* ready
    cdef Py_ssize_t n, head, tail, n_issued, _n_done
    cdef cython.pymutex lock

    def __cinit__(self, plan):
        self.p = _prepared(plan)
        cdef Py_ssize_t n = self.p.n_nodes, k
        self.n = n
        self.remaining = <int*>PyMem_Malloc((n + 1) * sizeof(int))
        self.state = <unsigned char*>PyMem_Malloc((n + 1) * sizeof(unsigned char))
        self.ready = <int*>PyMem_Malloc((n + 1) * sizeof(int))
        if self.remaining == NULL or self.state == NULL or self.ready == NULL:
            raise MemoryError()
        if n:
            memcpy(self.remaining, &self.p.indegree[0], n * sizeof(int))
        # Every node enters `ready` exactly once, so a flat array of n entries
        # read from `head` and appended at `tail` is the whole FIFO.
        for k in range(n):
            self.state[k] = _PENDING
            if self.remaining[k] == 0:
                self.ready[self.tail] = <int>k
                self.tail += 1

    def __dealloc__(self):
        PyMem_Free(self.remaining)
        PyMem_Free(self.state)
        PyMem_Free(self.ready)

    def get_ready(self):
        """Return (and mark issued) every node that became ready since the last call."""
        cdef Py_ssize_t i, h, t
        with self.lock:
            h = self.head
            t = self.tail
            for i in range(h, t):
                self.state[self.ready[i]] = _ISSUED
            self.head = t
            self.n_issued += t - h
        return tuple([self.ready[i] for i in range(h, t)])

    def done(self, *ids):
        """Mark issued nodes finished and release the successors they were the last wait of.

        Raises:
            ValueError: an id out of range, not yet returned by ``get_ready()``, or already done.
        """
        cdef Py_ssize_t k = 0, s, e
        cdef list ks = [operator.index(x) for x in ids]
        cdef int error = 0  # formatted after the lock is released: no allocation under it
        for x in ks:
            if not 0 <= x < self.n:
                raise ValueError(f"node id {x} is out of range for a plan of {self.n} nodes")
        cdef const int[::1] succ_ptr = self.p.succ_ptr, succ_idx = self.p.succ_idx
        with self.lock:
            for k in ks:
                if self.state[k] != _ISSUED:
                    error = 2 if self.state[k] == _DONE else 3
                    break
                self.state[k] = _DONE
                self._n_done += 1
                for e in range(succ_ptr[k], succ_ptr[k + 1]):
                    s = succ_idx[e]
                    self.remaining[s] -= 1
                    if self.remaining[s] == 0:
                        self.ready[self.tail] = <int>s
                        self.tail += 1
        if error == 2:
            raise ValueError(f"node {k} was already marked done")
        if error == 3:
            raise ValueError(f"node {k} was not returned by get_ready()")

    def is_active(self):
        """True while a node is ready to be returned or issued and not yet done."""
        with self.lock:
            return self.tail > self.head or self.n_issued > self._n_done

    @property
    def n_done(self):
        """How many nodes are done."""
        with self.lock:  # done() writes it from other threads (no GIL orders that on 3.14t)
            return self._n_done


# -- a map slice's results on their way back from a worker process --------------------------

cdef extern from "Python.h":
    bint _long_exact "PyLong_CheckExact"(PyObject* o)
    bint _float_exact "PyFloat_CheckExact"(PyObject* o)
    long long _as_long_long "PyLong_AsLongLongAndOverflow"(PyObject* o, int* overflow)
    double _as_double "PyFloat_AS_DOUBLE"(PyObject* o)
    bytes _new_bytes "PyBytes_FromStringAndSize"(char* data, Py_ssize_t size)
    char* _bytes_data "PyBytes_AS_STRING"(object o)


def pack_column(column):
    """``column`` as one buffer: ``(typecode, bytes)``, or None. See the twin (the spec).

    Two passes in C over a list or tuple nobody else holds (a worker's result
    column, a map's copy of an input list): the first checks every value's exact
    type and the range of the ints, the second writes them. Only C calls run
    between the two (no Python code can change the list), so the second pass reads
    exact ints within the range the first found.
    """
    if type(column) is not list and type(column) is not tuple:
        return None
    cdef Py_ssize_t n = len(column), i
    cdef PyObject** items = PySequence_Fast_ITEMS(column)
    cdef long long x, lo = 0, hi = 0
    cdef int overflow = 0, size
    cdef char* out
    if n == 0:
        return None
    if _float_exact(items[0]):
        for i in range(n):
            if not _float_exact(items[i]):
                return None
        data = _new_bytes(NULL, n * <Py_ssize_t>sizeof(double))
        out = _bytes_data(data)
        for i in range(n):
            (<double*>out)[i] = _as_double(items[i])
        return "d", data
    for i in range(n):
        if not _long_exact(items[i]):
            return None
        x = _as_long_long(items[i], &overflow)
        if overflow:
            return None
        if x < lo:
            lo = x
        elif x > hi:
            hi = x
    if -128 <= lo and hi < 128:
        code, size = "b", 1
    elif -32768 <= lo and hi < 32768:
        code, size = "h", 2
    elif -2147483648 <= lo and hi < 2147483648:
        code, size = "i", 4
    else:
        code, size = "q", 8
    data = _new_bytes(NULL, n * size)
    out = _bytes_data(data)
    for i in range(n):
        x = _as_long_long(items[i], &overflow)
        if size == 1:
            (<signed char*>out)[i] = <signed char>x
        elif size == 2:
            (<short*>out)[i] = <short>x
        elif size == 4:
            (<int*>out)[i] = <int>x
        else:
            (<long long*>out)[i] = x
    return code, data


def unpack_column(code, data, list out, Py_ssize_t at):
    """Put the values ``data`` packs (``pack_column``'s, native byte order) in ``out[at:]``. See the twin (the spec).

    Each value is made and stored in one pass in C: no intermediate list of the
    values, no second reference count pass to copy them into ``out``.
    """
    cdef const unsigned char[::1] raw = memoryview(data).cast("B")
    cdef Py_ssize_t size = _UNPACK_SIZES.get(code, 0), n, i
    cdef const unsigned char* src
    cdef double d
    cdef long long q
    cdef int i4
    cdef short h
    cdef signed char b
    if size == 0:
        raise ValueError(f"unpack_column: typecode {code!r} is not one of 'bhiqd'")
    n = raw.shape[0] // size
    if raw.shape[0] != n * size or at < 0 or at + n > len(out):
        raise ValueError(
            f"unpack_column: {raw.shape[0]} bytes of {code!r} values do not fit a list of {len(out)} from {at}"
        )
    if n == 0:
        return
    src = &raw[0]
    if code == "d":
        for i in range(n):
            memcpy(&d, src + i * 8, 8)
            out[at + i] = d
    elif code == "q":
        for i in range(n):
            memcpy(&q, src + i * 8, 8)
            out[at + i] = q
    elif code == "i":
        for i in range(n):
            memcpy(&i4, src + i * 4, 4)
            out[at + i] = i4
    elif code == "h":
        for i in range(n):
            memcpy(&h, src + i * 2, 2)
            out[at + i] = h
    else:
        for i in range(n):
            b = <signed char>src[i]
            out[at + i] = b


_UNPACK_SIZES = {"b": 1, "h": 2, "i": 4, "q": 8, "d": 8}
