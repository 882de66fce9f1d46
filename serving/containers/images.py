"""Build contexts and images: the debootstrapped local base, the MMS host image
and the front door image.

The MMS image's Python packages are downloaded on this machine (the project's
pip, its constraints and whatever index or mirror the host's pip is set to use)
into the context's wheels/ folder; the build installs only from there
(--no-index), so a build needs no route to PyPI and no certificate of ours."""

import logging
import shutil
import subprocess
import sys
import time
import zipfile
import json
from pathlib import Path

from fizbuz.contract import MAR_FILE_NAME, MODEL_STORE, ROOT
from fizbuz.lifecycle import LifecycleError

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

# The project's own modules the MMS image runs (its start/registration logic,
# the metrics exporter, the health check): nothing that imports torch.
APP_FILES = (
    "fizbuz_codec.py",
    "fizbuz_metrics.py",
    "fizbuz_v2.py",
    "fizbuz/__init__.py",
    "fizbuz/answers.py",
    "fizbuz/contract.py",
    "fizbuz/errors.py",
    "fizbuz/http_client.py",
    "fizbuz/lifecycle.py",
    "fizbuz/logs.py",
    "fizbuz/settings.py",
    "fizbuz/users.py",
    "serving/__init__.py",
    "serving/mms/__init__.py",
    "serving/mms/cli.py",
    "serving/mms/config.py",
    "serving/mms/guard.py",
    "serving/mms/management.py",
    "serving/mms/process.py",
    "serving/mms/config.properties",
    "serving/mms/log4j.properties",
    "serving/mms/fast_worker.py",
    "serving/mms/worker_boot/sitecustomize.py",
    "serving/metrics/__init__.py",
    "serving/metrics/serve.py",
    "serving/mms/metrics/__init__.py",
    "serving/mms/metrics/control.py",
    "serving/mms/metrics/exporter.py",
    "serving/mms/metrics/multiproc.py",
    "serving/mms/metrics/workers.py",
    "serving/containers/__init__.py",
    "serving/containers/entrypoint.py",
    "serving/containers/health.py",
)
REQUIREMENTS = HERE / "requirements-image.txt"
# The front door's routing of the Open Inference Protocol (run by njs): baked
# into the front image at FRONT_DOOR_JS, the path its nginx.conf names.
DOOR_JS = ROOT / "serving/front/door.js"
FRONT_DOOR_JS = "/opt/fizbuz/front/door.js"
# The front image's entry: nginx, and its upstream kept equal to Swarm's tasks.
FRONT_TASKS_SH = ROOT / "serving/containers/front_tasks.sh"
# The front image's Debian packages held at the project's pins
# (scripts/debian-packages.txt): njs must match nginx's module ABI.
DEBIAN_PINS = ROOT / "scripts/debian-packages.txt"
FRONT_PINNED = ("nginx", "libnginx-mod-http-js")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def build_base(docker, tag, folder, mirror=DEBIAN_MIRROR):
    """A Debian 12 base image without Docker Hub: debootstrap --variant=minbase
    into `folder`, then docker import (about a minute)."""
    if shutil.which("debootstrap") is None:
        raise LifecycleError("debootstrap is missing (apt-get install debootstrap)")
    Path(folder).mkdir(parents=True, exist_ok=True)
    rootfs = Path(folder) / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    log.info(
        "debootstrap --variant=minbase bookworm from %s (about a minute; log %s)",
        mirror,
        Path(folder) / "debootstrap.log",
    )
    started = time.monotonic()
    with open(Path(folder) / "debootstrap.log", "wb") as output:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=1200,
        )
    if done.returncode != 0:
        raise LifecycleError(f"debootstrap failed; see {Path(folder) / 'debootstrap.log'}")
    slim(rootfs)
    log.info("debootstrap done in %.0f s; importing it as %s", time.monotonic() - started, tag)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    docker.run("import", "--change", 'CMD ["bash"]', "-", tag, stdin=tar.stdout, timeout=600)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    return tag


# What Debian's own -slim images leave out: docs, man pages, translations.
# The dpkg rule keeps later apt-get installs (in the Dockerfiles) from adding them.
SLIM_RULES = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


def slim(rootfs):
    """Drop the bootstrap's package cache, apt lists, docs and translations."""
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/01-fizbuz-slim").write_text(SLIM_RULES)
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/*.bin",
        "var/lib/apt/lists/*_Packages",
        "var/lib/apt/lists/*Release*",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/lintian/*",
    ):
        for item in rootfs.glob(pattern):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in (rootfs / "usr/share/doc").glob("*/*"):
        if item.name != "copyright":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in (rootfs / "usr/share/locale").glob("*"):
        if item.name != "locale.alias":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    # Empty man sections stay: some postinst scripts (openjdk's update-alternatives) link into them.
    for section in range(1, 9):
        (rootfs / f"usr/share/man/man{section}").mkdir(parents=True, exist_ok=True)


def wheels(folder):
    """Download the MMS image's wheels into `folder` (a no-op when they are there)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading the image's Python wheels into %s (pinned by constraints.txt)", folder)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary",
            ":all:",
            "-d",
            str(folder),
            "-r",
            str(REQUIREMENTS),
            "-c",
            str(ROOT / "constraints.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise LifecycleError(f"pip download failed:\n{done.stderr[-2000:]}")


def mms_context(folder, mar=None, wheel_cache=None):
    """The MMS image's build context: Dockerfile, wheels/, app/, model_store/."""
    folder = Path(folder)
    mar = Path(mar or MODEL_STORE / MAR_FILE_NAME)
    if not mar.is_file():
        raise LifecycleError(f"{mar} does not exist: run ./build_mar.sh first")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "app").mkdir(parents=True)
    shutil.copy(HERE / "Dockerfile.mms", folder / "Dockerfile")
    shutil.copy(REQUIREMENTS, folder / "requirements-image.txt")
    cache = Path(wheel_cache or folder.parent / "wheels")
    wheels(cache)
    shutil.copytree(cache, folder / "wheels")
    for name in APP_FILES:
        target = folder / "app" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, target)
    (folder / "model_store").mkdir()
    shutil.copy(mar, folder / "model_store" / MAR_FILE_NAME)
    return folder


def debian_pins(names, pins_file=DEBIAN_PINS):
    """apt-get arguments "name=pin" for `names`, from scripts/debian-packages.txt."""
    pins = {}
    for line in Path(pins_file).read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) >= 2:
            pins[fields[0]] = fields[1]
    missing = [name for name in names if name not in pins]
    if missing:
        raise LifecycleError(f"{', '.join(missing)} have no pin in {pins_file}")
    return [f"{name}={pins[name]}" for name in names]


def front_context(folder):
    """The front image's build context: Dockerfile, the pinned packages'
    apt-get arguments (packages.txt), door.js and front_tasks.sh (the entry)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(HERE / "Dockerfile.front", folder / "Dockerfile")
    (folder / "packages.txt").write_text("\n".join(debian_pins(FRONT_PINNED)) + "\n")
    shutil.copy(DOOR_JS, folder / "door.js")
    (folder / "door.js").chmod(0o644)  # read by the image's unprivileged nginx
    shutil.copy(FRONT_TASKS_SH, folder / "front_tasks.sh")
    (folder / "front_tasks.sh").chmod(0o755)
    return folder


def archive_version(mar):
    """The modelVersion in an archive's manifest."""
    with zipfile.ZipFile(mar) as archive:
        return json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"].get("modelVersion")
