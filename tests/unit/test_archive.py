"""The .mar built by build_mar.sh holds exactly what serving needs."""

import json
import os
import subprocess
import zipfile

from project import ROOT

EXPECTED = {
    "MAR-INF/MANIFEST.json", "fizbuz_service.py", "fizbuz_codec.py", "signature.json",
    "fizbuz_package-symbol.json", "fizbuz_package-0000.params",
}


def test_archive_holds_exactly_the_serving_files(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        assert set(archive.namelist()) == EXPECTED


def test_archive_sources_are_the_repository_sources(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        for name in ("fizbuz_service.py", "fizbuz_codec.py"):
            assert archive.read(name) == (ROOT / name).read_bytes(), name


def test_manifest_names_the_function_entry_point(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["handler"] == "fizbuz_service:handle"
    assert manifest["model"]["modelName"] == "fizbuz_package"
    # "python" makes MMS run the worker with its own interpreter (the venv's);
    # "python3" would run whatever python3 is first on PATH.
    assert manifest["runtime"] == "python"


def test_converted_signature_names_the_onnx_input(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        signature = json.loads(archive.read("signature.json"))
    assert signature["inputs"][0] == {"data_name": "input.1", "data_shape": [0, 10]}


def test_check_archive_rejects_an_archive_with_an_extra_file(mar_path, tmp_path):
    bad = tmp_path / "bad.mar"
    with zipfile.ZipFile(mar_path) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("notes.txt", "stray")
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "tools" / "check_archive.py"),
                             str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unexpected: ['notes.txt']" in result.stderr


def test_build_mar_explains_missing_weights(tmp_path):
    # A copy of the scripts without assets/: build_mar.sh must say how to train.
    for name in ("build_mar.sh",):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
        os.chmod(tmp_path / name, 0o755)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "common.sh").write_bytes((ROOT / "scripts" / "common.sh").read_bytes())
    result = subprocess.run([str(tmp_path / "build_mar.sh")], capture_output=True, text=True,
                            env=dict(os.environ, FIZBUZ_VENV=str(ROOT / ".venv")))
    assert result.returncode == 1
    assert "no trained weights" in result.stderr and "train.py" in result.stderr


def test_scripts_answer_help():
    for script in ("build_mar.sh", "start_mms.sh", "scale_workers.sh", "scripts/setup_env.sh"):
        result = subprocess.run([str(ROOT / script), "-h"], capture_output=True, text=True)
        assert result.returncode == 0, script
        assert "Usage" in result.stdout, script
