"""The .mar built by build_mar.sh holds exactly what serving needs."""

import json
import os
import subprocess
import sys
import zipfile

from fizbuz.contract import ROOT

EXPECTED = {
    "MAR-INF/MANIFEST.json",
    "fizbuz_service.py",
    "fizbuz_codec.py",
    "fizbuz_v2.py",
    "fizbuz_metrics.py",
    "signature.json",
    "fizbuz_package-symbol.json",
    "fizbuz_package-0000.params",
}


def test_archive_holds_exactly_the_serving_files(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        assert set(archive.namelist()) == EXPECTED


def test_archive_sources_are_the_repository_sources(mar_path):
    with zipfile.ZipFile(mar_path) as archive:
        for name in ("fizbuz_service.py", "fizbuz_codec.py", "fizbuz_metrics.py"):
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
    result = subprocess.run([sys.executable, "-m", "fizbuz.archive", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unexpected: ['notes.txt']" in result.stderr


def test_build_mar_explains_missing_weights(tmp_path):
    result = subprocess.run(
        [str(ROOT / "build_mar.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(
            os.environ,
            FIZBUZ_WEIGHTS=str(tmp_path / "missing.pth"),
            MODEL_STORE=str(tmp_path / "store"),
            STAGING_DIR=str(tmp_path / "stage"),
        ),
    )
    assert result.returncode == 1
    assert "no trained weights" in result.stderr and "fizbuz.train" in result.stderr
    assert not (tmp_path / "store").exists()


def test_scripts_answer_help():
    for script in ("build_mar.sh", "start_mms.sh", "scale_workers.sh", "scripts/setup_env.sh"):
        result = subprocess.run([str(ROOT / script), "-h"], capture_output=True, text=True)
        assert result.returncode == 0, script
        assert "Usage" in result.stdout, script
