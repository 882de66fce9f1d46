"""The docs site builds with `mkdocs build --strict` (mkdocs.yml): a broken link,
a missing anchor or a page outside the nav's files fails the test command."""

import os
import subprocess
import sys
from pathlib import Path

from fizbuz.contract import ROOT


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [str(mkdocs), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_site_builds_strict(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site/index.html").is_file()
    assert (tmp_path / "site/settings/index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    # The check can fail: the same site with one page linking to a page that is not there.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0].replace("docs_dir: docs", f"docs_dir: {docs}")
    )
    result = build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stdout + result.stderr


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 15_000
    for page in ("docs/walkthrough.md", "docs/settings.md", "docs/testing.md", "docs/v2.md"):
        assert f"]({page})" in readme and (ROOT / page).is_file(), page
