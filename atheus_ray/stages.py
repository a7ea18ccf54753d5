"""Stage-level resume, shared by synthesis and screening.

A run is a sequence of named stages, each a function of the rows before it. When a stage finishes, its rows
are saved under `OUT/.stages/<stage>/state` with a `done.json` holding the run's fingerprint (a hash of
everything the output depends on) and its counts; its rejected rows go to `OUT/rejected/<stage>/`.
Rerunning with the same fingerprint reuses every stage already done, up to the first one that is not; from
there on every stage runs again. A crash or Ctrl-C costs at most the stage that was running.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Callable

from atheus_ray.storage import Location
from atheus_ray.tables import REJECTED_COLUMNS, read_rows, write_rows


class Stages:
    """Runs stages in order, reusing each one already done with the same fingerprint (see module docstring)."""

    def __init__(
        self,
        out: Location,
        fingerprint: str,
        log: Callable[[str], None],
        on_first_compute: Callable[[], None],
        rejected_columns: tuple[str, ...] = REJECTED_COLUMNS,
    ):
        self.out, self.fingerprint, self.log, self.rejected_columns = out, fingerprint, log, rejected_columns
        self.resuming, self.on_first_compute, self.computed = True, on_first_compute, False
        self.report: list[dict] = []

    def run(self, name: str, rows: list[dict], compute: Callable[[list[dict]], tuple]) -> list[dict]:
        """`compute(rows)` returns (new rows, rejected rows, tokens_in, tokens_out)."""
        folder = self.out / ".stages" / name
        done = folder / "done.json"
        if self.resuming and done.exists():
            info = json.loads(done.read_text())
            if info["fingerprint"] == self.fingerprint:
                self.log(f"[{name}] done in an earlier run: reusing {info['kept']} rows")
                self.report.append({**info, "resumed": True})
                return read_rows(folder / "state")
        self.resuming = False
        if not self.computed:
            self.on_first_compute()
            self.computed = True
        start = time.time()
        self.log(f"[{name}] running ...")
        rows, rejected, tokens_in, tokens_out = compute(rows)
        write_rows([{**r, "stage": name} for r in rejected], self.out / "rejected" / name, self.rejected_columns)
        write_rows(rows, folder / "state")
        info = {
            "stage": name,
            "fingerprint": self.fingerprint,
            "kept": len(rows),
            "rejected": len(rejected),
            "rejected_by_reason": dict(Counter(r["reject_reason"] for r in rejected)),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "seconds": round(time.time() - start, 1),
        }
        done.write_text(json.dumps(info, indent=2))
        self.log(f"[{name}] kept {len(rows)} rows, rejected {len(rejected)} {info['rejected_by_reason']}")
        self.report.append({**info, "resumed": False})
        return rows
