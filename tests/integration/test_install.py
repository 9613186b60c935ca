"""`make install` honours PREFIX and DESTDIR; the installed manual pages
render without warnings; the sample config passes `policyd -t`."""
import os
import re
import subprocess

import pytest

from harness import BUILD

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_make_install_prefix_destdir(tmp_path):
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", "BUILD=" + BUILD, "PREFIX=/opt/pd",
                        "DESTDIR=%s" % dest], cwd=TOP, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        "etc/policyd/policyd.conf.sample",
        "opt/pd/bin/policyctl",
        "opt/pd/sbin/policyd",
        "opt/pd/share/man/man1/policyctl.1",
        "opt/pd/share/man/man5/policyd.conf.5",
        "opt/pd/share/man/man8/policyd.8",
    ]
    assert os.access(dest / "opt/pd/sbin/policyd", os.X_OK)
    r = subprocess.run([str(dest / "opt/pd/sbin/policyd"), "-V"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("policyd ")


@pytest.mark.parametrize("page", ["policyd.8", "policyd.conf.5", "policyctl.1"])
def test_man_pages_render_without_warnings(page):
    path = os.path.join(TOP, "man", page)
    r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80"))
    assert r.returncode == 0
    assert r.stderr == ""
    text = re.sub(".\x08", "", r.stdout)          # undo overstrike bold
    assert "NAME" in text and "SYNOPSIS" in text
