"""A test file's selected tests run again in a fresh Python process, for switches the extension
reads once per process (MBV3_Q8_NO_VBMI)."""
import os
import subprocess
import sys

import mbv3_fast


def assert_pytest_passes(test_file, select, **env):
    """Runs ``pytest test_file -k select`` with ``env`` added, on the build under test (wherever
    this process imported mbv3_fast from); fails with the child's output unless it passed."""
    root = os.path.dirname(os.path.dirname(mbv3_fast.__file__))
    env = dict(os.environ, **env, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider", "-k", select],
                       env=env, capture_output=True, text=True, cwd=os.path.dirname(test_file))
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-4000:] + r.stderr[-4000:]
