"""In a real Jupyter kernel, run by nbclient: ProgressCallback's notebook widget bar, TelemetryCallback's chart."""

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


WATERFALL_CELL = """\
from hypernodes import Pipeline, node
from hypernodes.telemetry import TelemetryCallback

@node(output_name="y")
def inc(x: int) -> int:
    return x + 1

telemetry = TelemetryCallback()
Pipeline([inc], callbacks=[telemetry], name="charted").map({"x": [1, 2, 3]}, "x")
telemetry.get_waterfall_chart()
"""


@pytest.mark.parametrize("core", ["python"], indirect=True)  # one kernel run is enough
def test_waterfall_chart_shows_in_a_notebook(core: Any) -> None:
    """In a Jupyter kernel the waterfall chart is the cell's rich output: a Plotly figure whose
    bars are the call, its three items and their nodes."""
    pytest.importorskip("plotly")
    pytest.importorskip("opentelemetry")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(WATERFALL_CELL))
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3")
    asyncio.run(client.async_execute())
    (figure,) = (o["data"]["application/vnd.plotly.v1+json"] for o in notebook.cells[0].outputs if "data" in o)
    rows = [y.strip("\u200b ") for trace in figure["data"] for y in trace["y"]]
    assert sorted(rows) == sorted(["charted", "item 0", "inc", "item 1", "inc", "item 2", "inc"])
