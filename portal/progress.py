"""The progress bar of long management commands (imports, benchmark seeding)."""

import time


class ProgressBar:
    """``[######--------]  42%  42,000/100,000 devices  3.1 s``, redrawn in place on a
    terminal; in a log (not a terminal) one line per 10 %.

    ``stream`` is a command's ``self.stderr``; call the bar with (done, total).
    """

    def __init__(self, stream, label: str, width: int = 30):
        self.stream, self.label, self.width = stream, label, width
        self.started, self.tty, self.last_tenth = time.perf_counter(), stream.isatty(), -1

    def __call__(self, done: int, total: int):
        fraction = done / total if total else 1.0
        tenth = int(fraction * 10)
        if not self.tty and tenth == self.last_tenth:
            return
        self.last_tenth = tenth
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        line = (
            f"[{bar}] {int(fraction * 100):3d}%  {done:,}/{total:,} {self.label}  {elapsed:.1f} s"
        )
        finished = done >= total
        self.stream.write(
            f"\r{line}" if self.tty else line, ending="\n" if finished or not self.tty else ""
        )
        self.stream.flush()
