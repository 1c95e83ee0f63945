"""Progress bars: :class:`ProgressCallback`.

``ProgressCallback`` draws tqdm bars: one per map (items done of total, rate, ETA),
one per ``run()`` (nodes done), nested pipelines' bars below their parent's. Under
``on_error="continue"`` a map's failed items count as done and, apart, as
``failed=N`` after the bar. It
picks the bar by where the output goes: the notebook widget in Jupyter, the text
bar in a terminal, and when the output is not a terminal (CI, a log file) a plain
line every ``log_interval`` seconds instead of thousands of redraws. A map advances
its bar once per batch (``on_map_items_done``), so a million tiny items cost a few
hundred updates, not a million. tqdm is the optional extra ``hypernodes[progress]``.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from .._errors import check_bool
from ..callbacks import CallbackContext, PipelineCallback

__all__ = ["ProgressCallback"]

_INSTALL = "ProgressCallback draws its bars with tqdm, which is not installed: pip install 'hypernodes[progress]'"


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel that can show widgets."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


class ProgressCallback(PipelineCallback):
    """Progress bars for maps (items) and runs (nodes), nested pipelines included.

    Bars of a call that fails are closed (showing where they stopped); bars of nested
    pipelines inside a map's items are transient (``leave=False``).
    """

    node_values = False  # bars need no values: process maps send none back for them
    node_events_in_maps = False  # a map's bar counts items, per batch

    def __init__(
        self,
        file: IO[str] | None = None,
        *,
        mode: str = "auto",
        log_interval: float = 5.0,
        enable: bool = True,
    ) -> None:
        """Args:
            file: where text bars go (default: ``sys.stderr``).
            mode: "auto" (notebook widget in Jupyter, text bar on a terminal, log lines
                otherwise), or one of "notebook", "terminal", "log".
            log_interval: seconds between lines in "log" mode.
            enable: False draws nothing (a switch for scripts).

        Raises:
            ImportError: tqdm is not installed (the message says what to install).
            ValueError: an unknown ``mode`` or a ``log_interval`` that is not positive.
            TypeError: ``enable`` is not a bool.
        """
        if mode not in ("auto", "notebook", "terminal", "log"):
            raise ValueError(f"ProgressCallback(mode={mode!r}): allowed are 'auto', 'notebook', 'terminal', 'log'.")
        if not log_interval > 0:
            raise ValueError(f"ProgressCallback(log_interval={log_interval!r}) must be a positive number of seconds.")
        try:
            import tqdm  # noqa: F401
        except ImportError:
            raise ImportError(_INSTALL) from None
        check_bool(enable, "enable", "ProgressCallback()")
        self.file = file
        self.mode = mode
        self.log_interval = log_interval
        self.enable = enable

    # -- bars -----------------------------------------------------------------------

    def _kind(self) -> str:
        if self.mode != "auto":
            return self.mode
        if self.file is None and _in_notebook():
            return "notebook"
        return "terminal" if _is_terminal(self.file or sys.stderr) else "log"

    def _open(self, ctx: CallbackContext, total: int, unit: str) -> Any:
        pid = ctx.current_pipeline_id or ""
        meta = ctx.get_pipeline_metadata(pid)
        depth = ctx.depth
        inside_map = any(ctx.get_pipeline_metadata(p).get("kind") == "map" for p in ctx.hierarchy_path[:-1])
        options: dict[str, Any] = {
            "total": total,
            "desc": ("  " * depth) + str(meta.get("name", pid)),
            "unit": unit,
            "leave": not inside_map,
            "disable": not self.enable,
        }
        kind = self._kind()
        if kind == "notebook":
            bar = _bar_class("notebook")(**options)
        elif kind == "terminal":
            bar = _bar_class("terminal")(file=self.file or sys.stderr, mininterval=0.1, dynamic_ncols=True, **options)
        else:
            bar = _bar_class("log")(file=self.file or sys.stderr, mininterval=self.log_interval, ncols=100, **options)
        ctx.set(_key(pid), bar)
        return bar

    def _close(self, ctx: CallbackContext, pipeline_id: str) -> None:
        bar = ctx.get(_key(pipeline_id))
        if bar is not None:
            ctx.set(_key(pipeline_id), None)
            bar.close()

    # -- hooks ----------------------------------------------------------------------

    def on_map_start(self, total_items: int, ctx: CallbackContext) -> None:
        self._open(ctx, total_items, "item")

    def on_map_items_done(self, count: int, ctx: CallbackContext) -> None:
        bar = ctx.get(_key(ctx.current_pipeline_id or ""))
        if bar is not None:
            bar.update(count)

    def on_map_item_failed(self, item_index: int, failure: Any, ctx: CallbackContext) -> None:
        # Failed items count among the finished ones (items_done) and, apart, in the bar's postfix.
        pid = ctx.current_pipeline_id or ""
        failed = ctx.get(_failed_key(pid), 0) + 1
        ctx.set(_failed_key(pid), failed)
        bar = ctx.get(_key(pid))
        if bar is not None:
            bar.set_postfix_str(f"failed={failed}", refresh=False)

    def on_map_end(self, total_duration: float, ctx: CallbackContext) -> None:
        self._close(ctx, ctx.current_pipeline_id or "")

    def on_pipeline_start(self, pipeline_id: str, inputs: dict[str, Any], ctx: CallbackContext) -> None:
        meta = ctx.get_pipeline_metadata(pipeline_id)
        inside_map = any(ctx.get_pipeline_metadata(p).get("kind") == "map" for p in ctx.hierarchy_path[:-1])
        if meta.get("kind") == "run" and not inside_map:  # one bar per item of a map would be noise
            self._open(ctx, int(meta.get("total_nodes", 0)), "node")

    def on_node_end(self, node_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self._advance_run(node_id, ctx)

    def on_node_cached(self, node_id: str, signature: str, ctx: CallbackContext) -> None:
        self._advance_run(node_id, ctx)

    def _advance_run(self, node_id: str, ctx: CallbackContext) -> None:
        pid = ctx.current_pipeline_id or ""
        if ctx.get_pipeline_metadata(pid).get("kind") != "run":
            return
        bar = ctx.get(_key(pid))
        if bar is not None:
            bar.set_postfix_str(node_id, refresh=False)
            bar.update(1)

    def on_pipeline_end(self, pipeline_id: str, outputs: dict[str, Any], duration: float, ctx: CallbackContext) -> None:
        self._close(ctx, pipeline_id)

    def on_pipeline_error(self, pipeline_id: str, error: BaseException, duration: float, ctx: CallbackContext) -> None:
        self._close(ctx, pipeline_id)


def _key(pipeline_id: str) -> str:
    return f"hypernodes.progress:{pipeline_id}"


def _failed_key(pipeline_id: str) -> str:
    return f"hypernodes.progress.failed:{pipeline_id}"


_BARS: dict[str, type] = {}


def _bar_class(kind: str) -> type:
    """The tqdm class for ``kind`` ("notebook", "terminal", "log"), made once tqdm is imported.

    Each has ``monitor_interval = 0``: tqdm's monitor thread (which tunes how often slow
    bars redraw) would otherwise outlive the call; our bars are updated per batch anyway.
    """
    found = _BARS.get(kind)
    if found is not None:
        return found
    if kind == "notebook":
        from tqdm.notebook import tqdm as base
    else:
        from tqdm import tqdm as base

    class Bar(base):  # type: ignore[misc]
        monitor_interval = 0

    made: type = Bar
    if kind == "log":

        class LogBar(Bar):
            """A bar that writes a whole new line per refresh, for logs (no carriage returns)."""

            def display(self, msg: str | None = None, pos: int | None = None) -> bool:
                text = self.__str__() if msg is None else msg
                if text.strip():
                    self.fp.write(text + "\n")
                    self.fp.flush()
                return True

        made = LogBar
    _BARS[kind] = made
    return made
