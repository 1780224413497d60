"""Read and write libFM / libSVM sparse text files.

One row per line: ``label idx:value idx:value ...``. A well-formed file is parsed in
whole-array passes over its bytes (:mod:`fmadv.data.libfm_fast`, tens of MB per
second on one core); anything else goes through a reader that checks every token at
once with numpy and names the file and line of the first error.

A file that does not state its width (``n_features``) gets the largest index plus one,
within a budget: ``max_features``, by default ``$FMADV_MAX_FEATURES`` or
:data:`DEFAULT_MAX_FEATURES`. An FM holds ``n_factors + 1`` weights per feature, so one
stray index such as ``999999999999:1`` would otherwise ask for terabytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from fmadv.checks import env_integer, integer
from fmadv.data._io import read_bytes
from fmadv.data.dataset import Dataset
from fmadv.data.labels import binary_labels, label_signs
from fmadv.data.libfm_fast import INDEX_DIGITS, MAX_TOKEN, SPACE, read_fast
from fmadv.errors import DataError
from fmadv.io import atomic_write

#: Environment variable that sets the feature budget of files without a stated width,
#: so that command-line users can raise it.
MAX_FEATURES_ENV = "FMADV_MAX_FEATURES"

#: The default budget: 8,388,608 features, 570 MB of FM weights at n_factors 16 before
#: the optimizer's state. Ample for one-hot data (frappe has 5,382 features,
#: MovieLens-100K 2,625), yet a stray index of 10,000,000 is refused.
DEFAULT_MAX_FEATURES = 2**23

_WHAT = "a libFM text file with lines 'label idx:value ...'"

# Per-token error codes; the message of the first bad token (in file order) is raised.
_OK, _BAD_LABEL, _NO_LABEL, _NO_COLON, _BAD_INDEX, _NEG_INDEX = 0, 1, 2, 3, 4, 5
_BAD_VALUE, _NONFINITE, _REAL, _ZERO_INDEX, _TOO_BIG, _DUPLICATE = 6, 7, 8, 9, 10, 11
_OVER_BUDGET, _HUGE_INDEX = 12, 13


def _text(token: bytes) -> str:
    return token.decode("utf-8", "replace")


def max_features_budget(max_features: int | None = None) -> int:
    """The largest feature space a file may imply: ``max_features`` if given, else
    ``$FMADV_MAX_FEATURES``, else :data:`DEFAULT_MAX_FEATURES`.

    Raises
    ------
    ConfigError
        The value is not an integer >= 1.
    """
    if max_features is not None:
        return integer("max_features", max_features, 1)
    return env_integer(MAX_FEATURES_ENV, DEFAULT_MAX_FEATURES)


def read_libfm(
    path: str | Path,
    n_features: int | None = None,
    allow_real_valued: bool = False,
    zero_based: bool = True,
    max_features: int | None = None,
) -> Dataset:
    """Read a libFM / libSVM text file into a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        The file. Tokens are separated by any ASCII whitespace; LF and CRLF line
        endings both work. Blank lines are allowed only at the end of the file.
        ``#`` comments are not supported (a ``#`` token is a malformed token).
    n_features : int, optional
        Width of the feature space. An index at or beyond it is an error. Default:
        the largest index seen plus one, within ``max_features``.
    allow_real_valued : bool
        The FM here takes binary inputs, so a value other than 0 or 1 is an error
        unless this is True. Zero values are always dropped.
    zero_based : bool
        True when indices start at 0 (libFM, the NFM/AFM files); False for 1-based
        libSVM files, whose indices are shifted down by one.
    max_features : int, optional
        Without ``n_features``, an index that makes the feature space wider than this
        is an error (see :func:`max_features_budget` for the default; the environment
        variable ``FMADV_MAX_FEATURES`` raises it for the command line).

    Returns
    -------
    Dataset
        ``y`` in {-1, +1}, spelled as :mod:`fmadv.data.labels` accepts them: ``1``,
        ``+1``, ``1.0`` are +1 and ``-1``, ``0`` (any float spelling) are -1. ``name``
        is the file name without its last suffix.

    Raises
    ------
    DataError
        Missing or empty file, blank line before the end, bad label, malformed token
        (no colon, non-integer or negative index, non-numeric value), NaN/inf value,
        real-valued feature without ``allow_real_valued``, index out of range, an
        index beyond the budget or the 64-bit range, or an index repeated within a row.
        The message starts with ``path:line:``.
    ConfigError
        A budget that is not an integer >= 1.
    """
    path = Path(path)
    if n_features is not None and n_features < 0:
        raise DataError(f"n_features must be >= 0, got {n_features}")
    budget = max_features_budget(max_features) if n_features is None else None
    data = read_bytes(path, _WHAT)

    fast = read_fast(data, n_features, allow_real_valued, zero_based, budget)
    X, y = (
        fast
        if fast is not None
        else _read_checked(data, path, n_features, allow_real_valued, zero_based, budget)
    )
    name = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    return Dataset(X=X, y=y, name=name)


def _read_checked(data: bytes, path: Path, n_features, allow_real_valued, zero_based, budget):
    """The reader that checks every token and names the first bad one (file, line)."""
    b = np.frombuffer(data, dtype=np.uint8)
    space = SPACE[b]
    prev_space = np.empty_like(space)
    if space.size:
        prev_space[0] = True
        prev_space[1:] = space[:-1]
    starts = np.flatnonzero(~space & prev_space)
    if starts.size == 0:
        raise DataError(f"empty file (expected {_WHAT})", path)
    if data[:2] == b"\x1f\x8b":
        raise DataError("gzip-compressed file; decompress it first", path)
    # 1-based line of each token: newlines before its first byte, plus one.
    tok_line = np.searchsorted(np.flatnonzero(b == 10), starts) + 1
    # numpy stores tokens at the longest token's width: one huge token (a binary or CSV
    # file passed by mistake) would cost rows x width bytes, so reject it up front.
    next_space = np.empty_like(space)
    next_space[-1] = True
    next_space[:-1] = space[1:]
    lengths = np.flatnonzero(~space & next_space) - starts + 1
    too_long = np.flatnonzero(lengths > MAX_TOKEN)
    if too_long.size:
        i = int(too_long[0])
        t = _text(data[starts[i] : starts[i] + 40])
        raise DataError(
            f"malformed token starting {t!r} ({lengths[i]} characters; expected 'idx:value')",
            path,
            int(tok_line[i]),
        )
    tokens = np.array(data.split())
    first = np.empty(tokens.size, dtype=bool)
    first[0] = True
    first[1:] = tok_line[1:] != tok_line[:-1]
    row_of = np.cumsum(first) - 1
    row_lines = tok_line[first]
    n_rows = row_lines.size

    # A gap in the line numbers of the rows is a blank line (trailing ones never show up).
    gap = np.flatnonzero(row_lines != np.arange(1, n_rows + 1))
    blank_line = int(gap[0]) + 1 if gap.size else None

    err = np.zeros(tokens.size, dtype=np.int8)
    labels = tokens[first]
    y = label_signs(labels)
    bad_label = np.isnan(y)
    if bad_label.any():
        has_colon = np.strings.find(labels, b":") >= 0
        codes = np.where(has_colon[bad_label], _NO_LABEL, _BAD_LABEL)
        err[np.flatnonzero(first)[bad_label]] = codes

    feat_pos = np.flatnonzero(~first)
    head, sep, tail = np.strings.partition(tokens[feat_pos], b":")
    no_colon = sep == b""
    all_digits = np.strings.isdigit(head)
    huge = ~no_colon & all_digits & (np.strings.str_len(head) > INDEX_DIGITS)
    negative = np.strings.startswith(head, b"-")
    idx = np.zeros(feat_pos.size, dtype=np.int64)
    idx_ok = ~no_colon & all_digits & ~huge
    idx[idx_ok] = head[idx_ok].astype(np.int64)

    values = np.ones(feat_pos.size, dtype=np.float64)
    val_ok = ~no_colon & (tail != b"1")
    if val_ok.any():
        values[val_ok], parsed = _parse_floats(tail[val_ok])
        bad_value = np.zeros(feat_pos.size, dtype=bool)
        bad_value[np.flatnonzero(val_ok)[~parsed]] = True
    else:
        bad_value = np.zeros(feat_pos.size, dtype=bool)
    nonfinite = ~bad_value & ~np.isfinite(values)
    real = ~bad_value & ~nonfinite & (values != 0) & (values != 1)

    if not zero_based:
        idx = idx - 1
    zero_index = idx_ok & (idx < 0)
    good = idx_ok & ~zero_index
    too_big = good & (idx >= n_features) if n_features is not None else np.zeros_like(good)
    over_budget = good & (idx >= budget) if budget is not None else np.zeros_like(good)

    # Duplicate index within a row: sort by (row, index) and compare neighbours; the
    # later token of a pair (in file order) is the one reported.
    feat_row = row_of[feat_pos]
    order = np.lexsort((idx, feat_row))
    same = (feat_row[order][1:] == feat_row[order][:-1]) & (idx[order][1:] == idx[order][:-1])
    same &= good[order][1:] & good[order][:-1]
    duplicate = np.zeros(feat_pos.size, dtype=bool)
    duplicate[np.maximum(order[1:], order[:-1])[same]] = True

    # Later assignments win, so list the codes from least to most fundamental.
    codes = np.zeros(feat_pos.size, dtype=np.int8)
    codes[duplicate] = _DUPLICATE
    codes[too_big] = _TOO_BIG
    codes[over_budget] = _OVER_BUDGET
    codes[zero_index] = _ZERO_INDEX
    if not allow_real_valued:
        codes[real] = _REAL
    codes[nonfinite] = _NONFINITE
    codes[bad_value] = _BAD_VALUE
    codes[~no_colon & ~all_digits] = _BAD_INDEX
    codes[huge] = _HUGE_INDEX
    codes[~no_colon & negative] = _NEG_INDEX
    codes[no_colon] = _NO_COLON
    err[feat_pos] = codes

    bad_tokens = np.flatnonzero(err)
    if bad_tokens.size or blank_line is not None:
        tok_err = int(bad_tokens[0]) if bad_tokens.size else None
        err_line = int(tok_line[tok_err]) if tok_err is not None else None
        if blank_line is not None and (err_line is None or blank_line < err_line):
            raise DataError(
                "blank line (blank lines are allowed only at the end of the file)",
                path,
                blank_line,
            )
        assert tok_err is not None and err_line is not None
        raise DataError(
            _message(int(err[tok_err]), tokens[tok_err], n_features, budget, zero_based),
            path,
            err_line,
        )

    keep = values != 0
    if n_features is None:
        n_features = int(idx[keep].max()) + 1 if keep.any() else 0
    order = order[keep[order]]
    indices = idx[order]
    counts = np.bincount(feat_row[order], minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    X = sp.csr_matrix(
        (values[order].astype(np.float32), indices, indptr), shape=(n_rows, n_features)
    )
    X.has_sorted_indices = True
    return X, y


def _parse_floats(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse byte tokens as floats; returns values and a parsed-ok mask."""
    try:
        return tokens.astype(np.float64), np.ones(tokens.size, dtype=bool)
    except ValueError:
        pass
    # Slow path only for files that are already known to be broken.
    out = np.zeros(tokens.size, dtype=np.float64)
    ok = np.ones(tokens.size, dtype=bool)
    for i, t in enumerate(tokens.tolist()):
        try:
            out[i] = float(t)
        except ValueError:
            ok[i] = False
    return out, ok


def _message(
    code: int, token: bytes, n_features: int | None, budget: int | None, zero_based: bool
) -> str:
    t = _text(token)
    head, _, tail = t.partition(":")
    if code == _BAD_LABEL:
        return f"bad label {t!r} (expected +1/-1 or 1/0)"
    if code == _NO_LABEL:
        return f"line starts with {t!r} instead of a label (expected 'label idx:value ...')"
    if code == _NO_COLON:
        return f"malformed token {t!r} (expected 'idx:value')"
    if code == _BAD_INDEX:
        return f"malformed token {t!r}: index {head!r} is not a non-negative integer"
    if code == _NEG_INDEX:
        return f"malformed token {t!r}: negative feature index {head}"
    if code == _BAD_VALUE:
        return f"malformed token {t!r}: value {tail!r} is not a number"
    if code == _NONFINITE:
        return f"token {t!r}: feature value must be finite"
    if code == _REAL:
        return (
            f"real-valued feature {t!r} (expected value 1; the FM takes binary inputs): "
            "pass allow_real_valued=True (CLI: --allow-real-valued) to accept it"
        )
    if code == _ZERO_INDEX:
        return f"token {t!r}: index 0 in a 1-based file (pass zero_based=True for 0-based indices)"
    if code == _TOO_BIG:
        lo = 0 if zero_based else 1
        return (
            f"token {t!r}: feature index {head} is out of range for {n_features} features "
            f"(expected {lo}..{(n_features or 0) - 1 + lo})"
        )
    if code == _OVER_BUDGET:
        width = int(head) + (1 if zero_based else 0)
        return (
            f"token {t!r}: feature index {head} makes the feature space {width:,} features "
            f"wide, beyond the budget of {budget:,} (an FM holds n_factors + 1 weights per "
            "feature); if the data really is that wide, raise the budget: max_features= "
            f"in Python, or for the CLI the environment variable {MAX_FEATURES_ENV}, "
            f"e.g. {MAX_FEATURES_ENV}={width}"
        )
    if code == _HUGE_INDEX:
        return (
            f"token {t!r}: feature index {head} is too large "
            f"(indices have at most {INDEX_DIGITS} digits)"
        )
    if code == _DUPLICATE:
        return f"token {t!r}: feature index {head} appears twice in this row"
    raise AssertionError(f"unknown error code {code}")


def write_libfm(
    path: str | Path,
    data: Dataset | sp.spmatrix | sp.sparray,
    y: np.ndarray | None = None,
    *,
    zero_based: bool = True,
) -> Path:
    """Write rows as a libFM text file, atomically.

    Parameters
    ----------
    path : str or Path
        Target file; it is replaced only once the whole file is written.
    data : Dataset or scipy sparse matrix
        Rows to write. A Dataset brings its own labels.
    y : numpy.ndarray, optional
        Labels (-1/+1 or 0/1), required when ``data`` is a matrix. Passing both a
        Dataset and ``y`` is an error, so the wrong labels are never written.
    zero_based : bool
        Write 0-based indices (libFM); False writes 1-based ones (libSVM).

    Returns
    -------
    Path
        The path written. Lines end in LF; labels are ``1`` / ``-1``; values equal
        to 1 are written as ``1``, others with 9 significant digits (exact for
        float32); explicitly stored zeros are left out.
    """
    if isinstance(data, Dataset):
        if y is not None:
            raise DataError("pass labels either inside the Dataset or as y, not both")
        X, labels = data.X, data.y
    else:
        if not sp.issparse(data):
            raise DataError(
                f"expected a Dataset or a scipy sparse matrix, got {type(data).__name__}"
            )
        if y is None:
            raise DataError("y is required when writing a bare matrix")
        X = sp.csr_matrix(data)
        labels = np.ravel(y)
    if labels.shape[0] != X.shape[0]:
        raise DataError(f"{labels.shape[0]} labels for {X.shape[0]} rows")
    labels = binary_labels(labels)
    X = sp.csr_matrix(X)
    X.sort_indices()
    if not np.all(np.isfinite(X.data)):
        raise DataError("X holds NaN or inf values, which libFM files cannot carry")
    shift = 0 if zero_based else 1

    def write(temp: str) -> None:
        with open(temp, "w", encoding="ascii", newline="\n") as f:
            for r in range(X.shape[0]):
                lo, hi = X.indptr[r], X.indptr[r + 1]
                parts = ["1" if labels[r] > 0 else "-1"]
                for j, v in zip(X.indices[lo:hi].tolist(), X.data[lo:hi].tolist(), strict=True):
                    if v == 0:
                        continue
                    parts.append(f"{j + shift}:1" if v == 1 else f"{j + shift}:{v:.9g}")
                f.write(" ".join(parts))
                f.write("\n")

    path = Path(path)
    atomic_write(path, write)
    return path
