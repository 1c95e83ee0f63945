"""Failures that are kept: what they hold, how they travel, and what they do as later inputs.

A stored :class:`~hypernodes.Failure` keeps its traceback as text and releases the
frames (a failed item must not keep its locals alive); a ``MapResult`` holding
failures pickles and unpickles, with stand-ins for exceptions pickle cannot
rebuild; a retried exception of that kind never loses a process map; and a
``Failure`` given as an input to a later call raises under ``"raise"`` and stays
that item's failure under ``"continue"``.
"""

from __future__ import annotations

import gc
import pickle
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypernodes import (
    Failure,
    HypernodesEngine,
    InputError,
    MapResult,
    Pipeline,
    PipelineCallback,
    RemoteError,
    node,
)


class Big:
    """A stand-in for a large local (a tensor, a batch): weakly referenceable, to see whether it is kept."""


_alive: list[weakref.ref[Big]] = []


@node(output_name="y")
def holds_big(x: int) -> int:
    big = Big()
    _alive.append(weakref.ref(big))
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


def _kept() -> int:
    gc.collect()
    return sum(ref() is not None for ref in _alive)


def test_stored_failures_release_the_frames_of_the_failed_calls() -> None:
    """Under "continue", the result's failures keep their traceback text, not the failed calls' locals."""
    _alive.clear()
    result = Pipeline([holds_big]).map({"x": list(range(6))}, map_over="x", on_error="continue")
    assert result.failed_items == [1, 3, 5]
    assert _kept() == 0
    failure = result.failures[0]
    assert "raise ValueError" in failure.traceback
    assert "map item 1" in failure.traceback
    assert failure.error.__traceback__ is None


@node(output_name="y", retries=2, retry_on=ValueError, backoff=0)
def retried_big(x: int) -> int:
    big = Big()
    _alive.append(weakref.ref(big))
    raise ValueError(f"always {x}")


class KeepsRetryErrors(PipelineCallback):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
        self.errors.append(error)


@pytest.mark.parametrize("kind", ["sequential", "threaded"])
def test_retried_attempts_release_their_frames(kind: str) -> None:
    """Retried attempts' exceptions (kept by a callback) and the final one hold no frames once reported."""
    _alive.clear()
    keeper = KeepsRetryErrors()
    with HypernodesEngine(map_executor=kind, max_workers=2) as engine:
        pipeline = Pipeline([retried_big], backend=engine, callbacks=[keeper])
        result = pipeline.map({"x": list(range(4))}, map_over="x", on_error="continue")
    assert result.failed_items == [0, 1, 2, 3]
    assert len(keeper.errors) == 8
    assert _kept() == 0


class SdkError(Exception):
    """As ``openai.APIStatusError``: its __init__ needs keyword arguments, so pickle cannot rebuild it."""

    def __init__(self, message: str, *, response: Any, body: Any) -> None:
        super().__init__(message)
        self.response = response
        self.body = body


def _bump(directory: str, x: int) -> int:
    path = Path(directory) / f"calls-{x}"
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


@node(output_name="y", retries=2, retry_on=SdkError, backoff=0)
def throttled(x: int, directory: str) -> int:
    if _bump(directory, x) == 1:
        raise SdkError(f"429 for {x}", response=None, body={"x": x})
    return x * 2


class Retries(PipelineCallback):
    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def on_node_retry(self, node_id: str, error: BaseException, attempt: int, delay: float, ctx: Any) -> None:
        self.seen.append(error)


@pytest.mark.parametrize("on_error", ["raise", "continue"])
def test_a_retried_sdk_error_that_succeeds_keeps_the_process_map(
    on_error: str, tmp_path: Path, make_executor: Callable[[str], Any]
) -> None:
    """A retried exception pickle cannot rebuild, on a process map with a callback: the retry is
    reported with its stand-in and every result comes back."""
    retries = Retries()
    with HypernodesEngine(map_executor=make_executor("parallel"), max_workers=2) as engine:
        pipeline = Pipeline([throttled], backend=engine, callbacks=[retries])
        result = pipeline.map({"x": list(range(6)), "directory": str(tmp_path)}, map_over="x", on_error=on_error)
    assert result["y"] == [x * 2 for x in range(6)]
    assert len(retries.seen) == 6
    assert all(isinstance(e, RemoteError) and "SdkError" in str(e) for e in retries.seen)


@node(output_name="y")
def sdk_fails(x: int) -> int:
    if x == 1:  # holding its response, a lock here: pickle cannot take it even where tblib rebuilds exceptions
        raise SdkError("bad request", response=threading.Lock(), body=None)
    if x == 2:
        raise ValueError("plain")
    return x


def test_a_map_result_with_failures_pickles_and_unpickles() -> None:
    """A MapResult with failures saves and loads: plain exceptions as themselves, others as stand-ins,
    markers in the columns the same objects as in .failures, tracebacks kept as text."""
    result = Pipeline([sdk_fails]).map({"x": [0, 1, 2, 3]}, map_over="x", on_error="continue")
    loaded = pickle.loads(pickle.dumps(result))
    assert isinstance(loaded, MapResult)
    assert loaded.failed_items == [1, 2]
    assert loaded["y"][0] == 0
    assert loaded["y"][3] == 3
    sdk, plain = loaded.failures
    assert isinstance(sdk.error, RemoteError)
    assert sdk.type_name.endswith("SdkError")
    assert sdk.message == "bad request"
    assert "raise SdkError" in sdk.traceback
    assert isinstance(plain.error, ValueError)
    assert "raise ValueError" in plain.traceback
    assert loaded["y"][1] is sdk
    assert loaded["y"][2] is plain


@node(output_name="emb")
def embed(x: int) -> int:
    if x == 1:
        raise ValueError("cannot embed 1")
    return x * 10


_stored: list[Any] = []


@node(output_name="row")
def store_row(emb: Any) -> str:
    _stored.append(emb)
    return f"row {emb}"


def test_a_failure_given_to_a_later_map_raises_under_raise() -> None:
    """Mapping over a column holding a Failure: under "raise", an error naming the input, the item and
    the original error, before any node runs."""
    first = Pipeline([embed]).map({"x": [0, 1, 2]}, map_over="x", on_error="continue")
    _stored.clear()
    with pytest.raises(InputError, match=r"(?s)`emb`.*item 1.*ValueError: cannot embed 1") as info:
        Pipeline([store_row]).map({"emb": first["emb"]}, map_over="emb")
    assert info.value.__cause__ is first.failures[0].error
    assert _stored == []


def test_a_failure_given_to_run_raises() -> None:
    """run() with a Failure as an input raises, naming the input and the original error."""
    first = Pipeline([embed]).map({"x": [0, 1]}, map_over="x", on_error="continue")
    _stored.clear()
    pipeline = Pipeline([store_row])
    assert pipeline.run({"emb": 5}) == {"row": "row 5"}
    with pytest.raises(InputError, match=r"(?s)`emb`.*ValueError: cannot embed 1"):
        pipeline.run({"emb": first["emb"][1]})
    with pytest.raises(InputError, match=r"(?s)`emb`.*ValueError: cannot embed 1"):
        pipeline.run({"emb": first["emb"][1]})  # the fast path of a shape seen before checks too
    assert _stored == [5]


def test_a_failure_given_to_a_later_map_stays_that_items_failure_under_continue() -> None:
    """Under "continue", a Failure among the mapped values is that item's failure (renumbered to
    the item it is in now) and its node is not called."""
    first = Pipeline([embed]).map({"x": [0, 1, 2, 3]}, map_over="x", on_error="continue")
    _stored.clear()
    second = Pipeline([store_row]).map({"emb": first["emb"][::-1]}, map_over="emb", on_error="continue")
    assert second.failed_items == [2]
    (failure,) = second.failures
    assert isinstance(failure, Failure)
    assert failure.item == 2
    assert failure.node == "embed"
    assert second["row"][2] is failure
    assert second.good() == {"row": ["row 30", "row 20", "row 0"]}
    assert _stored == [30, 20, 0]


def test_a_failure_given_as_a_shared_input_under_continue_fails_every_item() -> None:
    """A Failure as a shared input under "continue": every item that reads it fails with it."""
    first = Pipeline([embed]).map({"x": [1]}, map_over="x", on_error="continue")

    @node(output_name="z")
    def add(emb: Any, k: int) -> Any:
        return emb + k

    result = Pipeline([add]).map({"emb": first["emb"][0], "k": [1, 2]}, map_over="k", on_error="continue")
    assert result.failed_items == [0, 1]
    assert [f.item for f in result.failures] == [0, 1]
