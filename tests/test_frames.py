"""Frames out: every map returns a MapResult, a dict of lists that also becomes a frame or an array."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hypernodes import ArgumentTypeError, Failure, MapResult, MemoryCache, Pipeline, PipelineCallback, node


@node(output_name=("double", "label"))
def split(x: int) -> tuple[int, str]:
    return 2 * x, f"n{x}"


@node(output_name="inverse")
def inverse(double: int) -> float:
    return 1 / (double - 4)  # fails for x == 2


@node(output_name="ratio")
def ratio(x: float, y: float) -> float:
    return x / y


PIPE = Pipeline([split, inverse])


class _Seen(PipelineCallback):
    pass


def test_every_map_returns_a_map_result_equal_to_its_dict() -> None:
    """The fast path, the general path, the observed paths and on_error="continue" all return a
    MapResult that equals, prints and pickles as the dict of lists."""
    xs = [0, 1, 3]
    want = {"double": [0, 2, 6], "label": ["n0", "n1", "n3"], "inverse": [-0.25, -0.5, 0.5]}
    results = [
        PIPE.map({"x": xs}, map_over="x"),
        PIPE.map({"x": xs}, map_over="x"),  # the call shape seen before: the core's fast path
        PIPE.map({"x": tuple(xs)}, map_over="x"),
        PIPE.map({"x": xs}, map_over="x", on_error="continue"),
        Pipeline([split, inverse], callbacks=[_Seen()]).map({"x": xs}, map_over="x"),
        Pipeline([split, inverse], cache=MemoryCache()).map({"x": xs}, map_over="x"),
    ]
    for result in results:
        assert type(result) is MapResult
        assert result == want
        assert dict(result) == want
        assert repr(result) == repr(want)
        assert pickle.loads(pickle.dumps(result)) == want
        assert result.failures == ()
        assert result.ok


def test_to_pandas_has_one_row_per_item_and_the_inputs_when_asked() -> None:
    """to_pandas() equals pd.DataFrame(result); inputs=True puts the mapped inputs first (product spelled out)."""
    result = PIPE.map({"x": np.array([0, 1, 3])}, map_over="x")
    pd.testing.assert_frame_equal(result.to_pandas(), pd.DataFrame(dict(result)))
    frame = result.to_pandas(inputs=True)
    assert list(frame.columns) == ["x", "double", "label", "inverse"]
    assert frame["x"].tolist() == [0, 1, 3]
    product = Pipeline([ratio]).map({"x": [1.0, 2.0], "y": range(1, 4)}, map_over=["x", "y"], map_mode="product")
    frame = product.to_pandas(inputs=True)
    assert frame[["x", "y"]].values.tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    assert frame["ratio"].tolist() == [1.0, 0.5, 1 / 3, 2.0, 1.0, 2 / 3]


def test_failed_items_keep_their_row_with_missing_cells_and_a_failure_column() -> None:
    """By default a failed item's dependent cells are missing and `failure` holds its Failure; the
    cells that did not depend on the failure keep their values; "drop" keeps the good items
    (labelled by item index); "raise" raises the item's own exception."""
    result = PIPE.map({"x": [1, 2, 3]}, map_over="x", on_error="continue")
    frame = result.to_pandas(inputs=True)
    assert frame["double"].tolist() == [2, 4, 6]
    assert frame["inverse"].iloc[0] == -0.5
    assert np.isnan(frame["inverse"].iloc[1])
    assert isinstance(frame["failure"].iloc[1], Failure)
    assert frame["failure"].iloc[1].node == "inverse"
    assert frame["failure"].iloc[0] is None
    assert isinstance(result["inverse"][1], Failure), "the result keeps its marker"
    dropped = result.to_pandas(failures="drop")
    assert list(dropped.index) == [0, 2]
    assert "failure" not in dropped
    with pytest.raises(ZeroDivisionError) as info:
        result.to_pandas(failures="raise")
    # The re-raised error's traceback holds this frame, and so `result`: drop it, so the
    # failure dies with the test (a live Failure keeps maps off the core's fast path).
    info.value.__traceback__ = None
    with pytest.raises(ArgumentTypeError, match=r"failures must be one of \('column', 'drop', 'raise'\)"):
        result.to_pandas(failures="ignore")


def test_to_arrow_types_the_columns_and_describes_failures_as_text() -> None:
    """to_arrow() infers Arrow types, makes failure cells null and adds `failure` text; "drop" adds `item`."""
    result = PIPE.map({"x": [1, 2, 3]}, map_over="x", on_error="continue")
    table = result.to_arrow()
    assert table.schema.field("double").type == pa.int64()
    assert table.column("inverse").to_pylist() == [-0.5, None, 0.5]
    failure = table.column("failure").to_pylist()
    assert failure[0] is None
    assert failure[1].startswith("inverse: builtins.ZeroDivisionError: division by zero")
    dropped = result.to_arrow(failures="drop", inputs=True)
    assert dropped.column_names == ["item", "x", "double", "label", "inverse"]
    assert dropped.column("item").to_pylist() == [0, 2]


def test_to_numpy_takes_numeric_outputs_and_refuses_missing_values() -> None:
    """to_numpy(name) gives the numeric column; a failure in it raises unless dropped; text needs a dtype."""
    result = PIPE.map({"x": [1, 2, 3]}, map_over="x", on_error="continue")
    array = result.to_numpy("double")
    assert array.dtype == np.int64
    assert array.tolist() == [2, 4, 6]
    with pytest.raises(ArgumentTypeError, match=r"items \[1\] failed, so output `inverse` has no value"):
        result.to_numpy("inverse")
    assert result.to_numpy("inverse", failures="drop").tolist() == [-0.5, 0.5]
    with pytest.raises(ArgumentTypeError, match=r"takes a numeric output .* `label` holds str values"):
        result.to_numpy("label")
    assert result.to_numpy("label", dtype=object).tolist() == ["n1", "n2", "n3"]
    with pytest.raises(ArgumentTypeError, match="no output `nope`; outputs: double, label, inverse"):
        result.to_numpy("nope")


def test_a_hand_built_result_has_no_inputs_to_show() -> None:
    """inputs=True on a MapResult built from a plain dict says why it cannot."""
    result = MapResult({"y": [1, 2]})
    assert result.to_pandas()["y"].tolist() == [1, 2]
    with pytest.raises(ArgumentTypeError, match="inputs=True needs the map's mapped inputs"):
        result.to_pandas(inputs=True)


def test_frames_import_their_library_only_when_called() -> None:
    """A map result imports neither pandas, pyarrow nor numpy until a frame method is called."""
    code = (
        "import sys, hypernodes\n"
        "r = hypernodes.Pipeline([hypernodes.node(lambda x: x + 1, output_name='y')]).map({'x': [1]}, map_over='x')\n"
        "before = sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules)\n"
        "r.to_arrow()\n"
        "print(before, 'pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"
