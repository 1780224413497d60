"""What loading a model file refuses, and how every file fmadv writes comes out."""

from __future__ import annotations

import errno
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fmadv.data import write_libfm
from fmadv.data.features import FeatureMap
from fmadv.errors import ModelFileError
from fmadv.estimators.fm import FMClassifier
from fmadv.estimators.image import (
    IMAGE_FORMAT,
    ImageClassifier,
    ImageTrainConfig,
    train_image_classifier,
)
from fmadv.io import FORMAT, WriteError, atomic_write, load_tensors
from tests.fm_helpers import planted_problem
from tests.model_file_helpers import DROP, altered, write_raw
from tests.test_cli import assert_user_error, invoke
from tests.test_image_training import FAST, tiny_images

N_FACTORS = 3  # on planted_problem's 100 features (60 users + 40 items)
TWO_USERS = FeatureMap.fit(pd.DataFrame({"user": [1, 2]}), ["user"]).to_dict()


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory) -> Path:
    """A run folder holding a small trained FM and the libFM rows it was trained on."""
    folder = tmp_path_factory.mktemp("fm_run")
    X, y = planted_problem(n_rows=500)
    model = FMClassifier(n_factors=N_FACTORS, epochs=1, batch_size=256).fit(X, y)
    model.save(folder / "model.safetensors")
    write_libfm(folder / "rows.libfm", X, y)
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("image_run")
    train_image_classifier(tiny_images(), ImageTrainConfig(**FAST)).save(
        folder / "model.safetensors"
    )
    return folder


@pytest.fixture
def fm_file(fm_run) -> Path:
    return fm_run / "model.safetensors"


@pytest.fixture
def image_file(image_run) -> Path:
    return image_run / "model.safetensors"


def refused(load, path: Path, *fragments: str) -> str:
    """``load(path)`` raises ModelFileError naming the file and each fragment."""
    with pytest.raises(ModelFileError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- tensors --------------------------------------------------------------------------
FM_TENSOR_DAMAGE = {
    "factors of fewer factors": (
        "factors",
        lambda t: t[:, :-1],
        "has shape [100, 2], expected [100, 3]",
    ),
    "factors transposed": ("factors", lambda t: t.T, "'factors' has shape [3, 100]"),
    "bias as a vector": ("bias", lambda t: t.reshape(1), "expected [] (a scalar)"),
    "linear too long": (
        "linear",
        lambda t: torch.cat([t, t]),
        "'linear' has shape [200], expected [100]",
    ),
    "NaN weight": ("linear", lambda t: t.index_fill(0, torch.tensor([5]), np.nan), "NaN"),
    "infinite factor": ("factors", lambda t: t.index_fill(0, torch.tensor([0]), np.inf), "inf"),
    "integer factors": (
        "factors",
        lambda t: t.to(torch.int64),
        "dtype torch.int64, expected floating point",
    ),
    "missing linear": ("linear", lambda t: DROP, "missing tensors ['linear']"),
}


@pytest.mark.parametrize("damage", FM_TENSOR_DAMAGE, ids=str)
def test_fm_tensors_are_checked(fm_file, tmp_path, damage):
    name, change, fragment = FM_TENSOR_DAMAGE[damage]
    tensors, _ = load_tensors(fm_file)
    bad = altered(fm_file, tmp_path / "bad.safetensors", FORMAT, {name: change(tensors[name])})
    refused(FMClassifier.load, bad, fragment)


def test_fm_unexpected_tensors_are_refused(fm_file, tmp_path):
    bad = altered(fm_file, tmp_path / "bad.safetensors", FORMAT, {"extra": torch.zeros(2)})
    refused(FMClassifier.load, bad, "unexpected tensors ['extra']")


def test_fm_tensors_must_match_the_header(fm_file, tmp_path):
    """A consistent set of tensors still has to agree with n_features and n_factors."""
    _, header = load_tensors(fm_file)
    params = {**header["params"], "n_factors": N_FACTORS + 1}
    bad = altered(fm_file, tmp_path / "k.safetensors", FORMAT, header={"params": params})
    refused(FMClassifier.load, bad, "expected [100, 4]")
    bad = altered(fm_file, tmp_path / "n.safetensors", FORMAT, header={"n_features": 99})
    refused(FMClassifier.load, bad, "expected [99]")


def _image_weight(tensors: dict) -> str:
    return next(name for name in tensors if name.startswith("model.") and "weight" in name)


IMAGE_TENSOR_DAMAGE = {
    "weight of another shape": (_image_weight, lambda t: t[:-1], "has shape ["),
    "NaN weight": (_image_weight, lambda t: torch.full_like(t, np.nan), "NaN"),
    "missing weight": (_image_weight, lambda t: DROP, "missing tensors"),
    "box of another shape": (
        lambda _: "low",
        lambda t: t[0],
        "'low' has shape [8, 8], expected [1, 8, 8]",
    ),
    "infinite box": (lambda _: "high", lambda t: torch.full_like(t, np.inf), "'high'"),
    "mean of another shape": (lambda _: "mean", lambda t: torch.zeros(3), "'mean' has shape [3]"),
    "box upside down": (lambda _: "low", lambda t: t + 2, "low bound exceeds"),
}


@pytest.mark.parametrize("damage", IMAGE_TENSOR_DAMAGE, ids=str)
def test_image_tensors_are_checked(image_file, tmp_path, damage):
    pick, change, fragment = IMAGE_TENSOR_DAMAGE[damage]
    tensors, _ = load_tensors(image_file, IMAGE_FORMAT)
    name = pick(tensors)
    value = change(tensors.get(name, torch.zeros(1, 8, 8)))
    bad = altered(image_file, tmp_path / "bad.safetensors", IMAGE_FORMAT, {name: value})
    refused(ImageClassifier.load, bad, fragment)


def test_image_weights_must_fit_the_configured_network(image_file, tmp_path):
    bad = altered(image_file, tmp_path / "bad.safetensors", IMAGE_FORMAT, header={"n_classes": 5})
    refused(ImageClassifier.load, bad, "expected [5, ")


# -- the JSON header -------------------------------------------------------------------
@pytest.mark.parametrize(
    "header, fragment",
    [
        ([1, 2], "the metadata is a list, expected an object"),
        ("fm", "is a string"),
        (3, "an integer"),
    ],
)
@pytest.mark.parametrize("load", [FMClassifier.load, ImageClassifier.load], ids=["fm", "image"])
def test_metadata_must_be_an_object(tmp_path, load, header, fragment):
    path = write_raw(tmp_path / "m.safetensors", {"bias": torch.zeros(())}, header)
    refused(load, path, fragment)


FM_HEADER_DAMAGE = [
    ({"params": ["n_factors", 3]}, "'params' is a list, expected an object"),
    ({"params": {"n_factors": N_FACTORS, "magic": 1}}, "magic"),
    ({"params": {"n_factors": "3"}}, "parameter 'n_factors' is a string"),
    ({"n_features": "100"}, "'n_features' is a string, expected an integer"),
    ({"n_features": 0}, "'n_features' must be >= 1"),
    ({"n_features": True}, "'n_features' is a boolean"),
    ({"n_features": DROP}, "no 'n_features'"),
    ({"history": {"epoch": 1}}, "'history' is an object, expected a list"),
    ({"history": [1]}, "a 'history' record is an integer"),
    ({"feature_map": "users"}, "'feature_map' is a string"),
    ({"feature_map": {"format": "other"}}, "not a feature map"),
    ({"feature_map": TWO_USERS}, "the feature map has 2 features, the model 100"),
    ({"data": "movielens"}, "'data' is a string"),
    ({"format_version": "1"}, "'format_version' is a string"),
    ({"format_version": 99}, "newer fmadv"),
]


@pytest.mark.parametrize("changes, fragment", FM_HEADER_DAMAGE, ids=lambda v: repr(v)[:40])
def test_fm_header_fields_are_checked(fm_file, tmp_path, changes, fragment):
    bad = altered(fm_file, tmp_path / "bad.safetensors", FORMAT, header=changes)
    refused(FMClassifier.load, bad, fragment)


IMAGE_HEADER_DAMAGE = [
    ({"config": "mlp"}, "'config' is a string, expected an object"),
    ({"config": {"model": "resnet"}}, "unknown image model"),
    ({"shape": "1x8x8"}, "'shape' is a string"),
    ({"shape": [1, 8]}, "'shape' has 2 entries"),
    ({"shape": [1, 8, -8]}, "a 'shape' entry must be >= 1"),
    ({"n_classes": 4.0}, "'n_classes' is a number, expected an integer"),
    ({"scale": DROP}, "no 'scale'"),
    ({"dataset": ["mnist"]}, "'dataset' is a list"),
    ({"history": "none"}, "'history' is a string"),
]


@pytest.mark.parametrize("changes, fragment", IMAGE_HEADER_DAMAGE, ids=lambda v: repr(v)[:40])
def test_image_header_fields_are_checked(image_file, tmp_path, changes, fragment):
    bad = altered(image_file, tmp_path / "bad.safetensors", IMAGE_FORMAT, header=changes)
    refused(ImageClassifier.load, bad, fragment)


def test_earlier_fm_parameter_names_still_load(fm_run, fm_file, tmp_path):
    _, header = load_tensors(fm_file)
    params = dict(header["params"])
    params["k"], params["alpha"] = params.pop("n_factors"), params.pop("eps")
    old = altered(fm_file, tmp_path / "old.safetensors", FORMAT, header={"params": params})
    loaded, current = FMClassifier.load(old), FMClassifier.load(fm_file)
    assert loaded.get_params() == current.get_params()
    X, _ = planted_problem(n_rows=500)
    np.testing.assert_array_equal(loaded.decision_function(X), current.decision_function(X))


# -- pickles --------------------------------------------------------------------------
class _Trap:
    """Unpickling this creates a folder: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _torch_zip(path: Path, trap: _Trap) -> None:
    torch.save({"weights": torch.zeros(2), "trap": trap}, path)


def _torch_legacy(path: Path, trap: _Trap) -> None:
    torch.save({"trap": trap}, path, _use_new_zipfile_serialization=False)


def _pickle_writer(protocol: int):
    def write(path: Path, trap: _Trap) -> None:
        path.write_bytes(pickle.dumps({"trap": trap}, protocol=protocol))

    return write


PICKLE_WRITERS = {
    **{f"pickle protocol {p}": _pickle_writer(p) for p in range(2, 6)},
    "torch.save": _torch_zip,
    "torch.save, legacy format": _torch_legacy,
}


@pytest.mark.parametrize("writer", PICKLE_WRITERS, ids=str)
@pytest.mark.parametrize("load", [FMClassifier.load, ImageClassifier.load], ids=["fm", "image"])
def test_pickles_are_named_and_never_unpickled(tmp_path, load, writer):
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.pt"
    PICKLE_WRITERS[writer](path, _Trap(marker))
    assert not marker.exists()
    refused(load, path, "a Python pickle", "never loads pickles", "safetensors")
    assert not marker.exists()


def test_a_zip_without_a_pickle_is_just_unreadable(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.bin", b"\x00" * 16)
    (tmp_path / "model.zip").write_bytes(buffer.getvalue())
    message = refused(FMClassifier.load, tmp_path / "model.zip", "not a readable model file")
    assert "a Python pickle" not in message


# -- folders ---------------------------------------------------------------------------
def test_a_run_folder_loads_its_model(fm_run, image_run):
    X, _ = planted_problem(n_rows=500)
    np.testing.assert_array_equal(
        FMClassifier.load(fm_run).decision_function(X),
        FMClassifier.load(fm_run / "model.safetensors").decision_function(X),
    )
    images = tiny_images().test_x
    torch.testing.assert_close(
        ImageClassifier.load(image_run).model(images),
        ImageClassifier.load(image_run / "model.safetensors").model(images),
    )


@pytest.mark.parametrize("load", [FMClassifier.load, ImageClassifier.load], ids=["fm", "image"])
def test_a_folder_without_a_model_is_named(tmp_path, load):
    refused(load, tmp_path, "is a folder without model.safetensors")


def test_tensors_of_a_folder_are_refused(tmp_path):
    refused(load_tensors, tmp_path, "is a folder, not a model file")


# -- writing -----------------------------------------------------------------------------
@pytest.fixture(params=[0o022, 0o077], ids=["umask 022", "umask 077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_respect_the_umask(umask, tmp_path, fm_file):
    expected = 0o666 & ~umask
    text = tmp_path / "summary.json"
    atomic_write(text, lambda temp: Path(temp).write_text("{}"))
    assert mode_of(text) == expected
    text.chmod(0o600)
    atomic_write(text, lambda temp: Path(temp).write_text("{}"))  # a rewrite too
    assert mode_of(text) == expected
    FMClassifier.load(fm_file).save(tmp_path / "model.safetensors")
    assert mode_of(tmp_path / "model.safetensors") == expected


def test_writing_onto_a_folder_says_so(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(WriteError, match="is a folder") as caught:
        atomic_write(tmp_path / "out", lambda temp: Path(temp).write_text("x"))
    assert str(tmp_path / "out") in str(caught.value)
    assert isinstance(caught.value, OSError)
    assert os.listdir(tmp_path / "out") == []


def _refused_write(destination: Path, write=None) -> str:
    """The message of the WriteError writing ``destination``; no temporary file named."""
    with pytest.raises(WriteError) as caught:
        atomic_write(destination, write or (lambda temp: Path(temp).write_text("x")))
    message = str(caught.value)
    assert str(destination) in message and ".tmp" not in message, message
    return message


def test_a_destination_under_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    _refused_write(tmp_path / "file" / "run" / "summary.json")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_folder_is_named(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        message = _refused_write(folder / "model.safetensors")
    finally:
        folder.chmod(0o700)
    assert "Permission denied" in message


def test_a_failed_write_names_the_destination(tmp_path):
    def disk_full(temp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), temp)

    assert "No space left" in _refused_write(tmp_path / "scores.csv", disk_full)
    assert list(tmp_path.iterdir()) == []


# -- the command line -------------------------------------------------------------------
def _fm_commands(model: Path, rows: Path) -> dict[str, list]:
    return {
        "evaluate": ["evaluate", model, "--input", rows],
        "predict": ["predict", model, rows],
        "robustness": ["robustness", model, "--input", rows],
        "recommend": ["recommend", model],
    }


def _metadata_list(source: Path, kind: str, folder: Path) -> Path:
    return write_raw(folder / "list.safetensors", load_tensors(source, kind)[0], [1])


def _metadata_string(source: Path, kind: str, folder: Path) -> Path:
    return write_raw(folder / "text.safetensors", {"x": torch.zeros(1)}, "a model")


def _nan_weights(source: Path, kind: str, folder: Path) -> Path:
    tensors, _ = load_tensors(source, kind)
    nan = {name: torch.full_like(t, np.nan) for name, t in tensors.items()}
    return altered(source, folder / "nan.safetensors", kind, nan)


def _pickled(source: Path, kind: str, folder: Path) -> Path:
    path = folder / "model.pt"
    torch.save(load_tensors(source, kind)[0], path)
    return path


def _empty_folder(source: Path, kind: str, folder: Path) -> Path:
    (folder / "empty").mkdir()
    return folder / "empty"


BAD_FILES = {
    "metadata a list": (_metadata_list, "a list"),
    "metadata a string": (_metadata_string, "a string"),
    "NaN weights": (_nan_weights, "NaN"),
    "a pickle": (_pickled, "pickle"),
    "a folder": (_empty_folder, "without model.safetensors"),
}
COMMANDS = ["evaluate", "predict", "robustness", "recommend", "image evaluate"]


@pytest.mark.parametrize("bad", BAD_FILES, ids=str)
@pytest.mark.parametrize("command", COMMANDS)
def test_commands_report_bad_model_files_in_one_line(fm_run, image_run, tmp_path, command, bad):
    make, fragment = BAD_FILES[bad]
    if command == "image evaluate":
        path = make(image_run / "model.safetensors", IMAGE_FORMAT, tmp_path)
        args = ["image", "evaluate", path]
    else:
        path = make(fm_run / "model.safetensors", FORMAT, tmp_path)
        args = _fm_commands(path, fm_run / "rows.libfm")[command]
    assert_user_error(invoke(*args), str(path), fragment)


def test_commands_take_a_run_folder(fm_run):
    result = invoke("evaluate", fm_run, "--input", fm_run / "rows.libfm", "--json")
    assert result.exit_code == 0, result.output


def test_commands_name_an_output_they_cannot_write(fm_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "file").write_text("x")
    predict = ["predict", fm_run, fm_run / "rows.libfm", "--output"]
    assert_user_error(invoke(*predict, tmp_path / "out"), f"{tmp_path / 'out'} is a folder")
    unreachable = tmp_path / "file" / "scores.csv"
    assert_user_error(invoke(*predict, unreachable), str(unreachable))
