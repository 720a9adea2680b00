"""LightFusionRec: cross-domain (movie -> book) recommendations on Spark."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def pins(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


setup(
    name="lightfusionrec",
    version="0.1.0",
    description="LightFusionRec (arXiv 2410.15656) as a distributed batch scoring system on Apache Spark",
    python_requires=">=3.11",
    packages=find_packages(include=["lfr", "lfr.*", "udfs", "udfs.*"]),
    install_requires=pins("requirements.txt"),
    extras_require={"dev": pins("requirements-dev.txt")},
    # lfr/lfr.yaml is conf/lfr.yaml (a symlink; the wheel holds a copy): the default config of an
    # installed lfr (lfr.config.default_conf_file).
    package_data={"lfr": ["lfr.yaml"]},
    include_package_data=True,
)
