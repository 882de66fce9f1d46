"""Record the bytes MMS 1.0.8's Java frontend sends its workers, for
tests/unit/test_fast_worker.py: a private MMS (batch 16, 1 ms, one worker, MMS's
own decoder) gets a mix of requests (JSON, text, binary, extra headers, bodies up to
the 128 KiB cap, bad JSON, bursts that make batches), and every frame its worker
reads lands in one .bin file per worker process (the load frame, then the batches).

    .venv/bin/python tests/unit/mms_frames/record.py [--output tests/unit/mms_frames]
"""

import argparse
import concurrent.futures
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from fizbuz import logs
from fizbuz.http_client import call
from serving.mms.private import PrivateMms

HERE = Path(__file__).resolve().parent
REQUESTS = [
    (b'{"input.1": 14}', {"Content-Type": "application/json"}),
    (b'{"input.1": 0}', {"Content-Type": "application/json; charset=utf-8", "X-Trace": "abc"}),
    (b"hello, text", {"Content-Type": "text/plain"}),
    (bytes(range(256)) * 4, {"Content-Type": "application/octet-stream"}),
    (b'{"input.1": 14', {"Content-Type": "application/json"}),
    (b"", {"Content-Type": "application/json"}),
    ('{"input.1": 15, "note": "caf\u00e9 \u2603"}'.encode(), {"Content-Type": "application/json"}),
    (b'{"pad": "' + b"x" * 120_000 + b'"}', {"Content-Type": "application/json"}),
    (b'{"input.1": 3}', {"Content-Type": "application/json", "X-Many": "v" * 2000}),
]


def send_all(url):
    statuses = [call("POST", url, 10, body=body, headers=headers)[0] for body, headers in REQUESTS]
    burst = [(b'{"input.1": %d}' % n, {"Content-Type": "application/json"}) for n in range(64)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses += pool.map(lambda item: call("POST", url, 10, body=item[0], headers=item[1])[0], burst)
    return statuses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(HERE), help="folder for the .bin files (default %(default)s)")
    args = parser.parse_args(argv)
    logs.setup("progress")
    with tempfile.TemporaryDirectory(prefix="fbz-frames-") as folder:
        os.environ.update(FIZBUZ_FRAME_RECORD_DIR=folder, PYTHONPATH=str(HERE / "recorder"))
        server = PrivateMms(workers=1, metrics=0, model_metrics_log=0, mms_fast_protocol=0)
        try:
            server.start()
            logging.info("statuses: %s", sorted(set(send_all(server.url))))
        finally:
            server.stop()
            server.remove()
        for index, path in enumerate(sorted(Path(folder).glob("*.bin"))):
            shutil.copy(path, Path(args.output) / f"recorded-{index}.bin")
            logging.info("recorded %s: %d bytes", path.name, path.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
