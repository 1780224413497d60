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


class _Rows:
    """What every batch of rows says about its size."""

    shape: tuple[int, int]

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_features(self) -> int:
        return self.shape[1]


class SparseBatch(_Rows):
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
    def csr(self) -> sp.csr_matrix:
        """The rows as the canonical scipy CSR matrix they were built from."""
        return self._csr

    @property
    def columns(self) -> torch.Tensor:
        """Feature index of every stored entry, row by row."""
        return self.rows.col_indices()

    @functools.cached_property
    def _compact(self) -> tuple[torch.Tensor, SparseBatch]:
        """(:attr:`touched`, :attr:`local`), from one pass over the entries."""
        csr = self._csr
        touched, columns = np.unique(csr.indices, return_inverse=True)
        local = sp.csr_matrix((csr.data, columns.ravel(), csr.indptr), (csr.shape[0], len(touched)))
        index = torch.from_numpy(touched.astype(np.int64)).to(self.device)
        return index, SparseBatch(local, self.device, self.dtype)

    @property
    def touched(self) -> torch.Tensor:
        """Sorted feature indices that some row of the batch holds."""
        return self._compact[0]

    @property
    def local(self) -> SparseBatch:
        """The rows over :attr:`touched` only (column j is feature ``touched[j]``): the
        products of a step that updates only the rows the batch uses."""
        return self._compact[1]

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


class PairBatch(_Rows):
    """Rows x = x_u + x_i of (user, item) pairs, kept as their two sides.

    A ranking batch scores each user against several items: its rows repeat the same
    user features many times. Here they are stored once per user and once per distinct
    item, and row r is ``users[user_of_row[r]] + items[item_of_row[r]]``. The two sides
    hold disjoint features (the user's fields and the item's), so the FM's score splits
    into a user part, an item part and their interaction; nothing of size rows x n is
    ever built.

    The user side is also what an attacker of a ranking controls: the attacks move the
    features in ``user_columns`` (the user's fields, whether or not this user has them),
    one perturbation per user shared by all of its rows.

    Parameters
    ----------
    users, items
        The sides' rows as sparse matrices over the full feature space.
    user_of_row, item_of_row
        For every scored row, the index of its user row and of its item row.
    user_columns
        Sorted feature indices the user side may hold; every user row's entries lie in it.
    device, dtype
        Where the tensors live, and their floating point type.
    """

    def __init__(
        self,
        users: sp.spmatrix,
        items: sp.spmatrix,
        user_of_row: np.ndarray,
        item_of_row: np.ndarray,
        user_columns: np.ndarray,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.users = SparseBatch(users, device, dtype)
        self.items = SparseBatch(items, device, dtype)
        self.device, self.dtype = self.users.device, dtype
        self.user_of_row = torch.as_tensor(np.asarray(user_of_row, dtype=np.int64)).to(device)
        self.item_of_row = torch.as_tensor(np.asarray(item_of_row, dtype=np.int64)).to(device)
        self.user_columns = torch.as_tensor(np.asarray(user_columns, dtype=np.int64)).to(device)
        self.is_binary = self.users.is_binary and self.items.is_binary
        self.shape = (len(self.user_of_row), self.users.n_features)
        if not np.isin(self.users.csr.indices, np.asarray(user_columns)).all():
            raise ValueError("a user row holds a feature outside user_columns")

    @property
    def n_users(self) -> int:
        return self.users.n_rows

    @functools.cached_property
    def user_block(self) -> sp.csr_matrix:
        """The user rows restricted to ``user_columns`` (n_users x len(user_columns)):
        what an attack on dense inputs perturbs."""
        return self.users.csr[:, self.user_columns.cpu().numpy()]

    def to_rows(self) -> SparseBatch:
        """The rows x_u + x_i as one :class:`SparseBatch`: for an attack that moves each
        row on its own (APR), and for references."""
        user_of_row = self.user_of_row.cpu().numpy()
        item_of_row = self.item_of_row.cpu().numpy()
        rows = self.users.csr[user_of_row] + self.items.csr[item_of_row]
        return SparseBatch(rows, self.device, self.dtype)

    def with_users(self, users: sp.spmatrix) -> PairBatch:
        """The same pairs with other user rows (one per user row here: edited profiles)."""
        return PairBatch(
            users, self.items.csr, self.user_of_row.cpu().numpy(),
            self.item_of_row.cpu().numpy(), self.user_columns.cpu().numpy(), self.device,
            self.dtype,
        )  # fmt: skip

    def shard(self, rank: int, world: int) -> tuple[PairBatch, torch.Tensor]:
        """Users rank, rank + world, ... with all of their rows, and those rows' indices
        (a group loss needs each user's rows together)."""
        keep_users = np.arange(rank, self.n_users, world)
        user_of_row = self.user_of_row.cpu().numpy()
        renumber = np.full(self.n_users, -1, dtype=np.int64)
        renumber[keep_users] = np.arange(len(keep_users))
        kept_rows = np.flatnonzero(renumber[user_of_row] >= 0)
        local = PairBatch(
            self.users.csr[keep_users], self.items.csr, renumber[user_of_row[kept_rows]],
            self.item_of_row.cpu().numpy()[kept_rows], self.user_columns.cpu().numpy(),
            self.device, self.dtype,
        )  # fmt: skip
        return local, torch.from_numpy(kept_rows).to(self.device)


class _GatherRows(torch.autograd.Function):
    """``table[index]`` whose gradient for ``table`` is a sparse COO tensor: only the
    gathered rows, as an embedding with ``sparse=True`` gives."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor):
        ctx.index, ctx.shape = index, table.shape
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows = torch.sparse_coo_tensor(ctx.index[None], grad, ctx.shape, check_invariants=False)
        return rows._coalesced_(True), None


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (sorted, distinct) of ``table``, with a sparse gradient."""
    return _GatherRows.apply(table, index)
