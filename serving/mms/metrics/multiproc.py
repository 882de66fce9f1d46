"""The folder where MMS workers keep their prometheus_client multiprocess files:
prepared empty at start, read under a lock, and kept bounded by folding the
files of dead workers into one archive file per type.

Each worker writes `counter_<pid>.db` and `histogram_<pid>.db`. Left alone,
every restarted worker would add two files that every scrape reads forever.
A dead worker's values are only ever summed (counters, histogram buckets and
sums), so they can be added into `counter_archive.db` / `histogram_archive.db`
(read as the same types: prometheus_client takes the type from the name's
first word) and the dead files removed, with the totals unchanged.
"""

import glob
import logging
import os
import shutil
import threading
from collections import defaultdict
from pathlib import Path

import psutil
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from fizbuz_codec import is_decimal

log = logging.getLogger(__name__)

FOLDED_TYPES = ("counter", "histogram")
ARCHIVE = "archive"


def prepare(folder):
    """An empty folder: values of an earlier server must not count again."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def pid_of(path):
    """The pid in `counter_123.db` / `gauge_livesum_123.db`, or None (archives)."""
    tail = Path(path).stem.rsplit("_", 1)[-1]
    return int(tail) if is_decimal(tail) else None


def summed_values(paths):
    """{mmap key: value summed over `paths`}."""
    totals = defaultdict(float)
    for path in paths:
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            totals[key] += value
    return totals


class FilesCollector:
    """prometheus_client's multiprocess collector, with folding done under the
    same lock, so a scrape never sees a value both in its dead file and in the
    archive (a double count would look like a counter reset to Prometheus)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.lock = threading.Lock()

    def collect(self):
        with self.lock:
            files = glob.glob(os.path.join(self.folder, "*.db"))
            return list(MultiProcessCollector.merge(files, accumulate=True))

    def fold_dead(self):
        """Fold the files of processes that no longer run; returns their pids."""
        with self.lock:
            dead = sorted(
                {
                    pid
                    for path in self.folder.glob("*.db")
                    if (pid := pid_of(path)) is not None and not psutil.pid_exists(pid)
                }
            )
            for pid in dead:
                for typ in FOLDED_TYPES:
                    self._fold(typ, self.folder / f"{typ}_{pid}.db")
                mark_process_dead(pid, str(self.folder))  # live gauges, if a handler ever has some
            if dead:
                log.info("folded the metric files of finished worker(s) %s into the archive", ", ".join(map(str, dead)))
            return dead

    def _fold(self, typ, dead_file):
        if not dead_file.exists():
            return
        archive = self.folder / f"{typ}_{ARCHIVE}.db"
        totals = summed_values([p for p in (archive, dead_file) if p.exists()])
        # Written beside, then renamed: the archive is never half-written.
        staging = self.folder / f"{typ}_{ARCHIVE}.next"
        staging.unlink(missing_ok=True)
        merged = MmapedDict(str(staging))
        try:
            for key, value in totals.items():
                merged.write_value(key, value, 0.0)
        finally:
            merged.close()
        os.replace(staging, archive)
        dead_file.unlink()
