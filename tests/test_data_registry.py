"""Dataset cards, the data directory, verify / fetch, and load_dataset dispatch.

No network: fetch tests serve archives they build in tmp_path through ``file://``
addresses or a fake downloader.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fmadv.data._io as data_io
import fmadv.data.format as format_registry
from fmadv.data import (
    Dataset,
    DatasetCard,
    DatasetFormat,
    Splits,
    dataset_listing,
    dataset_options,
    dataset_path,
    fetch,
    format_names,
    get_card,
    get_format,
    info,
    item_titles,
    list_cards,
    load_card,
    load_dataset,
    load_images,
    register_format,
    resolve_data_dir,
    select_options,
    verify,
    write_libfm,
)
from fmadv.data.cache import require_files
from fmadv.data.cards import cards_dir
from fmadv.data.format import IMAGES, ROWS, keyword_defaults
from fmadv.errors import ChecksumError, ConfigError, DataError, FmadvError

EXPECTED_CARDS = {"cifar10", "frappe", "mnist", "movielens-100k", "synthetic"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_ml_files() -> dict[str, bytes]:
    """A minimal ml-100k layout: 2 users, 2 items, 4 ratings."""
    flags = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    return {
        "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
        "u.item": f"1|A (1995)|||x|{flags}\n2|B (1995)|||x|{flags}\n".encode("latin-1"),
        "u.data": b"1\t1\t5\t10\n1\t2\t2\t20\n2\t1\t4\t30\n2\t2\t1\t40\n"
        + b"".join(f"{u}\t{i}\t3\t{50 + i}\n".encode() for u in (1, 2) for i in (1, 2)),
    }


def tiny_card(url: str | None = None, **extra) -> DatasetCard:
    files = {name: sha256(data) for name, data in tiny_ml_files().items()}
    return DatasetCard(
        name="tiny",
        description="tiny MovieLens layout",
        format="movielens-100k",
        directory="tiny-ml",
        url=url,
        archive_root="ml-100k" if url else None,
        files=extra.pop("files", files),
        **extra,
    )


def build_zip(path: Path, files: dict[str, bytes], root: str = "ml-100k") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/", b"")
        for name, data in files.items():
            zf.writestr(f"{root}/{name}", data)
        zf.writestr(f"{root}/allbut.pl", b"# extra file that is not installed\n")
    return path


def all_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# -- cards --------------------------------------------------------------------------------


def test_all_cards_parse() -> None:
    cards = list_cards()
    assert {c.name for c in cards} == EXPECTED_CARDS
    for card in cards:
        assert card.format in format_names()
        assert card.source == cards_dir() / f"{card.name}.toml"
        assert card.description and card.license
        if card.format != "synthetic":
            assert card.url or card.base_url
            assert card.citation and card.homepage
    ml = get_card("movielens-100k")
    assert ml.folder == "ml-100k" and len(ml.files) == 21
    assert ml.files["u.data"] == sha256_of_known("u.data")
    frappe = get_card("frappe")
    assert frappe.n_features == 5382 and sum(s for _, s in frappe.fields) == 5382
    assert frappe.files["frappe.train.libfm"].startswith("git-blob:")
    assert get_card("cifar10").archive_md5 == "c58f30108f718f92721af3b95e74349a"
    assert not list(cards_dir().glob("*.py")) and not (cards_dir() / "__init__.py").exists()


def sha256_of_known(name: str) -> str:
    # From the data README; a typo in the card would break every verify.
    return {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"}[name]


def test_get_card_unknown_lists_known_names() -> None:
    with pytest.raises(ConfigError) as info_:
        get_card("movielens-1b")
    msg = str(info_.value)
    assert "unknown dataset 'movielens-1b'" in msg
    assert all(name in msg for name in EXPECTED_CARDS)
    with pytest.raises(ConfigError):
        get_card("../datasets/frappe")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('name = "bad"\ndescription = "x"\nformat = "csv"\n', "unknown format 'csv'"),
        ('name = "other"\ndescription = "x"\nformat = "libfm"\n', "must equal the file name"),
        ('name = "bad"\nformat = "libfm"\n', "missing required key(s) ['description']"),
        ('name = "bad"\ndescription = "x"\nformat = "libfm"\nurl_typo = "u"\n', "unknown key"),
        ('name = "bad"\ndescription = "x"\nformat = "libfm"\n[files]\n"a" = "beef"\n', "64 hex"),
        ('name = "bad"\ndescription = "x"\nformat = "libfm"\n[files]\n"a" = "crc:00"\n', "crc"),
        (
            'name = "bad"\ndescription = "x"\nformat = "libfm"\nn_features = 3\n'
            'fields = [{ name = "u", size = 2 }]\n',
            "add up to 2",
        ),
        ('name = "bad"\ndescription = 5\nformat = "libfm"\n', "must be a string"),
        ("name = [", "cannot read dataset card"),
    ],
)
def test_load_card_errors(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info_:
        load_card(path)
    assert fragment in str(info_.value) and str(path) in str(info_.value)


# -- data directory -----------------------------------------------------------------------


def test_data_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMADV_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.setenv("FMADV_DATA_DIR", "")
    assert resolve_data_dir() == tmp_path / "xdg" / "fmadv"
    monkeypatch.delenv("FMADV_DATA_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "fmadv"
    assert dataset_path("movielens-100k", tmp_path) == tmp_path / "ml-100k"


# -- verify and load on the real copies ---------------------------------------------------


def test_verify_real_copies(data_dir_with) -> None:
    shared_data_dir = data_dir_with("movielens-100k")
    assert set(verify("movielens-100k", shared_data_dir).values()) == {"ok"}
    frappe = verify("frappe", shared_data_dir)
    if (shared_data_dir / "frappe").is_dir():
        assert frappe["frappe.validation.libfm"] == "ok"
        assert frappe["frappe.test.libfm"] == "ok"
    details = info("movielens-100k", shared_data_dir)
    assert details["status"] == "complete" and details["rows"] == {"u.data": 100000}
    assert details["n_features"] == 943 + 1682 and details["license"]


def test_load_dataset_movielens_real(data_dir_with) -> None:
    shared_data_dir = data_dir_with("movielens-100k")
    s = load_dataset("movielens-100k", shared_data_dir, split="u2", valid_size=0)
    assert (s.train.n_rows, s.valid, s.test.n_rows) == (80000, None, 20000)
    with pytest.raises(ConfigError, match="unknown option.*sides.*accepted: side_features"):
        load_dataset("movielens-100k", shared_data_dir, sides=["genre"])


def test_frappe_without_train_file(data_dir_with, tmp_path: Path) -> None:
    shared_data_dir = data_dir_with("frappe", "frappe.validation.libfm", "frappe.test.libfm")
    data_dir = shared_data_dir
    if (shared_data_dir / "frappe" / "frappe.train.libfm").is_file():
        data_dir = tmp_path  # a copy without the train file
        (tmp_path / "frappe").mkdir()
        for name in ("frappe.validation.libfm", "frappe.test.libfm"):
            shutil.copy(shared_data_dir / "frappe" / name, tmp_path / "frappe" / name)
    with pytest.raises(DataError) as info_:
        load_dataset("frappe", data_dir)
    msg = str(info_.value)
    assert "missing frappe.train.libfm" in msg
    assert "fmadv data fetch frappe" in msg and "train_from='validation'" in msg
    s = load_dataset("frappe", data_dir, train_from="validation", seed=1)
    assert (s.train.n_rows, s.valid.n_rows, s.test.n_rows) == (51950, 5772, 28860)
    assert s.train.n_features == s.test.n_features == 5382
    fmap = s.train.feature_map
    assert fmap.field_slice("item") == slice(957, 5039)
    assert fmap.feature_name(5381) == "city=232"
    assert s.test.user_ids.max() < 957 and s.test.item_ids.max() < 4082
    np.testing.assert_array_equal(s.test.X[:, :957].tocsr().indices, s.test.user_ids)
    with pytest.raises(ConfigError, match="valid_size applies only"):
        load_dataset("frappe", data_dir, valid_size=0.2)


def test_load_dataset_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds images"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(ConfigError, match="not an image dataset"):
        load_images("synthetic", tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset("synthetic", n_user=3)
    s = load_dataset("synthetic", n_users=50, n_items=40, n_rows=1000, seed=3)
    assert s.train.name == "synthetic" and s.train.n_features == 50 + 40 + 10
    with pytest.raises(DataError) as info_:
        load_dataset("movielens-100k", tmp_path)
    msg = str(info_.value)
    assert "missing u.user, u.item, u.data" in msg
    assert "fmadv data fetch movielens-100k" in msg and "FMADV_DATA_DIR" in msg
    assert info("synthetic")["status"] == "generated"
    assert info("movielens-100k", tmp_path)["status"] == "missing"


# -- checksums on load --------------------------------------------------------------------


def install(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_checksum_checked_on_load_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = tiny_card()
    install(tmp_path / "tiny-ml", tiny_ml_files())
    calls = []
    real = data_io.hash_file
    monkeypatch.setattr(
        data_io, "hash_file", lambda p, *a, **k: calls.append(p) or real(p, *a, **k)
    )
    data_io.clear_digest_cache()
    s = load_dataset(card, tmp_path, test_size=0.25, valid_size=0)
    assert s.train.n_rows + s.test.n_rows == 8 and len(calls) == 3
    load_dataset(card, tmp_path, test_size=0.25, valid_size=0)
    assert len(calls) == 3  # cached: no re-hash
    (tmp_path / "tiny-ml" / "u.data").write_bytes(tiny_ml_files()["u.data"] + b"1\t1\t1\t99\n")
    with pytest.raises(ChecksumError, match="u.data: sha256 is .* expects"):
        load_dataset(card, tmp_path)
    assert verify(card, tmp_path)["u.data"] == "mismatch"


# -- fetch --------------------------------------------------------------------------------


def test_fetch_from_file_url_zip(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "ml-100k.zip", tiny_ml_files())
    data = hashlib.sha256(archive.read_bytes()).hexdigest()
    card = tiny_card(url=archive.as_uri(), archive_sha256=data)
    data_dir = tmp_path / "cache"
    seen = []
    folder = fetch(card, data_dir, progress=lambda url, done, total: seen.append(done))
    assert folder == data_dir / "tiny-ml"
    assert set(verify(card, data_dir).values()) == {"ok"}
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.item", "u.user"]
    assert seen and seen[-1] == archive.stat().st_size
    s = load_dataset(card, data_dir, test_size=0.25, valid_size=0)
    assert s.test.n_rows == 2

    # Everything verified: a second fetch downloads nothing.
    def forbidden(url: str, dest: Path) -> None:
        raise AssertionError("no download expected")

    assert fetch(card, data_dir, downloader=forbidden) == folder
    # A damaged file is replaced by a fresh, verified copy.
    (folder / "u.user").write_bytes(b"tampered\n")
    fetch(card, data_dir)
    assert (folder / "u.user").read_bytes() == tiny_ml_files()["u.user"]


@pytest.mark.parametrize("damage", ["archive_checksum", "file_checksum", "truncated", "missing"])
def test_failed_fetch_leaves_nothing(tmp_path: Path, damage: str) -> None:
    files = tiny_ml_files()
    expect: type[Exception] = ChecksumError
    if damage == "file_checksum":
        files = {**files, "u.data": files["u.data"] + b"2\t2\t5\t1\n"}
    if damage == "missing":
        files = {k: v for k, v in files.items() if k != "u.item"}
        expect = FmadvError
    archive = build_zip(tmp_path / "ml-100k.zip", files)
    extra = {}
    if damage == "archive_checksum":
        extra["archive_sha256"] = "0" * 64
    if damage == "truncated":
        archive.write_bytes(archive.read_bytes()[:100])
    card = tiny_card(url=archive.as_uri(), **extra)
    data_dir = tmp_path / "cache"
    with pytest.raises(expect) as info_:
        fetch(card, data_dir)
    if damage == "missing":
        assert "archive lacks u.item" in str(info_.value)
    assert all_files(data_dir) == []
    assert not (data_dir / "tiny-ml").exists()


def test_failed_fetch_keeps_existing_good_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "cache"
    good = tiny_ml_files()
    install(data_dir / "tiny-ml", {"u.user": good["u.user"]})
    bad = {**good, "u.item": b"not the item file\n"}
    card = tiny_card(url=build_zip(tmp_path / "a.zip", bad).as_uri())
    with pytest.raises(ChecksumError, match="u.item has sha256"):
        fetch(card, data_dir)
    assert [p.name for p in all_files(data_dir)] == ["u.user"]


def test_download_failure_is_a_clear_error(tmp_path: Path) -> None:
    def offline(url: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise OSError("network is unreachable")

    card = tiny_card(url="https://example.invalid/ml-100k.zip")
    with pytest.raises(FmadvError, match="download failed: https://example.invalid/ml-100k.zip"):
        fetch(card, tmp_path / "cache", downloader=offline)
    assert all_files(tmp_path / "cache") == []
    with pytest.raises(FmadvError, match="download failed"):
        fetch(tiny_card(url=(tmp_path / "absent.zip").as_uri()), tmp_path / "cache")


def test_fetch_per_file_base_url_with_fake_downloader(tmp_path: Path) -> None:
    files = tiny_ml_files()
    card = tiny_card(base_url="https://example.invalid/ml/")
    urls = []

    def fake(url: str, dest: Path) -> None:
        urls.append(url)
        dest.write_bytes(files[url.rsplit("/", 1)[1]])

    fetch(card, tmp_path, downloader=fake)
    assert sorted(urls) == sorted(f"https://example.invalid/ml/{n}" for n in files)
    assert set(verify(card, tmp_path).values()) == {"ok"}


def test_fetch_tar_gz_without_file_checksums_and_unsafe_members(tmp_path: Path) -> None:
    payload = {"batch_a": b"aaa", "sub/batch_b": b"bbbb"}
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in {
            **{f"root/{k}": v for k, v in payload.items()},
            "root/../escape": b"x",
            "other/ignored": b"y",
        }.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    card = DatasetCard(
        name="imgs",
        description="x",
        format="cifar10-python",
        url=archive.as_uri(),
        archive_root="root",
        archive_md5=md5,
    )
    folder = fetch(card, tmp_path / "cache")
    assert sorted(str(p.relative_to(folder)) for p in all_files(folder)) == [
        "batch_a",
        "sub/batch_b",
    ]
    assert not (tmp_path / "escape").exists() and not (tmp_path / "cache" / "escape").exists()
    bad = DatasetCard(
        **{**card.to_dict(), "archive_md5": "0" * 32, "source": None, "files": {}, "fields": ()}
    )
    with pytest.raises(ChecksumError, match="archive md5"):
        fetch(bad, tmp_path / "other")
    assert all_files(tmp_path / "other") == []


def write_toy_libfm(folder: Path, sizes: dict[str, int]) -> dict[str, str]:
    """``toy.<split>.libfm`` files of one user (0..2) and one item (3..6) per row; returns
    the card's ``files``."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    files = {}
    for split, rows in sizes.items():
        cols = np.stack([rng.integers(0, 3, rows), rng.integers(3, 7, rows)], 1).ravel()
        indptr = np.arange(0, 2 * rows + 1, 2)
        X = sp.csr_matrix((np.ones(rows * 2, np.float32), cols, indptr), shape=(rows, 7))
        path = write_libfm(folder / f"toy.{split}.libfm", Dataset(X, np.ones(rows)))
        files[path.name] = sha256(path.read_bytes())
    return files


def toy_libfm_card(files: dict[str, str], **extra) -> DatasetCard:
    return DatasetCard(name="toy", description="x", format="libfm", files=files, **extra)


def test_libfm_card_with_all_three_files(tmp_path: Path) -> None:
    files = write_toy_libfm(tmp_path / "toy", {"train": 40, "validation": 10, "test": 12})
    card = toy_libfm_card(files, n_features=7, fields=(("user", 3), ("item", 4)))
    s = load_dataset(card, tmp_path)
    assert (s.train.n_rows, s.valid.n_rows, s.test.n_rows) == (40, 10, 12)
    assert s.train.user_ids.max() < 3 and s.train.item_ids.max() < 4
    assert s.train.feature_map.feature_name(3) == "item=0"


def test_libfm_card_without_train_file_names_python_and_cli(tmp_path: Path) -> None:
    files = write_toy_libfm(tmp_path / "toy", {"validation": 10, "test": 12})
    card = toy_libfm_card({"toy.train.libfm": "", **files}, n_features=7)
    with pytest.raises(DataError) as info_:
        load_dataset(card, tmp_path)
    msg = str(info_.value)
    assert "missing toy.train.libfm" in msg and "fmadv data fetch toy" in msg
    assert "train_from='validation' in Python, --train-from validation on the CLI" in msg
    with pytest.raises(ConfigError, match=r"train_from='validation' \(CLI: --train-from"):
        load_dataset(card, tmp_path, valid_size=0.2)
    assert load_dataset(card, tmp_path, train_from="validation").test.n_rows == 12


def test_libfm_card_without_width_keeps_to_the_feature_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_toy_libfm(tmp_path / "toy", {"train": 4, "validation": 3, "test": 2})
    test_file = tmp_path / "toy" / "toy.test.libfm"
    test_file.write_text("1 0:1 3:1\n-1 1:1 12000000:1\n")
    card = toy_libfm_card({**files, "toy.test.libfm": ""})
    with pytest.raises(DataError) as info_:
        load_dataset(card, tmp_path)
    assert info_.value.path == str(test_file) and info_.value.line == 2
    assert "FMADV_MAX_FEATURES" in str(info_.value)
    monkeypatch.setenv("FMADV_MAX_FEATURES", "12000001")
    assert load_dataset(card, tmp_path).train.n_features == 12_000_001


# -- formats ------------------------------------------------------------------------------


def test_every_card_names_a_registered_format() -> None:
    for card in list_cards():
        assert get_format(card.format).name == card.format
    assert get_format("mnist-idx").kind is IMAGES and get_format("libfm").kind is ROWS
    assert get_format("synthetic").generated and not get_format("libfm").generated
    with pytest.raises(ConfigError, match="unknown format 'csv'; known formats: cifar10-python"):
        get_format("csv")


def test_dataset_options_and_the_ones_that_apply() -> None:
    assert dataset_options("movielens-100k") == {
        "side_features": (),
        "threshold": 4.0,
        "split": "random",
        "seed": 0,
        "test_size": 0.2,
        "valid_size": 0.1,
    }
    assert list(dataset_options("frappe")) == [
        "train_from",
        "valid_size",
        "seed",
        "allow_real_valued",
    ]
    assert dataset_options("mnist") == {"valid_size": 0.0, "seed": 0}
    assert dataset_options("synthetic")["n_rows"] == 20000
    flags = {
        "seed": 3,
        "split": None,
        "side_features": ["genre"],
        "threshold": None,
        "train_from": None,
        "allow_real_valued": False,
    }
    assert select_options("synthetic", **flags) == {"seed": 3}
    assert select_options("movielens-100k", **flags) == {"seed": 3, "side_features": ["genre"]}
    assert select_options("movielens-100k", **{**flags, "split": "u1", "threshold": 3.5}) == {
        "seed": 3,
        "split": "u1",
        "side_features": ["genre"],
        "threshold": 3.5,
    }
    assert select_options("frappe", **flags) == {"seed": 3, "allow_real_valued": False}


def test_item_titles_and_dataset_listing(tmp_path: Path) -> None:
    card = tiny_card()
    install(tmp_path / "tiny-ml", tiny_ml_files())
    assert item_titles(card, tmp_path) == {1: "A (1995)", 2: "B (1995)"}
    assert item_titles("synthetic") is None
    with pytest.raises(DataError, match="missing u.item"):
        item_titles("movielens-100k", tmp_path)
    rows = dataset_listing(tmp_path)
    assert [r["name"] for r in rows] == sorted(EXPECTED_CARDS)
    assert all(list(r) == ["name", "format", "local copy", "description"] for r in rows)
    local = {r["name"]: r["local copy"] for r in rows}
    assert local["synthetic"] == "not needed"
    assert local["movielens-100k"] == "0/21 files ok"


def read_ones(folder: Path, *, width: int = 2) -> Splits:
    """A toy reader: one 0/1 label per line, every row with feature 0 active."""
    y = np.array([1.0 if t == "1" else -1.0 for t in (folder / "labels.txt").read_text().split()])
    X = sp.csr_matrix((np.ones(len(y)), np.zeros(len(y)), np.arange(len(y) + 1)), (len(y), width))
    data = Dataset(X, y, name="ones")
    return Splits(train=data.subset([0, 1]), valid=None, test=data.subset([2]))


def test_a_new_format_is_one_registered_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Register into a copy of the registry, so that the toy format goes away afterwards.
    monkeypatch.setattr(format_registry, "_FORMATS", dict(format_registry._FORMATS))

    @register_format
    class Ones(DatasetFormat):
        name = "ones"
        kind = ROWS
        options = keyword_defaults(read_ones)

        def load(self, card: DatasetCard, folder: Path, **options) -> Splits:
            require_files(card, folder, ["labels.txt"])
            return read_ones(folder, **options)

    with pytest.raises(ValueError, match="registered twice"):
        register_format(Ones)
    assert "ones" in format_names()
    body = 'name = "ones"\ndescription = "x"\nformat = "ones"\n[files]\n"labels.txt" = ""\n'
    (tmp_path / "ones.toml").write_text(body)
    card = load_card(tmp_path / "ones.toml")
    (tmp_path / "ones").mkdir()
    (tmp_path / "ones" / "labels.txt").write_text("1\n0\n1\n")
    s = load_dataset(card, tmp_path, width=4)
    assert (s.train.n_rows, s.test.n_rows, s.n_features) == (2, 1, 4)
    assert dataset_options(card) == {"width": 2}
    with pytest.raises(ConfigError, match="unknown option.*depth.*accepted: width"):
        load_dataset(card, tmp_path, depth=1)
    with pytest.raises(ConfigError, match="ones is not an image dataset: it holds sparse FM rows"):
        load_images(card, tmp_path)
    details = info(card, tmp_path)
    assert details["status"] == "complete" and details["rows"] == {}
    assert item_titles(card, tmp_path) is None
