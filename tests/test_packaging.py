"""
Packaging tests: the twistd plugin must be visible both in the development
environment and in a fresh install of the built wheel.

Written as trial TestCases with blocking subprocess calls so that both
C{trial tests} and C{pytest tests} run them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parent.parent

# Everything but these is copied to the scratch source tree the wheel is
# built from (so the build never writes build/ or *.egg-info into the
# working tree, and stale build/lib contents cannot leak into the wheel).
_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "dropin.cache",
    "_trial_temp*",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
)

PLUGIN_FILE = "twisted/plugins/mcpbridge_plugin.py"

LIST_PLUGINS = (
    "from twisted.plugin import getPlugins\n"
    "from twisted.application.service import IServiceMaker\n"
    "print('\\n'.join(sorted(p.tapname for p in getPlugins(IServiceMaker))))\n"
)


def _cleanEnv() -> dict[str, str]:
    """
    The environment for child processes that must see only the scratch venv:
    no PYTHONPATH or active virtualenv leaking in from the test runner.
    """
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    args: list[str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """
    Run C{args}, failing with its output if it exits non-zero.
    """
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_cleanEnv(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"command failed with exit {result.returncode}: {args}\n"
            f"--- output ---\n{result.stdout}"
        )
    return result


def _buildAndInstall(workdir: Path) -> tuple[Path, Path]:
    """
    Build the wheel from a scratch copy of the source tree and install it,
    with its dependencies, into a fresh venv.  Return (wheel, venv python).
    """
    src = workdir / "src"
    shutil.copytree(ROOT, src, ignore=_COPY_IGNORE, symlinks=True)
    dist = workdir / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)],
        cwd=workdir,
        timeout=600,
    )
    wheels = sorted(dist.glob("mcpbridge-*.whl"))
    if len(wheels) != 1:
        raise AssertionError(f"expected one mcpbridge wheel, got {wheels}")
    wheel = wheels[0]

    venv = workdir / "venv"
    _run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        cwd=workdir,
        timeout=120,
    )
    venvPython = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venvPython),
            "install",
            "--quiet",
            str(wheel),
        ],
        cwd=workdir,
        timeout=900,
    )
    return wheel, venvPython


class DevelopmentEnvironmentPluginTests(TestCase):
    """
    The environment the tests run in exposes the twistd plugin.
    """

    def test_getPluginsFindsMcpbridge(self) -> None:
        """
        C{getPlugins(IServiceMaker)} in the current environment yields a
        service maker whose tapname is C{mcpbridge}: the plugin dropin is
        importable and discoverable here, so C{twistd mcpbridge} can work.

        Under the test runners the project root is on C{sys.path}, so this
        also passes through the source tree's own C{twisted/plugins}; the
        install itself is checked by tests/run (C{twistd --help} run from /)
        and, for the wheel, by L{WheelInstallTests}.
        """
        tapnames = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("mcpbridge", tapnames)


class WheelInstallTests(TestCase):
    """
    The built wheel, installed with its dependencies into a brand new virtual
    environment, provides a working twistd plugin.

    How: the source tree is copied (without .venv, .git, node_modules, build
    output) to a scratch directory and C{python -m build --wheel} builds the
    wheel there, in build's usual isolated build environment, exactly as a
    release would.  A fresh venv is made with C{--without-pip} (fast), and
    the current environment's pip installs the wheel into it via
    C{pip --python <venv python> install <wheel>}, resolving the wheel's
    declared dependencies from the package index as a user's install would
    (PyPI is reachable on developer machines and in CI; pip's cache makes
    repeated runs quick).  Installing with dependencies, rather than reusing
    this environment's packages, is what proves that C{install_requires} is
    enough for C{twistd mcpbridge} to work.

    Every check runs from the scratch directory with a clean environment, so
    the source checkout's own C{twisted/plugins} directory cannot be found
    through the current directory or PYTHONPATH.
    """

    # Built once per process and shared by this class's tests.  trial does
    # not run setUpClass, so this is a lazy cache filled by the first setUp;
    # the scratch directory is removed at interpreter exit.
    _built: tuple[Path, Path, Path] | BaseException | None = None

    def setUp(self) -> None:
        cls = type(self)
        if cls._built is None:
            workdir = Path(tempfile.mkdtemp(prefix="mcpbridge-packaging-"))
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
            try:
                cls._built = (workdir, *_buildAndInstall(workdir))
            except BaseException as e:
                cls._built = e
        if isinstance(cls._built, BaseException):
            raise AssertionError(
                f"building or installing the wheel failed: {cls._built}"
            ) from cls._built
        self.workdir, self.wheel, self.venvPython = cls._built
        self.venvBin = self.venvPython.parent

    def test_wheelContents(self) -> None:
        """
        The wheel ships the plugin dropin and the PEP 561 marker, and does NOT
        ship C{twisted/__init__.py} or C{twisted/plugins/__init__.py}: either
        would overwrite Twisted's own files on install and break Twisted
        (twisted.plugins must stay Twisted's package, extended by dropins).
        """
        with zipfile.ZipFile(self.wheel) as zf:
            names = set(zf.namelist())
        self.assertIn(PLUGIN_FILE, names)
        self.assertIn("mcpbridge/py.typed", names)
        self.assertIn("mcpbridge/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        stray = sorted(
            n
            for n in names
            if n.startswith("twisted/")
            and n != PLUGIN_FILE
            and not n.startswith("twisted/plugins/__pycache__/")
        )
        self.assertEqual(stray, [], "the wheel must add only the dropin to twisted/")

    def test_twistdHelpListsPlugin(self) -> None:
        """
        C{twistd --help} run from the fresh venv lists the C{mcpbridge}
        subcommand: the installed wheel's dropin lands where twistd looks.
        """
        result = _run(
            [str(self.venvBin / "twistd"), "--help"], cwd=self.workdir, timeout=120
        )
        commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()]
        self.assertIn("mcpbridge", commands, result.stdout)

    def test_getPluginsInFreshVenv(self) -> None:
        """
        C{getPlugins(IServiceMaker)} in the fresh venv yields a plugin with
        tapname C{mcpbridge}, and that venv's mcpbridge package is the one
        installed from the wheel (not the source checkout).
        """
        result = _run(
            [str(self.venvPython), "-c", LIST_PLUGINS], cwd=self.workdir, timeout=120
        )
        self.assertIn("mcpbridge", result.stdout.split())
        where = _run(
            [
                str(self.venvPython),
                "-c",
                "import mcpbridge, twisted.plugins.mcpbridge_plugin as p;"
                "print(mcpbridge.__file__); print(p.__file__)",
            ],
            cwd=self.workdir,
            timeout=120,
        )
        for path in where.stdout.split():
            self.assertTrue(
                Path(path).resolve().is_relative_to(self.workdir / "venv"),
                f"{path} is not inside the fresh venv",
            )
