"""Labelled time series from files: the UCR/UEA archives' ``.ts`` format and a CSV with one row
per time step. Both give ``(series, labels)``: a list of (T_i, D) float64 arrays (NaN where a
value is missing) and a list of label strings (None when the file has no labels).

``.ts`` (as the time-series classification archives write it)::

    # comments
    @problemName GunPoint
    @timeStamps false
    @missing false
    @univariate true              (or false with @dimensions D)
    @equalLength true             (with @seriesLength T) or false
    @classLabel true 1 2          (the labels) or false
    @data
    -0.64,-0.63,...:1             dimensions separated by ':', values by ',', '?' missing, label last

CSV: a header line naming the columns; ``id`` (which series a row belongs to) and, optionally,
``label``; every other column is a feature. The rows of one id are its time steps in file order.

Every problem raises ``DataError`` with one line: the file, the line number and what is wrong.
Dimensions: T_i steps of series i, D features (dimensions).
"""

import csv
import io
from pathlib import Path

import numpy as np

from .data import DataError, load_text

_BOOL_TAGS = ("timestamps", "missing", "univariate", "equallength")
_INT_TAGS = ("dimensions", "serieslength")


def read_series(path):
    """``read_ts`` for a .ts file, ``read_csv`` for a .csv file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ts":
        return read_ts(path)
    if suffix == ".csv":
        return read_csv(path)
    raise DataError(f"{path}: unknown series format {suffix or '(no extension)'!r} (expected .ts or .csv)")


# ------------------------------------------------------------------------------------ .ts
class _Header:
    def __init__(self):
        self.tags = {}  # lower-case tag -> value (bool, int, str or list of labels)
        self.labels = None  # the declared class labels, or None (@classLabel false)

    def dims(self):
        if self.tags.get("univariate") is True:
            return 1
        return self.tags.get("dimensions")


def _parse_tag(line, header, where):
    parts = line.split()
    tag, args = parts[0][1:].lower(), parts[1:]
    if tag == "problemname":
        header.tags[tag] = " ".join(args)
    elif tag in _BOOL_TAGS:
        if len(args) != 1 or args[0].lower() not in ("true", "false"):
            raise DataError(f"{where}: {parts[0]} must be true or false, got {' '.join(args)!r}")
        header.tags[tag] = args[0].lower() == "true"
    elif tag in _INT_TAGS:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise DataError(f"{where}: {parts[0]} must be a positive integer, got {' '.join(args)!r}")
        header.tags[tag] = int(args[0])
    elif tag == "classlabel":
        if not args or args[0].lower() not in ("true", "false"):
            raise DataError(f"{where}: @classLabel must be followed by true and the labels, or false")
        if args[0].lower() == "true":
            if len(args) < 2:
                raise DataError(f"{where}: @classLabel true names no labels")
            header.labels = args[1:]
        header.tags[tag] = args[0].lower() == "true"
    elif tag == "targetlabel":
        if args and args[0].lower() == "true":
            raise DataError(f"{where}: a regression file (@targetLabel true); bptt reads class labels")
    else:
        raise DataError(f"{where}: unknown header {parts[0]!r}")
    if header.tags.get("timestamps"):
        raise DataError(f"{where}: time stamps (@timeStamps true) are not supported")


def _parse_values(text, where, dim):
    """'1.5,?,2' -> float64 array with NaN for '?'."""
    fields = text.split(",")
    if fields == [""]:
        raise DataError(f"{where}: dimension {dim} is empty")
    try:
        return np.array([np.nan if f.strip() == "?" else float(f) for f in fields], np.float64)
    except ValueError:
        for k, f in enumerate(fields):
            try:
                float(f) if f.strip() != "?" else None
            except ValueError:
                raise DataError(f"{where}: value {f.strip()!r} in dimension {dim} at position {k + 1} "
                                f"is not a number") from None
        raise


def _parse_row(line, header, where):
    """One data line -> ((T, D) array, label or None)."""
    fields = line.split(":")
    label = None
    if header.labels is not None:
        if len(fields) < 2:
            raise DataError(f"{where}: no class label (expected values, then ':' and the label)")
        label = fields.pop().strip()
        if label not in header.labels:
            raise DataError(f"{where}: label {label!r} is not one of the @classLabel labels "
                            f"({' '.join(header.labels)})")
    D = header.dims()
    if D is not None and len(fields) != D:
        what = "@univariate true" if header.tags.get("univariate") else f"@dimensions {D}"
        raise DataError(f"{where}: {len(fields)} dimensions, expected {D} ({what})")
    dims = [_parse_values(f, where, d + 1) for d, f in enumerate(fields)]
    for d, v in enumerate(dims[1:], start=2):
        if len(v) != len(dims[0]):
            raise DataError(f"{where}: dimension {d} has {len(v)} values, dimension 1 has {len(dims[0])}")
    return np.stack(dims, axis=1), label


def read_ts(path):
    """A .ts file of the UCR/UEA archives -> (list of (T_i, D) float64 arrays, labels)."""
    text = load_text(path)  # the checks every data file gets (missing, binary, not UTF-8, empty)
    header, series, labels, in_data = _Header(), [], [], False
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{path}, line {n}"
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{where}: data before @data (or a header line without '@')")
            if line.lower() == "@data":
                in_data = True
                continue
            _parse_tag(line, header, where)
            continue
        if line.startswith("@"):
            raise DataError(f"{where}: header line {line.split()[0]!r} after @data")
        x, label = _parse_row(line, header, where)
        if header.dims() is None:
            header.tags["dimensions"] = x.shape[1]  # the first series fixes it
        _check_length(x, series, header, where)
        series.append(x)
        labels.append(label)
    if not in_data:
        raise DataError(f"{path}: no @data line (not a .ts file?)")
    if not series:
        raise DataError(f"{path}: no series after @data")
    return series, (labels if header.labels is not None else None)


def _check_length(x, series, header, where):
    if not header.tags.get("equallength"):
        return
    want = header.tags.get("serieslength") or (len(series[0]) if series else len(x))
    if len(x) != want:
        source = "@seriesLength" if "serieslength" in header.tags else "the first series, @equalLength true"
        raise DataError(f"{where}: the series has {len(x)} values, expected {want} ({source})")


# ------------------------------------------------------------------------------------ CSV
def read_csv(path):
    """A CSV with a header, one row per time step, columns ``id``, optionally ``label``, and the
    features -> (list of (T_i, D) float64 arrays in order of first appearance, labels)."""
    text = load_text(path)  # the checks every data file gets (missing, binary, not UTF-8, empty)
    rows = csv.reader(io.StringIO(text))
    try:
        head = next(rows)
    except StopIteration:
        raise DataError(f"{path} is empty") from None
    except csv.Error as err:
        raise DataError(f"{path}, line 1: {err}") from None
    names = [h.strip() for h in head]
    if "id" not in names:
        raise DataError(f"{path}, line 1: no 'id' column (the header names {', '.join(names)})")
    i_id = names.index("id")
    i_label = names.index("label") if "label" in names else None
    feats = [k for k, h in enumerate(names) if h not in ("id", "label")]
    if not feats:
        raise DataError(f"{path}, line 1: no feature columns besides id and label")
    steps, label_of = {}, {}  # id -> list of rows; id -> (label, line)
    try:
        for row in rows:
            n = rows.line_num
            if not row or all(not f.strip() for f in row):
                continue
            where = f"{path}, line {n}"
            if len(row) != len(names):
                raise DataError(f"{where}: {len(row)} fields, the header has {len(names)}")
            sid = row[i_id].strip()
            if not sid:
                raise DataError(f"{where}: empty id")
            steps.setdefault(sid, []).append([_csv_value(row[k], names[k], where) for k in feats])
            if i_label is not None:
                _check_label(row[i_label].strip(), sid, label_of, where)
    except csv.Error as err:
        raise DataError(f"{path}, line {rows.line_num}: {err}") from None
    if not steps:
        raise DataError(f"{path}: no data rows after the header")
    series = [np.array(v, np.float64) for v in steps.values()]
    labels = [label_of[s][0] for s in steps] if i_label is not None else None
    return series, labels


def _csv_value(field, column, where):
    f = field.strip()
    if f in ("", "?", "NA", "nan", "NaN"):
        return np.nan
    try:
        return float(f)
    except ValueError:
        raise DataError(f"{where}: value {f!r} in column {column!r} is not a number") from None


def _check_label(label, sid, label_of, where):
    if not label:
        raise DataError(f"{where}: empty label for id {sid!r}")
    if sid not in label_of:
        label_of[sid] = (label, where)
    elif label_of[sid][0] != label:
        first, at = label_of[sid]
        raise DataError(f"{where}: id {sid!r} has label {label!r} here and {first!r} at {at.split(', ')[-1]}")
