"""Finding the map items that kill their worker process, by re-running pieces on fresh workers.

When a worker of our process pool dies (a segfault in native code, ``os._exit``, the
OOM killer), loky fails every pending task with the same ``BrokenProcessPool``: the
slice whose failure the caller saw first need not be the one that held the crashing
item. So the items whose results did not come back are run again on fresh workers
(a slice returns as a whole: items a dead slice finished before the crash are run
again too, and a node with side effects runs again for them). On Dask, the scheduler
reruns a task whose worker died until its ``allowed-failures`` run out, then fails it
with ``KilledWorker``; the pieces then run again the same way on the same cluster (it
replaces dead workers itself; each death below costs that many again):

- at most one piece per worker is in flight, so when a worker dies again the pieces
  in flight then are known; the pieces never submitted are not suspects;
- a piece that was alone in flight when a worker died holds a crashing item: it is
  cut in halves, each then run alone; a suspect among several is run alone;
- a single item that kills its worker alone is a crashing item (on a cluster, once it
  did so twice: a task cancelled earlier may still run there, and die beside it).

Each death cuts a suspect in half, runs a suspect alone, or names an item, and no
piece is run alone twice unchanged, so the work is bounded: every item runs again at
most once outside the bisection, and each crashing item costs O(log n) pieces (one
fresh pool each). A map where every item crashes ends with every item found.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future
from functools import partial
from queue import SimpleQueue
from typing import Any

from .._call import Items
from ..executors import _loky
from .gather import cancel, submit

__all__ = ["rerun"]


def rerun(
    pieces: Sequence[Items],
    pool: Callable[[], Executor],
    task: Callable[[list[Items]], list[tuple[Any, ...]]],
    fn: Callable[..., Any],
    on_result: Callable[[Any, Items], None],
    on_error: Callable[[BaseException, Items], None],
    on_crash: Callable[[Items], None],
    workers: int,
    died: Callable[[BaseException], bool] | None = None,
) -> bool:
    """Run ``pieces`` again until each item's result is in or it is found to kill its worker.

    Args:
        pieces: the items whose results did not come back from a pool that broke.
        pool: the pool to submit to now (a broken one is replaced by a fresh one).
        task: the task arguments of ``fn`` for each of a list of pieces.
        fn: the task function.
        on_result: takes a piece's result as it arrives.
        on_error: annotates an exception a piece raised (other than its worker dying)
            before it is raised.
        on_crash: takes each piece of one item found to kill its worker (and may raise).
        workers: how many pieces run at once when no piece must run alone.
        died: whether an exception a piece raised says its worker died (for executors that
            are not our pool, e.g. Dask's ``KilledWorker``: ``pool`` then returns the same
            executor, whose cluster replaces dead workers); None: our pool broke.

    Returns:
        Whether a crashing item was found; False when every piece completed (the first
        death was not reproduced: a worker killed from outside, or a crash that only a
        combination of items causes).

    Raises:
        Whatever a piece raises other than its worker dying (after ``on_error``), what
        ``on_crash`` raises, and ``KeyboardInterrupt`` (the tasks in flight are cancelled or abandoned).
    """
    queue: deque[tuple[Items, bool]] = deque((p, False) for p in pieces)  # (piece, runs alone)
    found = False
    suspects: set[int] = set()
    while queue:
        if queue[0][1]:
            batch, cap = [queue.popleft()[0]], 1
        else:
            batch, cap = [], workers
            while queue and not queue[0][1]:
                batch.append(queue.popleft()[0])
        lost = _attempt(pool(), batch, task(batch), fn, on_result, on_error, cap, died)
        if lost is None:
            continue
        in_flight, unsent = lost
        queue.extend((batch[i], False) for i in unsent)
        if len(in_flight) > 1:  # which of them killed its worker is unknown: each runs alone
            queue.extendleft((batch[i], True) for i in reversed(in_flight))
            continue
        culprit = batch[in_flight[0]]
        if len(culprit) == 1:
            if died is not None and culprit.lo not in suspects:
                # On a cluster, a task cancelled earlier may still run, and its worker's death
                # then fails the piece placed beside it: an item is blamed once it dies alone twice.
                suspects.add(culprit.lo)
                queue.appendleft((culprit, True))
                continue
            found = True
            on_crash(culprit)
            continue
        middle = culprit.lo + len(culprit) // 2
        queue.appendleft((culprit.between(middle, culprit.hi), True))
        queue.appendleft((culprit.between(culprit.lo, middle), True))
    return found


def _put(queue: SimpleQueue[int], index: int, _future: Future[Any]) -> None:
    queue.put(index)


def _attempt(
    executor: Executor,
    batch: list[Items],
    calls: list[tuple[Any, ...]],
    fn: Callable[..., Any],
    on_result: Callable[[Any, Items], None],
    on_error: Callable[[BaseException, Items], None],
    cap: int,
    died: Callable[[BaseException], bool] | None,
) -> tuple[list[int], list[int]] | None:
    """Run ``batch``, at most ``cap`` pieces in flight; None if all completed.

    If a worker died: the indices of the pieces in flight then, and of those never submitted.
    """
    done: SimpleQueue[int] = SimpleQueue()
    futures: dict[int, Future[Any]] = {}
    sent = 0
    with _loky.in_use(executor):
        try:
            while sent < len(batch) or futures:
                while sent < len(batch) and len(futures) < cap:
                    try:
                        futures[sent] = future = submit(executor, fn, *calls[sent])
                    except BrokenExecutor:
                        if not (futures and _loky.broken(executor)):  # broken by what runs: not a fresh pool
                            raise
                        return _died(executor, futures, sent, len(batch))
                    future.add_done_callback(partial(_put, done, sent))
                    sent += 1
                i = done.get()
                try:
                    result = futures[i].result()
                except BrokenExecutor:
                    if died is not None or not _loky.broken(executor):  # a node's own pool broke, not ours
                        raise
                    return _died(executor, futures, sent, len(batch))
                except Exception as exc:
                    if died is not None and died(exc):
                        return _died(executor, futures, sent, len(batch))
                    on_error(exc, batch[i])
                    raise
                del futures[i]
                on_result(result, batch[i])
            return None
        except BaseException:
            cancel(executor, futures.values())
            raise


def _died(executor: Executor, futures: dict[int, Future[Any]], sent: int, n: int) -> tuple[list[int], list[int]]:
    """The pieces in flight when a worker died, and those never sent; the in-flight tasks are let go."""
    in_flight = sorted(futures)
    cancel(executor, futures.values())
    return in_flight, list(range(sent, n))
