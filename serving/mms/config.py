"""Render a run folder's MMS config.properties and log4j.properties from the
templates beside this file, and provide the TLS certificate MMS needs."""

import logging
import shutil
import subprocess
from pathlib import Path

from fizbuz import settings
from fizbuz.errors import SettingError
from fizbuz.lifecycle import LifecycleError

HERE = Path(__file__).resolve().parent
CONFIG_TEMPLATE = HERE / "config.properties"
LOG_CONFIG_TEMPLATE = HERE / "log4j.properties"

log = logging.getLogger(__name__)


def write_config(
    path, inference_port, management_port, tls=None, inference_address="127.0.0.1", template=CONFIG_TEMPLATE
):
    """config.properties with the addresses pointing at the chosen ports; with
    tls=(certificate, key) the inference API speaks HTTPS. The management API
    always stays on loopback (MMS 1.0.8 has no auth). The frontend's settings
    replace the template's values when set (frontend_overrides); the response
    timeout also bounds a worker's model load: the multi-node cluster's tasks
    start on a busy box."""
    scheme = "https" if tls else "http"
    overrides = frontend_overrides()
    lines = []
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in overrides:
            line = f"{key}={overrides.pop(key)}"
        elif key == "inference_address":
            line = f"inference_address={scheme}://{inference_address}:{inference_port}"
        elif key == "management_address":
            line = f"management_address=http://127.0.0.1:{management_port}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items()]  # keys the template lacks
    if tls:
        lines += [f"certificate_file={tls[0]}", f"private_key_file={tls[1]}"]
    Path(path).write_text("\n".join(lines) + "\n")


def frontend_overrides():
    """config.properties keys the settings replace when set: the response
    timeout, the frontend's Netty threads (0: Netty's own count) and its JVM
    options (vmargs)."""
    values = {
        "default_response_timeout": settings.value("mms_response_timeout"),
        "number_of_netty_threads": settings.value("mms_netty_threads"),
        "netty_client_threads": settings.value("mms_netty_client_threads"),
        "vmargs": jvm_options(settings.value("mms_jvm_options")),
    }
    return {key: value for key, value in values.items() if value is not None}


def jvm_options(text):
    """The JVM options as MMS's launcher will split them (on whitespace); each must
    be an option: a word not starting with '-' would be taken as the main class."""
    if not text:
        return None
    words = text.split()
    bad = [word for word in words if not word.startswith("-")]
    if bad:
        raise SettingError(f"FIZBUZ_MMS_JVM_OPTIONS: {bad[0]!r} is not a JVM option (each starts with '-')")
    return " ".join(words)


def write_log_config(path, logs_folder, access_log, template=LOG_CONFIG_TEMPLATE):
    text = template.read_text()
    text = text.replace("${LOG_LOCATION}", str(logs_folder)).replace("${METRICS_LOCATION}", str(logs_folder))
    for name, verbose, quiet in (
        ("ACCESS_LOG_LEVEL", "INFO", "OFF"),
        ("PER_REQUEST_LOGS", "true", "false"),
        ("WORKER_THREAD_LEVEL", "INFO", "WARN"),
    ):
        text = text.replace("${%s}" % name, verbose if access_log else quiet)
    Path(path).write_text(text)


def tls_files(folder, certificate=None, key=None, address="127.0.0.1"):
    """The PEM certificate and key for HTTPS: the given ones, or a self-signed
    pair made once in `folder`. MMS must be given them: Netty's own self-signed
    fallback needs BouncyCastle and fails on Java 17."""
    if certificate or key:
        if not (certificate and key and Path(certificate).is_file() and Path(key).is_file()):
            raise LifecycleError("TLS_CERT and TLS_KEY must both name existing PEM files")
        return Path(certificate).resolve(), Path(key).resolve()
    folder = Path(folder)
    certificate, key = folder / "cert.pem", folder / "key.pem"
    if not (certificate.is_file() and key.is_file()):
        make_self_signed(certificate, key, address)
    return certificate, key


def make_self_signed(certificate, key, address="127.0.0.1"):
    """A self-signed PEM pair (key in PKCS#8) valid for `address` and localhost."""
    if shutil.which("openssl") is None:
        raise LifecycleError(
            "openssl is needed to make a TLS certificate (apt-get install -y openssl), "
            "or give your own with TLS_CERT and TLS_KEY"
        )
    Path(certificate).parent.mkdir(parents=True, exist_ok=True)
    log.info("making a self-signed certificate for %s in %s", address, Path(certificate).parent)
    names = ",".join(dict.fromkeys([f"IP:{address}", "IP:127.0.0.1", "DNS:localhost"]))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "365",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
            "-subj",
            f"/CN={address}",
            "-addext",
            f"subjectAltName={names}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
        umask=0o077,
    )  # the key is 0600 from its creation, never chmod'ed after
    Path(certificate).chmod(0o644)  # public: clients read it as their CA file
