"""Turn a Flask request into the service's answer, by the MMS handler's rules.

Request parsing, validation and error messages all come from fizbuz_codec, so
this path refuses exactly what the MMS handler refuses, with the same words.
"""

import torch

import fizbuz_codec as codec
from fizbuz.model import encode_batch, load_model

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def read_whole_body(request):
    """Read and cache the body, refusing one over max_content_length (RequestEntityTooLarge).

    werkzeug refuses a declared Content-Length over the limit, but stops reading a chunked
    body at the limit without a word: JSON cut there would get a misleading 400. One more
    read past the limit raises the 413 instead. The form parser then reads the cached body.
    """
    request.get_data(cache=True)
    request.stream.read(1)


def requested_number(request):
    """The n a request asks about; raises codec.InvalidInput for a bad one."""
    read_whole_body(request)
    if request.mimetype in FORM_TYPES:
        # MMS answers form and query fields too. Netty's form decoder drops a
        # field without "=" (a JSON text sent by `curl -d`), where werkzeug keeps
        # it with an empty value: drop empty values to give the client the same hint.
        fields = request.args.to_dict()
        fields.update((key, value) for key, value in request.form.items() if value != "")
        return codec.validate_input(codec.payload_from_fields(fields))
    return codec.validate_input(codec.decode_body(request.get_data()))


class Predictor:
    """FizBuzNet from the PyTorch weights, one request at a time."""

    def __init__(self, weights_path):
        # One thread per worker process, as MMS runs its workers: the model is
        # tiny and gunicorn already runs one worker per core.
        torch.set_num_threads(1)
        self.model = load_model(weights_path)

    def label_for(self, number):
        """The label of number + 1, as the model predicts it."""
        with torch.inference_mode():
            logits = self.model(encode_batch([number + 1]))
        return codec.readable(number + 1, int(logits.argmax(dim=1)))
