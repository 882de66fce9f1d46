"""Flask app with MMS's request/response contract, for gunicorn:

    gunicorn --chdir REPO 'serving.flask.app:create_app()'

POST /predictions/fizbuz_package {"input.1": n} -> {"next_number": "<label of n + 1>"};
a bad request gets 400 {"error": "...", "code": 400}, a body over MMS's max_request_size 413
{"error": "...", "code": 413}; GET /ping -> {"status": "Healthy"}.
serving/flask/serve.sh starts and stops it.
"""

import json
import logging
import os

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from fizbuz import settings
import fizbuz_codec as codec
from fizbuz.contract import PREDICT_PATH
from serving.flask.controller import Predictor, requested_number
from serving.mms.config import CONFIG_TEMPLATE as MMS_CONFIG


log = logging.getLogger(__name__)

# How much of a refused (too large) body is read off the socket and dropped. gunicorn 27's
# gthread worker drains at most 64 KiB of a body the app left unread and then closes the
# connection, after a reply that said keep-alive: a client reusing it gets no answer at all.
# Reading the rest here keeps the connection good; past this bound gunicorn closes it.
DRAIN_LIMIT = 1 << 20


def max_request_size(config=MMS_CONFIG):
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "max_request_size":
            return int(value)
    raise ValueError(f"{config} has no max_request_size")


def json_reply(payload, status):
    return Response(json.dumps(payload) + "\n", status=status, mimetype="application/json")


def drain_body(stream, limit=DRAIN_LIMIT):
    """Read and drop what is left of a request body, at most `limit` bytes; return the count."""
    drained = 0
    while drained < limit:
        chunk = stream.read(min(65536, limit - drained))
        if not chunk:
            break
        drained += len(chunk)
    return drained


def use_gunicorn_logging():
    """Send this app's log records to gunicorn's error log, when run under it."""
    gunicorn_log = logging.getLogger("gunicorn.error")
    if gunicorn_log.handlers and not logging.getLogger().handlers:
        logging.basicConfig(handlers=gunicorn_log.handlers, level=gunicorn_log.level)


def create_app(weights_path=None):
    use_gunicorn_logging()
    weights_path = weights_path or settings.value("weights")
    predictor = Predictor(weights_path)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_request_size()

    @app.post(PREDICT_PATH)
    def predict():
        try:
            number = requested_number(request)
        except codec.InvalidInput as error:
            log.debug("refused a request: %s", error)
            return json_reply(codec.error_reply(str(error)), codec.ERROR_STATUS)
        return json_reply({codec.OUTPUT_KEY: predictor.label_for(number)}, 200)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error):
        drained = drain_body(request.environ["wsgi.input"])
        limit = app.config["MAX_CONTENT_LENGTH"]
        log.debug("refused a body over %d bytes (%d more read and dropped)", limit, drained)
        return json_reply(codec.error_reply(f"request body too large (limit {limit} bytes)", 413), 413)

    @app.get("/ping")
    def ping():
        return json_reply({"status": "Healthy"}, 200)

    log.info("FizBuzNet loaded from %s (pid %d)", weights_path, os.getpid())
    return app
