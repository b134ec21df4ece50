"""The .ts (UCR/UEA archives) and CSV readers: every header variant, unequal lengths, missing
values, each malformed case with its one-line message, and real archive files shipped by sktime."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bptt.data import DataError, read_csv, read_series, read_ts

UNI = """# a comment
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 3
@classLabel true a b
@data
1,2,3:a
4,5.5,-6e-1:b
"""


def _write(tmp_path, text, name="f.ts"):
    p = tmp_path / name
    p.write_text(text)
    return p


def sktime_data_dir():
    """sktime's shipped archive files, found without importing sktime."""
    spec = importlib.util.find_spec("sktime")
    assert spec is not None and spec.origin, "sktime (test extra) is not installed"
    return Path(spec.origin).parent / "datasets" / "data"


def test_univariate_equal_length(tmp_path):
    X, y = read_ts(_write(tmp_path, UNI))
    assert y == ["a", "b"]
    assert [x.shape for x in X] == [(3, 1), (3, 1)]
    np.testing.assert_array_equal(X[1][:, 0], [4, 5.5, -0.6])


def test_multivariate_unequal_missing_crlf_case(tmp_path):
    text = ("@ProblemName Multi\r\n@TIMESTAMPS false\r\n@missing true\r\n@univariate false\r\n"
            "@dimensions 2\r\n@equalLength false\r\n@classLabel true x y z\r\n@DATA\r\n"
            "1,2,3:4,?,6:x\r\n\r\n7:8:z\r\n# between\r\n1,2:3,4:y\r\n")
    X, y = read_ts(_write(tmp_path, text))
    assert y == ["x", "z", "y"]
    assert [x.shape for x in X] == [(3, 2), (1, 2), (2, 2)]
    np.testing.assert_array_equal(X[0][:, 0], [1, 2, 3])
    assert np.isnan(X[0][1, 1]) and X[0][2, 1] == 6


def test_without_labels_and_dimensions_from_the_data(tmp_path):
    text = "@problemName U\n@univariate false\n@equalLength true\n@classLabel false\n@data\n1,2:3,4\n5,6:7,8\n"
    X, y = read_ts(_write(tmp_path, text))
    assert y is None and [x.shape for x in X] == [(2, 2), (2, 2)]


BAD_TS = [
    ("@problemName T\n@color red\n@data\n1:a\n", "line 2: unknown header '@color'"),
    ("@univariate maybe\n@data\n1\n", "line 1: @univariate must be true or false, got 'maybe'"),
    ("@dimensions 0\n@data\n1\n", "line 1: @dimensions must be a positive integer, got '0'"),
    ("@timeStamps true\n@data\n(1,2)\n", "line 1: time stamps (@timeStamps true) are not supported"),
    ("@targetLabel true\n@data\n1,2:0.5\n", "line 1: a regression file (@targetLabel true)"),
    ("@classLabel\n@data\n1\n", "line 1: @classLabel must be followed by true and the labels, or false"),
    ("@classLabel true\n@data\n1\n", "line 1: @classLabel true names no labels"),
    ("1,2,3:a\n", "line 1: data before @data"),
    ("@problemName T\n@classLabel true a\n", "no @data line"),
    ("@classLabel true a\n@data\n", "no series after @data"),
    ("@classLabel true a b\n@data\n1,2:c\n", "line 3: label 'c' is not one of the @classLabel labels (a b)"),
    ("@classLabel true a b\n@data\n1,2\n", "line 3: no class label"),
    ("@univariate true\n@classLabel true a\n@data\n1,2:3,4:a\n", "line 4: 2 dimensions, expected 1 (@univariate true)"),
    ("@dimensions 3\n@classLabel true a\n@data\n1:2:a\n", "line 4: 2 dimensions, expected 3 (@dimensions 3)"),
    ("@classLabel true a\n@data\n1,2:3:a\n", "line 3: dimension 2 has 1 values, dimension 1 has 2"),
    ("@classLabel true a\n@data\n1,x2,3:a\n", "line 3: value 'x2' in dimension 1 at position 2 is not a number"),
    ("@classLabel true a\n@data\n:a\n", "line 3: dimension 1 is empty"),
    ("@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n",
     "line 6: the series has 2 values, expected 3 (@seriesLength)"),
    ("@equalLength true\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n",
     "line 5: the series has 2 values, expected 3 (the first series, @equalLength true)"),
    ("@classLabel true a\n@data\n1:a\n@missing false\n", "line 4: header line '@missing' after @data"),
]


@pytest.mark.parametrize("text,message", BAD_TS)
def test_malformed_ts(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_ts(p)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(p)) and message in msg, msg


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_ts(tmp_path / "nope.ts")
    (tmp_path / "b.ts").write_bytes(b"@data\n\x00\x01")
    with pytest.raises(DataError, match="binary"):
        read_ts(tmp_path / "b.ts")
    with pytest.raises(DataError, match=r"unknown series format '\.txt'"):
        read_series(tmp_path / "x.txt")


# ----------------------------------------------------------------------------- CSV
def test_csv(tmp_path):
    text = "id,t0,label,t1\ns1,1,a,2\ns2,5,b,6\ns1,3,a,?\ns2,7,b,\ns3,9,a,10\n"
    X, y = read_csv(_write(tmp_path, text, "f.csv"))
    assert y == ["a", "b", "a"]
    assert [x.shape for x in X] == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(X[0][:, 0], [1, 3])
    assert np.isnan(X[0][1, 1]) and np.isnan(X[1][1, 1])
    X2, y2 = read_series(_write(tmp_path, "id,x\n1,0.5\n1,1.5\n", "g.csv"))
    assert y2 is None and X2[0].shape == (2, 1)


BAD_CSV = [
    ("", "is empty"),
    ("t,label\n1,a\n", "line 1: no 'id' column (the header names t, label)"),
    ("id,label\n1,a\n", "line 1: no feature columns besides id and label"),
    ("id,x,label\n1,2\n", "line 2: 2 fields, the header has 3"),
    ("id,x,label\n1,2,a\n1,oops,a\n", "line 3: value 'oops' in column 'x' is not a number"),
    ("id,x,label\n1,2,a\n1,3,b\n", "line 3: id '1' has label 'b' here and 'a' at line 2"),
    ("id,x,label\n1,2,\n", "line 2: empty label for id '1'"),
    ("id,x,label\n,2,a\n", "line 2: empty id"),
    ("id,x,label\n", "no data rows after the header"),
]


@pytest.mark.parametrize("text,message", BAD_CSV)
def test_malformed_csv(tmp_path, text, message):
    p = _write(tmp_path, text, "f.csv")
    with pytest.raises(DataError) as err:
        read_csv(p)
    msg = str(err.value)
    assert "\n" not in msg and str(p) in msg and message in msg, msg


# ----------------------------------------------------------------------------- real archive files
@pytest.mark.parametrize("name,n,D,lens,classes", [
    ("BasicMotions_TRAIN", 40, 6, (100, 100), 4),
    ("JapaneseVowels_TEST", 370, 12, (7, 29), 9),
    ("PLAID_TRAIN", 537, 1, (100, 1344), 11),
    ("GunPoint_TEST", 150, 1, (150, 150), 2),
])
def test_shipped_archive_files(name, n, D, lens, classes):
    X, y = read_ts(sktime_data_dir() / name.split("_")[0] / f"{name}.ts")
    assert len(X) == len(y) == n
    assert {x.shape[1] for x in X} == {D}
    assert (min(len(x) for x in X), max(len(x) for x in X)) == lens
    assert len(set(y)) == classes
    assert all(np.isfinite(x).all() for x in X)
