"""The libFM reader's fast path: a well-formed file parsed in whole-array passes.

Passes over the bytes find the tokens, the colons and the line ends; passes over the
tokens read the indices digit by digit and the labels by their distinct spellings.
Every rule of the checking reader (:func:`fmadv.data.libfm.read_libfm`) is checked
on the way, and at the first thing this path does not take for granted (an error,
or a rare valid spelling such as a label longer than 8 bytes) it returns None: the
checking reader then reads the file and names the file and line of the first error.
Where this path answers, both give the same matrix and labels (tests/test_data_libfm.py).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fmadv.data.labels import label_signs

# Indices are parsed as int64; one of at most this many digits always fits.
INDEX_DIGITS = 18
# Longest token accepted; real ones ("12345:0.123456789") are far shorter.
MAX_TOKEN = 100
# ASCII whitespace, exactly the set bytes.split() splits on.
SPACE = np.zeros(256, dtype=bool)
SPACE[[9, 10, 11, 12, 13, 32]] = True

_COLON, _NEWLINE, _ZERO, _ONE = ord(":"), ord("\n"), ord("0"), ord("1")
# _HIGH_BYTES[n]: a word's n most significant bytes.
_HIGH_BYTES = np.array([(2**64 - 1) ^ (2 ** (64 - 8 * n) - 1) for n in range(9)], dtype=np.uint64)
# Bytes per piece of the file read at once (whole lines).
PIECE_BYTES = 1 << 23
# Label spellings up to this many bytes are keyed by one integer.
_LABEL_BYTES = 8
# Values other than "1" up to this many bytes go through numpy's float parser.
_VALUE_BYTES = 32


def read_fast(
    data: bytes, n_features: int | None, allow_real_valued: bool, zero_based: bool, budget
) -> tuple[sp.csr_matrix, np.ndarray] | None:
    """(X, y) of a well-formed file, or None where the checking reader must decide.

    The file is read in pieces of whole lines, about :data:`PIECE_BYTES` each, so that
    the passes' temporaries stay in the cache and the allocator reuses them.
    """
    pieces, begin = [], 0
    while begin < len(data):
        end = data.find(b"\n", begin + PIECE_BYTES) + 1 or len(data)
        piece = _read_piece(data, begin, end, allow_real_valued, zero_based)
        if piece is None:
            return None
        pieces.append(piece)
        begin = end
    if not pieces:
        return None
    # Trailing blank lines end the file, nowhere else.
    if any(trailing for *_, trailing in pieces[:-1]):
        return None
    index = np.concatenate([piece[0] for piece in pieces])
    if index.size and index.max() >= (n_features if n_features is not None else budget):
        return None
    values = np.concatenate([piece[1] for piece in pieces])
    per_row = np.concatenate([piece[2] for piece in pieces])
    y = np.concatenate([piece[3] for piece in pieces])
    if n_features is None:
        n_features = int(index.max()) + 1 if index.size else 0
    indptr = np.zeros(per_row.size + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    X = sp.csr_matrix((values, index, indptr), shape=(per_row.size, n_features))
    X.has_sorted_indices = True
    return X, y


def _read_piece(data: bytes, begin: int, end: int, allow_real_valued: bool, zero_based: bool):
    """(indices, values, features per row, labels, trailing blank lines?) of the lines
    in data[begin:end], rows sorted by index, zeros dropped; None to hand over."""
    text = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=begin)
    # Bytes up to 32 are whitespace here; control bytes other than 9..13 go to the
    # checking reader, which takes them for token bytes. Token bytes are checked by
    # the parts they make (digits, colon, number, label).
    if text.min() < 9 or ((text > 13) & (text < 32)).any():
        return None
    starts, ends = _tokens(text)
    if starts.size == 0 or (ends - starts).max() > MAX_TOKEN:
        return None
    lines = _first_tokens(text, starts)
    if lines is None:
        return None
    first, trailing = lines
    n_rows, n_tokens = first.size, starts.size
    # Each row's features are its tokens after the label.
    per_row = np.diff(np.append(first, n_tokens)) - 1
    is_feature = np.ones(n_tokens, dtype=bool)
    is_feature[first] = False
    feature_starts, feature_ends = starts[is_feature], ends[is_feature]

    colons = _feature_colons(text, feature_starts, feature_ends)
    if colons is None:
        return None
    index = _indices(text, feature_starts, colons)
    values = _values(text, colons + 1, feature_ends, allow_real_valued)
    y = _labels(text, starts[first], ends[first])
    if index is None or values is None or y is None:
        return None
    if not zero_based:
        index -= 1
    if index.size and index.min() < 0:
        return None
    order = _row_order(index, per_row)
    if order is None:
        return None
    index, values = index[order], values[order]
    keep = values != 0
    if not keep.all():
        per_row = np.bincount(np.repeat(np.arange(n_rows), per_row)[keep], minlength=n_rows)
        index, values = index[keep], values[keep]
    return index, values.astype(np.float32), per_row, y, trailing


def _tokens(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every run of non-whitespace bytes."""
    space = text <= 32
    edges = np.flatnonzero(space[1:] != space[:-1]) + 1
    if not space[0]:
        edges = np.concatenate([[0], edges])
    if not space[-1]:
        edges = np.concatenate([edges, [text.size]])
    return edges[0::2], edges[1::2]


def _first_tokens(text: np.ndarray, starts: np.ndarray):
    """(the index of each line's first token, whether blank lines follow the last
    one), or None for a blank line before it."""
    following = np.searchsorted(starts, np.flatnonzero(text == _NEWLINE))
    inside = following[following < starts.size]
    # Two line ends with no token between them, or one before the first token, make a
    # blank line; line ends after the last token beyond the first make trailing ones.
    if inside.size and (inside[0] == 0 or (np.diff(inside) == 0).any()):
        return None
    return np.concatenate([[0], inside]), following.size - inside.size > 1


def _feature_colons(text, feature_starts, feature_ends) -> np.ndarray | None:
    """Each feature token's colon, or None unless every feature token holds exactly
    one, with a non-empty index before it and a non-empty value after it, and no label
    holds one."""
    colons = np.flatnonzero(text == _COLON)
    # As many colons as features, the k-th inside the k-th feature: then each feature
    # holds exactly one and no label holds any.
    if colons.size != feature_starts.size:
        return None
    if ((colons <= feature_starts) | (colons >= feature_ends - 1)).any():
        return None
    return colons


def _indices(text: np.ndarray, feature_starts: np.ndarray, colons: np.ndarray):
    """The index of every feature token (None unless all its bytes are digits).

    Up to 8 digits are read as one little-endian word ending at the colon, and the
    eight digits are combined in three multiplications (pairs, quads, the whole).
    """
    digits = colons - feature_starts
    if not digits.size:
        return np.zeros(0, dtype=np.int64)
    if digits.max() > 8:
        return _long_indices(text, colons, digits)
    # Words of the 8 bytes before each colon (the file is prefixed with 8 spaces so
    # that every word lies inside it).
    padded = np.concatenate([np.full(8, 32, dtype=np.uint8), text])
    words = np.ndarray((text.size + 1,), dtype="<u8", buffer=padded.data, strides=(1,))
    word = words[colons] ^ np.uint64(0x3030303030303030)
    # Keep the digits' bytes (the high ones); the bytes before the token become 0.
    word &= _HIGH_BYTES[digits]
    # Every kept byte a digit: no byte above 9 (adding 0x76 sets no high bit).
    if ((word + np.uint64(0x7676767676767676)) | word).__and__(np.uint64(0x8080808080808080)).any():
        return None
    word = ((word & np.uint64(0x0F0F0F0F0F0F0F0F)) * np.uint64(2561)) >> np.uint64(8)
    word = ((word & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(6553601)) >> np.uint64(16)
    word = ((word & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(42949672960001)) >> np.uint64(32)
    return word.astype(np.int64)


def _long_indices(text: np.ndarray, colons: np.ndarray, digits: np.ndarray):
    """Indices of up to :data:`INDEX_DIGITS` digits, one digit place at a time."""
    if digits.max() > INDEX_DIGITS:
        return None
    index = np.zeros(colons.size, dtype=np.int64)
    weight = 1
    for place in range(int(digits.max())):
        has = digits > place
        digit = text[np.where(has, colons - 1 - place, 0)].astype(np.int64) - _ZERO
        if ((digit < 0) | (digit > 9))[has].any():
            return None
        index += digit * has * weight
        weight *= 10
    return index


def _values(text, value_starts, value_ends, allow_real_valued: bool):
    """Each feature's value: "1" by a byte test, others through numpy's float parser."""
    values = np.ones(value_starts.size, dtype=np.float64)
    lengths = value_ends - value_starts
    other = np.flatnonzero((lengths != 1) | (text[value_starts] != _ONE))
    if not other.size:
        return values
    width = int(lengths[other].max())
    if width > _VALUE_BYTES:
        return None
    spelled = np.zeros((other.size, width), dtype=np.uint8)
    for place in range(width):
        has = lengths[other] > place
        spelled[has, place] = text[value_starts[other][has] + place]
    try:
        parsed = spelled.view(f"S{width}").ravel().astype(np.float64)
    except ValueError:
        return None
    if not np.isfinite(parsed).all():
        return None
    if not allow_real_valued and ((parsed != 0) & (parsed != 1)).any():
        return None
    values[other] = parsed
    return values


def _labels(text: np.ndarray, label_starts: np.ndarray, label_ends: np.ndarray):
    """Each row's label in {-1, +1}, each distinct spelling converted once."""
    lengths = label_ends - label_starts
    if lengths.max() > _LABEL_BYTES:
        return None
    spelled = np.zeros((label_starts.size, _LABEL_BYTES), dtype=np.uint8)
    for place in range(int(lengths.max())):
        has = lengths > place
        spelled[has, place] = text[label_starts[has] + place]
    keys, row_key = np.unique(spelled.view(np.uint64).ravel(), return_inverse=True)
    signs = label_signs([key.tobytes().rstrip(b"\0") for key in keys])
    if np.isnan(signs).any():
        return None
    return signs[row_key]


def _row_order(index: np.ndarray, per_row: np.ndarray):
    """A no-op slice when every row's indices already increase, else the order that
    sorts them within rows; None when a row repeats an index."""
    row_begins = np.zeros(index.size + 1, dtype=bool)
    row_begins[np.cumsum(per_row)] = True
    if ((index[1:] > index[:-1]) | row_begins[1:-1]).all():
        return slice(None)
    rows = np.repeat(np.arange(per_row.size), per_row)
    order = np.lexsort((index, rows))
    if ((rows[order][1:] == rows[order][:-1]) & (index[order][1:] == index[order][:-1])).any():
        return None
    return order
