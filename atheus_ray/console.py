"""What a run prints: its own lines on the console, everything else in a log file under OUT/logs/.

A phase logs a line per stage as it starts and ends, the progress of long LLM passes and a final summary
(`Console.say`). Ray, Ray Data, Serve, vLLM and Ray Train print far more, from the driver and, forwarded by
Ray, from every worker on every node: inside `Console` all of that goes to `OUT/logs/<command>-<UTC time>.log`,
named once at the start, and the console keeps the run's own lines (which the log file gets too). The
redirection is of file descriptors 1 and 2, so output from C++, from vLLM's engine processes and from Ray's
log forwarding lands in the file as well. When OUT is on an object store the file is written locally (under
the system's temporary folder) and uploaded to OUT/logs/ every minute and when the run ends, failed or not.
`--verbose` (or ATHEUS_VERBOSE=1) leaves everything on the console, as Ray prints it.

A run that fails prints one line naming the error that explains it (the innermost cause of a Ray task's
error) and the log file that holds its full trace, and exits with status 1. Errors in configs and inputs
are not this module's: they pass through, to be printed as before and exit 2, and the log file of such a
run is removed with any folder it created, so a refused run writes nothing.

`progress(total, label, log)` is a long pass's progress: a live bar (done / total, rate, ETA) on a terminal,
a line every 30 s through `log` anywhere else (a file, `ray job logs`, tests).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from atheus_ray.storage import Location

UPLOAD_EVERY = 60.0  # seconds between uploads of a log whose OUT is on an object store
_active: Console | None = None  # the console of the run in this process, if any: progress bars draw on it


def verbose_from_env() -> bool:
    return os.environ.get("ATHEUS_VERBOSE", "").strip().lower() in ("1", "true", "yes")


class Console:
    """A run's console and log file (see the module docstring). `with Console(out, "pipeline") as console:`,
    then `console.say(line)` for what the user should see."""

    def __init__(self, out: str | Location, command: str, verbose: bool = False, user_errors: tuple = ()):
        self.out, self.verbose, self.user_errors = Location(out), verbose, user_errors
        self.name = f"{command}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.log"
        self.log_path: Path | None = None
        self.terminal = sys.stdout
        self._saved: tuple[int, int] | None = None
        self._created: list[Path] = []
        self._stop_uploads = threading.Event()
        self._uploads: threading.Thread | None = None

    def __enter__(self) -> Console:
        global _active
        if not self.verbose:
            folder = Path(tempfile.mkdtemp(prefix="atheus-logs-")) if self.out.scheme else Path(str(self.out / "logs"))
            # the folders this run creates: a bad config or input leaves none of them behind (see __exit__)
            self._created = [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            self.log_path = folder / self.name
            sys.stdout.flush()
            sys.stderr.flush()
            self._saved = os.dup(1), os.dup(2)
            self.terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            self.say(f"logs of Ray, vLLM, Serve and Ray Train: {self.where()} (--verbose shows them here)")
            if self.out.scheme:  # uploaded now and then too: a run SIGKILLed (`ray job stop` after 3 s) keeps its log
                self._uploads = threading.Thread(target=self._upload_now_and_then, daemon=True)
                self._uploads.start()
        _active = self
        return self

    def where(self) -> str:
        """Where the log file is, or will be once uploaded."""
        return str(self.out / "logs" / self.name) if self.out.scheme else str(self.log_path)

    def say(self, message: str) -> None:
        """A line for the user: on the console, and in the log file."""
        print(message, file=self.terminal, flush=True)
        if self.log_path is not None:
            print(f"[atheus {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def __exit__(self, exc_type, exc, tb) -> bool:
        global _active
        _active = None
        refused = exc is not None and isinstance(exc, self.user_errors)
        failed = exc is not None and not refused and not isinstance(exc, (KeyboardInterrupt, SystemExit))
        if failed and self.log_path is not None:
            traceback.print_exception(exc_type, exc, tb)  # to the log file
        try:
            import ray

            if self.log_path is not None and ray.is_initialized():
                ray.shutdown()  # here, so that what Ray prints on its way out goes to the log file too
        finally:
            self._restore(upload=not refused)
        if refused and self.log_path is not None:  # nothing written for a bad config or input: its error says it all
            self.log_path.unlink(missing_ok=True)
            if self.out.scheme:
                with contextlib.suppress(Exception):  # a log uploaded early on, if any
                    (self.out / "logs" / self.name).delete()
            for folder in self._created:
                with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                    folder.rmdir()
        if failed:
            trace = f"; the full trace is in {self.where()}" if self.log_path else ""
            print(f"error: {explain(exc)}{trace}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        return False

    def _restore(self, upload: bool) -> None:
        if self._saved is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        os.close(self._saved[0])
        os.close(self._saved[1])
        self.terminal.close()
        self._saved, self.terminal = None, sys.stdout
        if self._uploads is not None:
            self._stop_uploads.set()
            self._uploads.join()
        if upload and self.out.scheme and self.log_path is not None:
            try:
                self._upload()
            except Exception as e:  # the run's own outcome matters more than its log's upload
                print(f"warning: could not upload the log to {self.where()} ({e}); it is in {self.log_path}")

    def _upload(self) -> None:
        (self.out / "logs" / self.name).write_bytes(self.log_path.read_bytes())

    def _upload_now_and_then(self) -> None:
        while not self._stop_uploads.wait(UPLOAD_EVERY):
            with contextlib.suppress(Exception):  # the next try, or the last one at the end, will say
                self._upload()


def explain(exc: BaseException) -> str:
    """One line for a failure: the innermost cause of a Ray task's error (whose text is the remote traceback),
    as `Type: message`, the message cut to its first lines."""
    from ray.exceptions import RayTaskError

    while isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        exc = exc.cause
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    message = " / ".join(lines[:3]) + (" ..." if len(lines) > 3 else "")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class progress:
    """The progress of `total` items of work named `label`: `update(n, tokens)` as items finish, `close()` at
    the end (or use as a context manager). A live bar on a terminal, else a line through `log` every 30 s."""

    EVERY = 30.0

    def __init__(self, total: int, label: str, log: Callable[[str], None] | None, unit: str = "req"):
        self.total, self.label, self.log = total, label, log
        self.done = self.tokens = 0
        self.began = self.said = time.time()
        terminal = _active.terminal if _active is not None else None
        self.bar = None
        if terminal is not None and terminal.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit, file=terminal, mininterval=1.0, leave=False)

    def __enter__(self) -> progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, tokens: int = 0) -> None:
        self.done += n
        self.tokens += tokens
        now = time.time()
        rate = self.tokens / max(now - self.began, 1e-9)  # tokens, where the caller counts them
        if self.bar is not None:
            if self.tokens:
                self.bar.set_postfix_str(f"{rate:.1f} tok/s", refresh=False)
            self.bar.update(n)
        elif self.log is not None and now - self.said >= self.EVERY and 0 < self.done < self.total:
            self.said = now
            tokens = f", {rate:.1f} tokens/s" if self.tokens else ""
            # the time left from a quarter done on: before that, with a whole pass in flight at once, the first
            # items to finish tell little of the rest ("1/34 (59 s), about 1955 s left" for a pass done 40 s later)
            eta = (now - self.began) / self.done * (self.total - self.done)
            left = f", about {eta:.0f} s left" if 4 * self.done >= self.total else ""
            self.log(f"{self.label}: {self.done:,}/{self.total:,} ({now - self.began:.0f} s{tokens}{left})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
