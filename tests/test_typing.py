"""
The package type-checks under mypy with the zope plugin (the settings in
pyproject.toml: untyped definitions are errors).
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from .support import ROOT


class TypingTests(SynchronousTestCase):
    def test_mypy(self) -> None:
        """
        mypy reports no error in mcpbridge/.
        """
        try:
            import mypy  # noqa: F401
        except ImportError:
            raise SkipTest("mypy is not installed (it comes with the [test] extras)")
        out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
