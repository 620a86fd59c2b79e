"""A progress bar for long management commands (CONTRIBUTING.md: "long ones show a
progress bar"), on the command's ``self.stderr``."""

import time


class ProgressBar:
    """``[#######-------]  42%  42,000/100,000 rows checked  3.1 s``: redrawn in place on a
    terminal, one line per 10 % in a log. Call it as often as you like with
    ``(done, total)``; it writes only when there is something new to show."""

    def __init__(self, stream, label: str, width: int = 30):
        self.stream, self.label, self.width = stream, label, width
        self.started, self.tty, self.last_tenth = time.perf_counter(), stream.isatty(), -1
        self.last_percent = -1

    def __call__(self, done: int, total: int):
        fraction = min(done / total, 1.0) if total else 1.0
        tenth, percent = int(fraction * 10), int(fraction * 100)
        finished = done >= total
        if self.tty:
            if percent == self.last_percent and not finished:
                return
        elif tenth == self.last_tenth:
            return
        self.last_tenth, self.last_percent = tenth, percent
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        line = f"[{bar}] {percent:3d}%  {done:,}/{total:,} {self.label}  {elapsed:.1f} s"
        self.stream.write(
            f"\r{line}" if self.tty else line, ending="\n" if finished or not self.tty else ""
        )
        self.stream.flush()
