"""The input log's older entries, moved out of Redis into files on disk.

Why: Redis holds everything in memory, and the input log is most of what the twin writes
(``python bench/redis_memory.py``: ≈ 2 MB a station-day of 3 with readings every minute). The log is the
evidence a regulator relies on and what replay and recovery read, so its old entries are not deleted
but moved: each move writes one file per station (the entries exactly as they were in the stream, their
ids included), made durable (fsync, then an atomic rename), and only then trimmed from the stream. A
crash between the two leaves the entries in both places; readers take the file and go on in Redis after
its last id, so nothing is read twice.

Layout: ``{root}/{station}/{first id}_{last id}.ftlog``, each a sequence of msgpack arrays
``[id, n, t0, t1, blob]`` (the stream entry's fields; ``blob`` is the log's batch encoding).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack

SUFFIX = ".ftlog"

Entry = tuple[str, dict[bytes, bytes]]  # a stream entry as redis-py gives it: id and fields


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _bound(start: str) -> tuple[tuple[int, int], bool]:
    if start in ("-", "(-"):
        return (-1, -1), False
    return parse_id(start.lstrip("(")), start.startswith("(")


def next_id(entry_id: str) -> str:
    """The smallest stream id after ``entry_id`` (XTRIM MINID keeps ids from it on)."""
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


class LogArchive:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        #: file name -> its first and last id: readers list the archive after every read of the stream
        #: (a listing is cheap; parsing every name again was not). Not keyed on the folder's mtime: its
        #: few-millisecond granularity could hide a file renamed in just after a listing.
        self._ids: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}

    def _dir(self, station: str) -> Path:
        return self.root / station

    def files(self, station: str) -> list[tuple[tuple[int, int], tuple[int, int], Path]]:
        """The station's archive files, oldest first, with the first and last id each holds."""
        folder = self._dir(station)
        try:
            names = [n for n in os.listdir(folder) if n.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            ids = self._ids.get(name)
            if ids is None:
                first, _, last = name[: -len(SUFFIX)].partition("_")
                ids = self._ids[name] = (parse_id(first), parse_id(last))
            out.append((ids[0], ids[1], folder / name))
        out.sort()
        return out

    def write(self, station: str, entries: Sequence[Entry]) -> Path:
        """One file holding ``entries`` (in stream order), durable before this returns."""
        folder = self._dir(station)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{entries[0][0]}_{entries[-1][0]}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        pack = msgpack.Packer(use_bin_type=True).pack
        with open(tmp, "wb") as f:
            for entry_id, fields in entries:
                f.write(pack([entry_id, int(fields[b"n"]), float(fields[b"t0"]), float(fields[b"t1"]),
                              fields[b"b"]]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
        return path

    def paths(self, station: str, start: str = "-") -> list[Path]:
        """The files holding entries from ``start`` on (``-``, an id, or ``(id`` for after it: the
        stream's own range syntax), oldest first."""
        lo, exclusive = _bound(start)
        return [path for _, last, path in self.files(station) if last > lo or (last == lo and not exclusive)]

    def read_file(self, path: Path, start: str = "-") -> list[tuple[str, int, float, float, bytes]]:
        """A file's entries ``(id, n, t0, t1, blob)`` from ``start`` on."""
        lo, exclusive = _bound(start)
        out = []
        with open(path, "rb") as f:
            for entry_id, n, t0, t1, blob in msgpack.Unpacker(f, raw=False, use_list=True):
                key = parse_id(entry_id)
                if key > lo or (key == lo and not exclusive):
                    out.append((entry_id, n, t0, t1, blob))
        return out

    def entries(self, station: str, start: str = "-") -> Iterator[tuple[str, int, float, float, bytes]]:
        for path in self.paths(station, start):
            yield from self.read_file(path, start)

    def first(self, station: str) -> tuple[str, int, float, float, bytes] | None:
        return next(self.entries(station), None)

    def last_id(self, station: str) -> str | None:
        """The id of the newest archived entry, from the file names (nothing read)."""
        files = self.files(station)
        return None if not files else "-".join(map(str, files[-1][1]))

    def last(self, station: str) -> tuple[str, int, float, float, bytes] | None:
        files = self.files(station)
        return self.read_file(files[-1][2])[-1] if files else None

    # ---- whole hashes of past months (the transactions' trace) ----------------------------------

    def write_hash(self, station: str, name: str, mapping: dict[str, bytes]) -> Path:
        """A hash's fields and JSON values as one JSON file ``{station}/{name}.json``, durable before this
        returns (the caller deletes the hash only then). A file already there is merged, the new values
        winning: a move cut short before its delete, or records written again by a restart that read
        the log, come back as the same hash."""
        folder = self._dir(station)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        merged = {k: json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()
                  for k, v in (self.read_hash(station, name) if path.exists() else {}).items()}
        merged.update(mapping)
        body = b"{" + b",".join(json.dumps(k).encode() + b":" + v for k, v in sorted(merged.items())) + b"}"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    def hash_names(self, station: str, prefix: str) -> list[str]:
        """The archived hashes of a station whose name starts with ``prefix``, newest (largest) first."""
        try:
            names = os.listdir(self._dir(station))
        except FileNotFoundError:
            return []
        return sorted((n[:-5] for n in names if n.startswith(prefix) and n.endswith(".json")), reverse=True)

    def read_hash(self, station: str, name: str) -> dict[str, Any]:
        with open(self._dir(station) / f"{name}.json", "rb") as f:
            return json.load(f)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.is_dir() else 0
