"""Probes the tests run as another process: curl's HTTP status for a URL, as
another user or from inside a network namespace ("000": no connection)."""

import subprocess


def curl_status(url, method="GET", max_time=5, user=None, namespace=None):
    """curl's status code for `url` ("000" when nothing answered), run as `user`
    (runuser) inside `namespace` (ip netns exec) when given."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time), "-X", method, url]
    if user:
        command = ["runuser", "-u", user, "--", *command]
    if namespace:
        command = ["ip", "netns", "exec", namespace, *command]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=max_time + 25, stdin=subprocess.DEVNULL
    ).stdout
