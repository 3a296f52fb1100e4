"""Live progress of a notebook that papermill executes: what `./run_all.sh` shows while it runs.

- one line when each code cell starts: `[04_gap 7/31] tables = experiment.gap_table(...)` (its first line
  of code), so the terminal says what is running;
- the kernel's own output as it arrives (prints, log lines and the tqdm bars of dlink's loops),
  relayed through papermill's stdout_file / stderr_file hooks;
- a heartbeat when nothing was printed for `heartbeat` seconds: `[04_gap 7/31] still running
  (2.0 min in this cell)`, so no step is silent for a minute even when its code prints nothing.

On a terminal the kernel's text passes through untouched (tqdm's carriage returns redraw the bar
in place). Into a file or a pipe (CI logs, `./run_all.sh > log`) a bar redrawn hundreds of times
would bury the log, so only its latest state is written, as a line, at most every
`bar_interval` seconds, and once more when it ends.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO


def _first_code_line(source: str, width: int = 72) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "%", "!")):
            return line if len(line) <= width else line[: width - 3] + "..."
    return "(comments only)"


def _fmt(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class _Stream:
    """A file-like that papermill writes one kernel stream (stdout or stderr) into."""

    def __init__(self, owner: CellProgress, name: str):
        self._owner, self.name = owner, name

    def write(self, text: str) -> int:
        self._owner._relay(text, self.name)
        return len(text)

    def flush(self) -> None:
        self._owner.out.flush()


class CellProgress:
    """Progress reporter for one notebook run; a context manager (it owns the heartbeat thread).

    out: where everything goes (sys.stdout); tty: whether `out` is a terminal (None: ask it).
    Both kernel streams go to `out`, so lines keep their order in a log; a line one stream
    leaves unfinished (a bar on stderr) never has the other stream's text glued to it.
    """

    def __init__(
        self,
        name: str,
        out: TextIO,
        heartbeat: float = 30.0,
        bar_interval: float = 10.0,
        tty: bool | None = None,
        clock=time.monotonic,
    ):
        self.name, self.out, self.heartbeat, self.bar_interval = name, out, heartbeat, bar_interval
        self.tty = bool(getattr(out, "isatty", lambda: False)()) if tty is None else tty
        self.clock = clock
        self.stdout, self.stderr = _Stream(self, "stdout"), _Stream(self, "stderr")
        self._lock = threading.RLock()
        self._numbers: dict[int, int] = {}  # executed cell index -> 1-based cell number in the source
        self._n_cells = 0
        self._cell = 0
        self._cell_start = self._last_write = clock()
        self._open: str | None = None  # tty: the stream whose line is unfinished on screen
        # not a tty, per stream: the latest state of its unfinished line (a tqdm bar), the
        # state last written out, and when
        self._pending: dict[str, str] = {}
        self._shown: dict[str, str | None] = {}
        self._shown_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- papermill hooks (called from papermill's execution loop)

    def start(self, cells) -> None:
        """Number cells as in the source notebook (the failure message does the same): the
        cell papermill injects for the parameters gets no number and no line."""
        number = 0
        for i, c in enumerate(cells):
            if "injected-parameters" not in c.get("metadata", {}).get("tags", []):
                number += 1
                self._numbers[i] = number
        self._n_cells = number

    def cell_start(self, cell, index: int) -> None:
        if cell.cell_type != "code" or index not in self._numbers:
            return
        with self._lock:
            self._cell, self._cell_start = self._numbers[index], self.clock()
            self._line(f"{self._tag()} {_first_code_line(cell.source)}")

    # ---- output

    def _tag(self) -> str:
        return f"[{self.name} {self._cell}/{self._n_cells}]"

    def _line(self, text: str) -> None:
        """A line of our own, on a line of its own."""
        with self._lock:
            self._flush_pending()
            self._end_open_line()
            self.out.write(text + "\n")
            self.out.flush()
            self._last_write = self.clock()

    def _end_open_line(self) -> None:
        if self._open is not None:
            self.out.write("\n")
            self._open = None

    def _relay(self, text: str, stream: str) -> None:
        if not text:
            return
        with self._lock:
            self._last_write = self.clock()
            if self.tty:
                if self._open not in (None, stream):
                    self._end_open_line()
                self.out.write(text)
                self._open = None if text.endswith("\n") else stream
            else:
                self._relay_to_log(text, stream)
            self.out.flush()

    def _relay_to_log(self, text: str, stream: str) -> None:
        *lines, tail = (self._pending.get(stream, "") + text).split("\n")
        for line in lines:  # finished lines: only their last redraw, unless just shown
            final = line.rsplit("\r", 1)[-1]
            if not final or final != self._shown.get(stream):
                self.out.write(final + "\n")
            self._shown[stream] = None
        pending = self._pending[stream] = tail.rsplit("\r", 1)[-1]
        now = self.clock()
        if pending and pending != self._shown.get(stream):
            if now - self._shown_at.get(stream, -float("inf")) >= self.bar_interval:
                self.out.write(pending + "\n")
                self._shown[stream], self._shown_at[stream] = pending, now

    def _flush_pending(self) -> None:
        """Not a tty: unfinished lines (bars) are shown as they stand before a line of ours."""
        for stream, pending in self._pending.items():
            if pending and pending != self._shown.get(stream):
                self.out.write(pending + "\n")
                self._shown[stream], self._shown_at[stream] = pending, self.clock()

    def beat(self) -> bool:
        """Print the heartbeat if nothing was written for `heartbeat` seconds; True if it did."""
        with self._lock:
            now = self.clock()
            if self._cell and now - self._last_write >= self.heartbeat:
                self._line(f"{self._tag()} still running ({_fmt(now - self._cell_start)} in this cell)")
                return True
            return False

    # ---- heartbeat thread

    def __enter__(self) -> CellProgress:
        def loop():
            while not self._stop.wait(1.0):
                self.beat()

        self._thread = threading.Thread(target=loop, name=f"progress {self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._flush_pending()
            self._end_open_line()
            self.out.flush()


def engine_class():
    """A papermill engine that reports to the CellProgress passed as `progress=`; registered by
    `register_engine` under the name "dlink"."""
    from papermill.engines import NBClientEngine

    class _ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls, nb_man, kernel_name, progress: CellProgress | None = None, **kwargs
        ):
            if progress is not None:
                progress.start(nb_man.nb.cells)
                cell_start = nb_man.cell_start

                def hooked(cell, cell_index=None, **kw):
                    cell_start(cell, cell_index, **kw)
                    progress.cell_start(cell, cell_index)

                nb_man.cell_start = hooked
                kwargs.update(stdout_file=progress.stdout, stderr_file=progress.stderr)
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return _ProgressEngine


ENGINE_NAME = "dlink"


def register_engine() -> str:
    from papermill.engines import papermill_engines

    if ENGINE_NAME not in papermill_engines._engines:
        papermill_engines.register(ENGINE_NAME, engine_class())
    return ENGINE_NAME
