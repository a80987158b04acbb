"""Package discovery for setuptools; everything else is in pyproject.toml.

Every package under rnndsl/ is found, never listed by hand (a listed set once left rnndsl.training and
rnndsl.tasks out of the wheel). The grammar lives at the top of the repo (grammars/rnn.lark) and ships
inside the wheel as rnndsl/grammars/rnn.lark, where rnndsl.parse finds it through importlib.resources; the
example specs ship as rnndsl/examples, for the playground's example picker (`rnndsl play`).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["rnndsl", "rnndsl.*"]), "rnndsl.grammars", "rnndsl.examples"],
    package_dir={"rnndsl.grammars": "grammars", "rnndsl.examples": "examples"},
)
