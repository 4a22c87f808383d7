"""Where the example profiles and fleets are (host-only): the source tree's examples/ (a clone,
or `pip install -e`), else the copy a wheel installs as data files (pyproject.toml's
data-files) under the installation's prefix: `<prefix>/share/tether/examples`."""
import os
import site
import sys
import sysconfig

MARK = os.path.join("fleets", "mixed.yaml")   # what tells the folder from any other 'examples'


def folder():
    """The examples folder; the source tree's path (missing) if no copy has the mark."""
    tree = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    candidates = [tree]
    for prefix in (sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)):
        if prefix:
            candidates.append(os.path.join(prefix, "share", "tether", "examples"))
    for path in candidates:
        if os.path.isfile(os.path.join(path, MARK)):
            return path
    return tree
