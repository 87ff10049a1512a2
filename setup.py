"""The wheel carries the top-level ``conf/`` and ``sweeps/`` folders as ``rlexp/_bundled/``, so an
installed rlexp composes its configs from any directory (rlexp/runtime/paths.py finds them)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        for name in ("conf", "sweeps"):
            target = Path(self.build_lib, "rlexp", "_bundled", name)
            shutil.copytree(Path(__file__).parent / name, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConfigs})
