"""serving.mms.config.write_config: the frontend's settings (Netty threads, JVM
options) reach config.properties, and nothing else does."""

import pytest

from fizbuz.errors import SettingError
from serving.mms.config import write_config

FRONTEND = (
    "FIZBUZ_MMS_NETTY_THREADS",
    "FIZBUZ_MMS_NETTY_CLIENT_THREADS",
    "FIZBUZ_MMS_JVM_OPTIONS",
    "FIZBUZ_MMS_RESPONSE_TIMEOUT",
)


def written(tmp_path):
    path = tmp_path / "config.properties"
    write_config(path, 8080, 8081)
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def test_unset_settings_leave_the_template_alone(tmp_path, monkeypatch):
    for name in FRONTEND:
        monkeypatch.delenv(name, raising=False)
    config = written(tmp_path)
    assert config["vmargs"] == "-XX:+UseSerialGC"  # the template's, measured in bench/results/mms_path
    assert (config["number_of_netty_threads"], config["netty_client_threads"]) == ("1", "1")
    assert config["default_response_timeout"] == "30"


def test_frontend_settings_are_written_once_each(tmp_path, monkeypatch):
    monkeypatch.setenv("FIZBUZ_MMS_NETTY_THREADS", "1")
    monkeypatch.setenv("FIZBUZ_MMS_NETTY_CLIENT_THREADS", "2")
    monkeypatch.setenv("FIZBUZ_MMS_JVM_OPTIONS", "  -XX:+UseSerialGC   -Xmx256m ")
    path = tmp_path / "config.properties"
    write_config(path, 8080, 8081)
    lines = path.read_text().splitlines()
    assert lines.count("number_of_netty_threads=1") == 1 and lines.count("netty_client_threads=2") == 1
    assert lines.count("vmargs=-XX:+UseSerialGC -Xmx256m") == 1


@pytest.mark.parametrize("options", ["-Xmx256m Evil", "-Xmx1g\nmanagement_address=http://0.0.0.0:1"])
def test_a_word_that_is_not_a_jvm_option_is_refused(tmp_path, monkeypatch, options):
    monkeypatch.setenv("FIZBUZ_MMS_JVM_OPTIONS", options)
    with pytest.raises(SettingError, match="is not a JVM option"):
        written(tmp_path)


def test_netty_threads_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("FIZBUZ_MMS_NETTY_THREADS", "65")
    with pytest.raises(SettingError):
        written(tmp_path)
