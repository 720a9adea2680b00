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
    include_package_data=True,
)
