"""The front door's certificate: a given PEM pair, or a self-signed one made once."""

import shutil
import subprocess
from pathlib import Path


class TlsError(Exception):
    pass


def certificate_pair(folder, certificate=None, key=None, address="127.0.0.1"):
    if certificate or key:
        if not (certificate and key and Path(certificate).is_file() and Path(key).is_file()):
            raise TlsError("give both a certificate and a key file (PEM)")
        return str(Path(certificate).resolve()), str(Path(key).resolve())
    folder = Path(folder)
    cert, private = folder / "cert.pem", folder / "key.pem"
    if cert.is_file() and private.is_file():
        return str(cert), str(private)
    if shutil.which("openssl") is None:
        raise TlsError("openssl is needed to make a certificate (apt-get install -y openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    names = f"IP:{address},DNS:localhost" + (",IP:127.0.0.1" if address != "127.0.0.1" else "")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                    "-keyout", str(private), "-out", str(cert), "-subj", f"/CN={address}",
                    "-addext", f"subjectAltName={names}"], check=True, capture_output=True, timeout=60)
    private.chmod(0o600)
    return str(cert), str(private)
