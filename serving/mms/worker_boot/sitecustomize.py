"""Applies serving/mms/fast_worker.py inside MMS's workers.

serving/mms/cli.py puts this folder (it holds only this file) first on the PYTHONPATH
of the MMS it starts; the Java frontend passes its PYTHONPATH on to every worker it
spawns as `python .../mms/model_service_worker.py ...` (MMS 1.0.8 offers no setting
for its own worker entry). Python imports `sitecustomize` at start-up, before the
worker script runs, so the script's `from mms... import retrieve_msg, emit_metrics`
picks up the patched functions. Any other Python process that inherits the path (the
frontend's launcher, MMS's metric collector) is left alone. The patch is loaded by
file path, so nothing else of the project lands on a worker's import path (the
archive's own handler modules must win). Then the sitecustomize this one shadows
(Debian's python has one) is run, as if this file were not here.
"""

import importlib.util
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PATCH = os.path.join(os.path.dirname(HERE), "fast_worker.py")
MODULE_NAME = "fizbuz_mms_fast_worker"


def load_patch():
    spec = importlib.util.spec_from_file_location(MODULE_NAME, PATCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def log_to_stdout(name):
    # The worker configures logging only after this runs; MMS's frontend copies the
    # worker's stdout into model_log.log, so what the patch says lands there.
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def boot():
    if not (sys.argv and sys.argv[0].endswith(os.path.join("mms", "model_service_worker.py"))):
        return
    log_to_stdout(MODULE_NAME)
    load_patch().apply()


def run_shadowed():
    """Import the next sitecustomize on the path, the one this file hides."""
    this = sys.modules.pop(__name__)
    saved = list(sys.path)
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != HERE]
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
        # The import that is running this file hands back sys.modules[__name__].
        sys.modules.setdefault(__name__, this)


boot()
run_shadowed()
