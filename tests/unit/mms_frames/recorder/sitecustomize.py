"""Used only by ../record.py: in an MMS worker running MMS's own decoder
(FIZBUZ_MMS_FAST_PROTOCOL=0), append every byte the decoder reads from the
frontend to $FIZBUZ_FRAME_RECORD_DIR/worker-<pid>.bin."""

import os
import sys

if sys.argv and sys.argv[0].endswith(os.path.join("mms", "model_service_worker.py")):
    from mms.protocol import otf_message_handler

    _read = otf_message_handler._retrieve_buffer
    _out = open(os.path.join(os.environ["FIZBUZ_FRAME_RECORD_DIR"], f"worker-{os.getpid()}.bin"), "ab")

    def _recording(conn, length):
        data = _read(conn, length)
        _out.write(data)
        _out.flush()
        return data

    otf_message_handler._retrieve_buffer = _recording
