"""Ships the repo's top-level conf/ inside the wheel as ``ocrft/conf``.

conf/ stays at the top of the repo (where users and docs look for it); an installed ocrft
finds it beside its own modules (ocrft/conf_dir.py). Everything else is in pyproject.toml.
"""

from pathlib import Path
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    """build_py that also copies conf/**/*.yaml to <build_lib>/ocrft/conf."""

    def run(self) -> None:
        super().run()
        # An editable install runs ocrft from the repo, where conf/ is found in place.
        if self.editable_mode:
            return
        for src in sorted(CONF.rglob("*.yaml")):
            dst = Path(self.build_lib) / "ocrft" / "conf" / src.relative_to(CONF)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        conf = [str(Path(self.build_lib) / "ocrft" / "conf" / p.relative_to(CONF)) for p in CONF.rglob("*.yaml")]
        return [*super().get_outputs(include_bytecode), *([] if self.editable_mode else conf)]


setup(cmdclass={"build_py": BuildPyWithConf})
