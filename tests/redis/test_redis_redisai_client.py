"""The redisai 1.3.0 PyPI client (in its own venv, run as a subprocess)
against the module: AI.CONFIG GET MODEL_CHUNK_SIZE, AI.MODELSTORE ... BLOB,
AI.MODELEXECUTE with counts, AI.TENSORGET META BLOB, on every input."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fizbuz_codec import encode, true_class
from fizbuz.contract import ROOT
from redis_inputs import NUMBERS

CLIENT_PYTHON = ROOT / ".venv-redisai" / "bin" / "python"
CHECK = Path(__file__).with_name("redisai_client_check.py")


def test_redisai_client_answers_every_input(server, model_blob, eager_logits, tmp_path, redis_secrets):
    if not CLIENT_PYTHON.exists():
        pytest.fail("no .venv-redisai: run serving/redis/setup.sh (run_tests.sh does)")
    model = tmp_path / "fizbuz.pt"
    model.write_bytes(model_blob)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps([encode(n + 1) for n in NUMBERS]))
    result = subprocess.run(
        [str(CLIENT_PYTHON), str(CHECK), str(server.port), str(model), str(inputs), str(redis_secrets.folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    logits = np.array(reply["logits"], dtype=np.float32)
    np.testing.assert_allclose(logits, eager_logits, atol=1e-5)
    assert [int(row.argmax()) for row in logits] == [true_class(n + 1) for n in NUMBERS]
    assert reply["values"] == {"dtype": "FLOAT", "shape": [2], "values": [1.5, 2.5]}
    assert reply["meta"]["backend"] == "TORCH" and reply["meta"]["tag"] == "book"
    assert reply["info"]["calls"] == 1023 and reply["info"]["errors"] == 0
    np.testing.assert_allclose(reply["modelrun"], eager_logits[-1], atol=1e-5)
    assert reply["deleted"] == "OK"
