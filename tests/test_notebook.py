"""ProgressCallback in a real Jupyter kernel: the notebook widget bar, run by nbclient."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

CELL = """\
from hypernodes import Pipeline, node
from hypernodes.telemetry import ProgressCallback

@node(output_name="y")
def inc(x: int) -> int:
    return x + 1

pipeline = Pipeline([inc], callbacks=[ProgressCallback()], name="in-a-notebook")
print(sum(pipeline.map({"x": list(range(500))}, "x")["y"]))
"""


@pytest.mark.parametrize("core", ["python"], indirect=True)  # one kernel run is enough
def test_progress_in_a_notebook_is_a_widget_that_ends_full(core: Any) -> None:
    """In a Jupyter kernel ProgressCallback shows the notebook widget (not text), and the saved
    widget state holds a finished bar: 500 of 500, styled as a success."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(CELL))
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    asyncio.run(client.async_execute())  # asyncio.run closes its loop (execute() would keep one open)
    outputs = notebook.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream").strip() == str(
        sum(range(1, 501))
    )
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert len(bars) == 1
    assert (bars[0]["value"], bars[0]["max"], bars[0]["bar_style"]) == (500, 500, "success")
    labels = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any("in-a-notebook" in label for label in labels)
