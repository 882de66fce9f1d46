"""A small stdlib HTTP client for control planes and readiness probes (no
third-party package, so serving hosts need nothing beyond the runtime set)."""

import ssl
import urllib.error
import urllib.request

from fizbuz import answers
from fizbuz.contract import PREDICT_PATH, SMOKE_INPUT, request_body


def exchange(method, url, timeout=10.0, body=None, headers=None, cafile=None):
    """Returns (status, reply headers with lower-case names, text);
    (None, {}, reason) when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, _lower(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        return None, {}, str(getattr(error, "reason", error))


def _lower(headers):
    return {name.lower(): value for name, value in (headers or {}).items()}


def call(method, url, timeout=10.0, body=None, headers=None, cafile=None):
    """Returns (status, text); (None, reason) when nothing answered."""
    status, _, text = exchange(method, url, timeout, body, headers, cafile)
    return status, text


def predict_url(port, address="127.0.0.1", tls=False, path=PREDICT_PATH):
    return f"{'https' if tls else 'http'}://{address}:{port}{path}"


def predict(url, number, timeout=10.0, cafile=None, headers=None):
    """POST one prediction request; returns (status, text)."""
    return call(
        "POST",
        url,
        timeout,
        request_body(number),
        {"Content-Type": "application/json", **(headers or {})},
        cafile=cafile,
    )


def answers_smoke_request(url, timeout=5.0, cafile=None, headers=None):
    """True when a real prediction comes back right (MMS's /ping says 200 even
    when no worker can serve, so readiness means this)."""
    return answers.reply_is_right(SMOKE_INPUT, *predict(url, SMOKE_INPUT, timeout, cafile, headers))
