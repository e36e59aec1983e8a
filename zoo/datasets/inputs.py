"""Dataset input: which files, how their rows split into shards, and each shard's texts and ids.

Formats by suffix: Parquet (``.parquet``, ``.pq``), JSON lines (``.jsonl``, ``.ndjson``), CSV
(``.csv``), and text (``.txt``, one text per line). A folder is every such file under it, sorted by
path, hidden and ``_``-prefixed names (``_SUCCESS``, ``.crc``) skipped, as Spark and Ray write them.

A shard is a row range of one file, so a job over one large file still spreads over workers, and
``--resume`` redoes only unfinished ranges. Rows are identified by ``--id-column`` or, by default,
their global row index across the files in order, so ids are stable from one run to the next.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..errors import InvalidInput, require

__all__ = ["Shard", "InputPlan", "ShardReader", "plan_input", "FORMATS"]

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
           ".txt": "text"}
DEFAULT_ID = "id"  # the output's id column when rows are identified by their index


@dataclass(frozen=True)
class Shard:
    index: int
    file: str
    format: str
    start: int  # row range [start, stop) of the file
    stop: int
    first_id: int  # global index of the shard's first row (the default id)

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}.parquet"

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InputPlan:
    path: str
    files: list[tuple[str, str]]  # (path, format)
    rows: int
    digest: str  # sha256 over every file's relative name and bytes
    shards: list[Shard]
    stamps: list[tuple[str, int, int]] = ()  # (file, size, mtime_ns) as digested

    def changed(self) -> Optional[str]:
        """The first input file rewritten, grown or removed since it was digested, or None: a job checks at
        its end, so vectors of an input that changed under it are not reported as the input's."""
        for file, size, mtime_ns in self.stamps:
            try:
                st = Path(file).stat()
            except OSError:
                return f"{file} is gone"
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                return f"{file} changed while the job ran ({size:,} -> {st.st_size:,} bytes)"
        return None


def _files(path: Path) -> list[tuple[str, str]]:
    if path.is_file():
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise InvalidInput(f"{path}: unknown input format {path.suffix or '(no suffix)'}; use "
                               f"{', '.join(sorted(FORMATS))}")
        return [(str(path), fmt)]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS
                       and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
        if not found:
            raise InvalidInput(f"{path}: no input files ({', '.join(sorted(FORMATS))}) in this folder")
        formats = {FORMATS[p.suffix.lower()] for p in found}
        if len(formats) > 1:
            raise InvalidInput(f"{path}: mixes input formats ({', '.join(sorted(formats))}); keep one per folder")
        return [(str(p), FORMATS[p.suffix.lower()]) for p in found]
    raise InvalidInput(f"{path}: no such file or folder")


def read_table(path: str, fmt: str, columns: Optional[list[str]]):
    """The file as a pyarrow Table of ``columns`` (None: all). Text values are left as they are, so a
    null or a number is reported by row, not lost in a cast."""
    pa = require("pyarrow", "dataset")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            _check_columns(path, columns, schema.names)
            return pq.read_table(path, columns=columns)
        if fmt == "csv":
            import pyarrow.csv as pcsv

            names = pcsv.open_csv(path).schema.names
            _check_columns(path, columns, names)
            # every column as text: a CSV id "007" stays "007", and an empty field is an empty text
            return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                include_columns=columns, column_types={n: pa.string() for n in names}, strings_can_be_null=False))
        if fmt == "text":
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()  # the final newline ends the last line; it starts no empty text
            table = pa.table({"text": pa.array([line.removesuffix("\r") for line in lines], pa.string())})
            _check_columns(path, columns, table.column_names)
            return table if columns is None else table.select(columns)
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise InvalidInput(f"{path}: line {n} is a JSON {type(row).__name__}, not an object")
                    rows.append(row)
        names = list(dict.fromkeys(k for r in rows for k in r))
        _check_columns(path, columns, names)
        # Python objects, not inferred Arrow types: one number among strings must name its row
        return {c: [r.get(c) for r in rows] for c in (columns or names)}
    except InvalidInput:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, PermissionError) or isinstance(exc, IsADirectoryError):
            raise InvalidInput(f"{path}: cannot read it ({exc.strerror})") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInput(f"{path}: cannot read it as {fmt} ({reason[:200]})") from None
    except pa.ArrowException as exc:
        raise InvalidInput(f"{path}: cannot read it as {fmt} ({str(exc).splitlines()[0][:200]})") from None


def _check_columns(path: str, wanted: Optional[list[str]], names: list[str]) -> None:
    missing = [c for c in wanted or () if c not in names]
    if missing:
        raise InvalidInput(f"{path}: no column {missing[0]!r}; its columns are {', '.join(map(repr, names)) or 'none'} "
                           "(pick one with --column / --id-column)")


def _num_rows(table) -> int:
    return table.num_rows if hasattr(table, "num_rows") else len(next(iter(table.values()), []))


def _column(table, name: str, start: int, stop: int) -> list:
    if hasattr(table, "column"):
        return table.column(name).slice(start, stop - start).to_pylist()
    return table[name][start:stop]


def invalid_text(value) -> Optional[str]:
    """Why ``value`` cannot be embedded as a text, or None."""
    if isinstance(value, str):
        return None
    return "null" if value is None else f"a {type(value).__name__}, not a string"


def _first_invalid(table, column: str) -> Optional[int]:
    if hasattr(table, "column"):
        import pyarrow.compute as pc

        col = table.column(column)
        return None if col.null_count == 0 else pc.index(pc.is_null(col), True).as_py()
    return next((i for i, t in enumerate(table[column]) if not isinstance(t, str)), None)


def refuse_invalid(file: str, row_id, column: str, value) -> None:
    raise InvalidInput(f"row {row_id!r} of {file}: column {column!r} is {invalid_text(value)}; fix the input, or "
                       "pass --skip-invalid to write such rows to the rejects folder")


INT64 = (-(1 << 63), (1 << 63) - 1)


def _check_ids(file: str, table, id_column: str) -> None:
    """Every row has an id, and the ids are of one kind the output can hold (strings, or integers within
    int64): checked before the output folder is claimed, in one line naming the row."""
    if hasattr(table, "column"):  # Parquet and CSV: typed by Arrow already
        col = table.column(id_column)
        if col.null_count:
            import pyarrow.compute as pc

            row = pc.index(pc.is_null(col), True).as_py()
            raise InvalidInput(f"{file}: row {row} has no {id_column!r} (null); every row needs an id")
        return
    ids = table[id_column]
    kind = None
    for row, value in enumerate(ids):
        if value is None:
            raise InvalidInput(f"{file}: row {row} has no {id_column!r} (missing or null); every row needs an id")
        this = "string" if isinstance(value, str) else "integer" if type(value) is int else None
        if this is None:
            raise InvalidInput(f"{file}: row {row}'s {id_column!r} is a JSON {type(value).__name__}; ids must be "
                               "strings or integers")
        if this == "integer" and not INT64[0] <= value <= INT64[1]:
            raise InvalidInput(f"{file}: row {row}'s {id_column!r} is {value}, past what a 64-bit integer holds; "
                               "write such ids as strings")
        if kind is not None and this != kind:
            raise InvalidInput(f"{file}: row {row}'s {id_column!r} is a{'n' if this == 'integer' else ''} {this} "
                               f"where the rows before have {kind}s; ids must be all strings or all integers")
        kind = this


def plan_input(path: str | Path, column: str, id_column: Optional[str], shard_rows: int,
               skip_invalid: bool = False) -> InputPlan:
    """Find the files, check their columns (and, unless ``skip_invalid``, that every text is a
    string), count their rows and digest their bytes; cut the shards. All before any work."""
    if not isinstance(shard_rows, int) or shard_rows < 1:
        raise InvalidInput(f"shard_rows must be an integer >= 1, got {shard_rows!r}")
    root = Path(path).expanduser()
    files = _files(root)
    if id_column is not None and files[0][1] == "text":
        raise InvalidInput(f"{root}: a text file has one column ('text'); it has no id column {id_column!r}")
    wanted = [column] + ([id_column] if id_column and id_column != column else [])
    digest, shards, total, stamps = hashlib.sha256(), [], 0, []
    base = root if root.is_dir() else root.parent
    for file, fmt in files:
        table = read_table(file, fmt, wanted)
        if fmt == "parquet":
            pa = require("pyarrow", "dataset")
            kind = table.schema.field(column).type
            if pa.types.is_dictionary(kind):  # pandas categoricals: strings stored once, read as text
                kind = kind.value_type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                raise InvalidInput(f"{file}: column {column!r} holds {kind}, not strings; embed a text column")
        n = _num_rows(table)
        bad = None if skip_invalid else _first_invalid(table, column)
        if bad is not None:
            row_id = _column(table, id_column, bad, bad + 1)[0] if id_column else total + bad
            refuse_invalid(file, row_id, column, _column(table, column, bad, bad + 1)[0])
        if id_column:
            _check_ids(file, table, id_column)
        digest.update(f"{Path(file).relative_to(base)}\0".encode())
        try:
            with open(file, "rb") as f:
                before = os.fstat(f.fileno())
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InvalidInput(f"{file}: cannot read it ({exc.strerror})") from None
        stamps.append((file, before.st_size, before.st_mtime_ns))
        for start in range(0, n, shard_rows):
            stop = min(n, start + shard_rows)
            shards.append(Shard(len(shards), file, fmt, start, stop, total + start))
        total += n
    if total == 0:
        raise InvalidInput(f"{root}: no rows to embed")
    plan = InputPlan(str(root), files, total, digest.hexdigest(), shards, stamps)
    if plan.changed():
        raise InvalidInput(f"{plan.changed()}; the input must not change while it is read")
    return plan


class ShardReader:
    """Reads shards, keeping the last file's columns: consecutive shards of one file read it once."""

    def __init__(self, column: str, id_column: Optional[str]):
        self.column, self.id_column = column, id_column
        self._last: tuple[str, object] | None = None

    def read(self, shard: Shard) -> tuple[list, list]:
        """(texts, ids) of ``shard``: texts as stored (maybe None or not a string), ids as values."""
        if self._last is None or self._last[0] != shard.file:
            wanted = [self.column] + ([self.id_column] if self.id_column and self.id_column != self.column else [])
            self._last = (shard.file, read_table(shard.file, shard.format, wanted))
        table = self._last[1]
        if _num_rows(table) < shard.stop:
            raise InvalidInput(f"{shard.file} has {_num_rows(table)} rows now, fewer than when the job was "
                               "planned; the input changed under a running job")
        texts = _column(table, self.column, shard.start, shard.stop)
        if not self.id_column:
            return texts, list(range(shard.first_id, shard.first_id + shard.rows))
        ids = _column(table, self.id_column, shard.start, shard.stop)
        if None in ids:
            row = shard.first_id + ids.index(None)
            raise InvalidInput(f"{shard.file}: row {row} has no {self.id_column!r} (null); every row needs an id")
        return texts, ids
