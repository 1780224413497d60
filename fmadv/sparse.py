"""Sparse mini-batches in the two layouts the factorization machine multiplies with.

A batch of rows X (batch x n) is kept as a CSR tensor for the forward product X @ P and
as the CSR tensor of its transpose for the backward product X^T @ G. Building the
transpose once in scipy (an O(nnz) pass) is much cheaper than letting autograd
transpose a sparse tensor at every backward.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.sparse as sp
import torch


def csr_tensor(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """A torch CSR tensor from its parts, on the device of ``values``."""
    with warnings.catch_warnings():
        # The CSR layout is "beta" in torch; the products used here are long stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow.to(values.device), col.to(values.device), values, size, check_invariants=False
        )


def _csr_tensor(matrix: sp.csr_matrix, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return csr_tensor(
        torch.from_numpy(matrix.indptr.astype(np.int64, copy=False)),
        torch.from_numpy(matrix.indices.astype(np.int64, copy=False)),
        torch.from_numpy(matrix.data.astype(np.float32, copy=False)).to(device, dtype),
        matrix.shape,
    )


class SparseBatch:
    """Rows of a sparse feature matrix, ready for the FM's sparse products.

    Parameters
    ----------
    matrix
        The rows, any scipy sparse format; converted to canonical CSR.
    device
        Where the tensors live.
    dtype
        Floating point type of the values.
    """

    def __init__(
        self,
        matrix: sp.spmatrix,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        self._csr = csr
        self.shape: tuple[int, int] = csr.shape
        self.is_binary = bool(np.all(csr.data == 1))
        self.device = torch.device(device)
        self.dtype = dtype

    # The tensors are built on first use: a batch that is only sliced (one process's
    # shard of a global batch) never pays for the transposes.
    @functools.cached_property
    def rows(self) -> torch.Tensor:
        return _csr_tensor(self._csr, self.device, self.dtype)

    @functools.cached_property
    def _transpose(self) -> sp.csr_matrix:
        """The transpose's pattern, its entries holding their positions in the rows."""
        csr = self._csr
        positions = np.arange(csr.nnz, dtype=np.int64)
        return sp.csr_matrix((positions, csr.indices, csr.indptr), csr.shape).T.tocsr()

    @functools.cached_property
    def transpose_order(self) -> torch.Tensor:
        """Entry e of the transpose holds entry transpose_order[e] of the rows: a CSR with
        the rows' pattern and new values is transposed without another sort."""
        return torch.from_numpy(self._transpose.data).to(self.device)

    @functools.cached_property
    def rows_t(self) -> torch.Tensor:
        return self._transposed(self._csr.data)

    @functools.cached_property
    def squared(self) -> torch.Tensor:
        return self.rows if self.is_binary else self._with_data(self._csr.data**2)

    @functools.cached_property
    def squared_t(self) -> torch.Tensor:
        return self.rows_t if self.is_binary else self._transposed(self._csr.data**2)

    @functools.cached_property
    def row_of_entry(self) -> torch.Tensor:
        """Row index of every stored entry."""
        lengths = torch.from_numpy(np.diff(self._csr.indptr)).to(self.device)
        return torch.repeat_interleave(torch.arange(self.n_rows, device=self.device), lengths)

    def _with_data(self, data: np.ndarray) -> torch.Tensor:
        csr = self._csr
        return _csr_tensor(
            sp.csr_matrix((data, csr.indices, csr.indptr), csr.shape), self.device, self.dtype
        )

    def _transposed(self, data: np.ndarray) -> torch.Tensor:
        t = self._transpose
        matrix = sp.csr_matrix((data[t.data], t.indices, t.indptr), t.shape)
        return _csr_tensor(matrix, self.device, self.dtype)

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_features(self) -> int:
        return self.shape[1]

    @property
    def csr(self) -> sp.csr_matrix:
        """The rows as the canonical scipy CSR matrix they were built from."""
        return self._csr

    @property
    def columns(self) -> torch.Tensor:
        """Feature index of every stored entry, row by row."""
        return self.rows.col_indices()

    def with_values(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CSR tensors (rows, transpose) with this batch's pattern and other entry values."""
        rows = csr_tensor(self.rows.crow_indices(), self.rows.col_indices(), values, self.shape)
        rows_t = csr_tensor(
            self.rows_t.crow_indices(),
            self.rows_t.col_indices(),
            values[self.transpose_order],
            self.shape[::-1],
        )
        return rows, rows_t

    def to_dense(self) -> torch.Tensor:
        """The rows as a dense (batch x n) tensor: for references and tests, not the fast path."""
        return torch.from_numpy(self._csr.toarray()).to(self.device, self.dtype)


class _SparseProduct(torch.autograd.Function):
    """X @ P with the gradient X^T @ G, X given with its precomputed transpose."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, rows_t: torch.Tensor, dense: torch.Tensor):
        ctx.rows_t = rows_t
        return rows @ dense

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return None, None, ctx.rows_t @ grad_out


def sparse_product(rows: torch.Tensor, rows_t: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """Differentiable ``rows @ dense`` whose backward multiplies by ``rows_t``."""
    return _SparseProduct.apply(rows, rows_t, dense)
