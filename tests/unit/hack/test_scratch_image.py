"""hack/cluster/scratch_image.py writes the pause and CoreDNS images the local cluster imports."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "cluster" / "scratch_image.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scratch_image", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(tar: tarfile.TarFile, name: str | tarfile.TarInfo) -> bytes:
    member = tar.extractfile(name)
    assert member is not None, f"{name} is not a regular file in the archive"
    return member.read()


def build(tmp_path: Path, name: str) -> Path:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF pretend binary")
    out = tmp_path / name
    code = load_script().main(
        ["scratch_image.py", str(out), "localhost/test/pause:1", '["/pause"]', f"{binary}=/pause"]
    )
    assert code == 0
    return out


def test_the_archive_is_a_docker_save_archive_with_consistent_digests(tmp_path: Path) -> None:
    archive = build(tmp_path, "pause.tar")
    with tarfile.open(archive) as tar:
        manifest = json.loads(read(tar, "manifest.json"))
        assert manifest[0]["RepoTags"] == ["localhost/test/pause:1"]
        config_bytes = read(tar, manifest[0]["Config"])
        layer = read(tar, manifest[0]["Layers"][0])
    assert manifest[0]["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    config = json.loads(config_bytes)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as layer_tar:
        member = layer_tar.getmember("pause")
        assert member.mode == 0o755
        assert read(layer_tar, member) == b"\x7fELF pretend binary"


def test_the_same_inputs_give_the_same_archive(tmp_path: Path) -> None:
    assert build(tmp_path, "a.tar").read_bytes() == build(tmp_path, "b.tar").read_bytes()


def test_a_file_argument_without_destination_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = load_script().main(["scratch_image.py", str(tmp_path / "x.tar"), "ref", "[]", "nodest"])
    assert code == 2
    assert "is not SRC=DEST" in capsys.readouterr().err
    assert not (tmp_path / "x.tar").exists()
