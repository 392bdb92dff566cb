from setuptools import find_packages, setup

setup(
    name="upnode",
    version="0.1.0",
    description=(
        "Keep a dnode connection alive, re-establish state between reconnects "
        "and queue calls while the link is down: Node's upnode on Twisted."
    ),
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(exclude=["bench"]) + ["twisted.plugins"],
    package_data={"upnode": ["py.typed"], "twisted": ["plugins/upnode_plugin.py"]},
    install_requires=[
        "twisted>=23.8",
        "pyOpenSSL>=22.1",
        "service-identity>=23.1",
        "attrs>=21.3",
        "zope.interface>=5",
        "pyee>=12",
        "orjson>=3.9",
    ],
    extras_require={"test": ["hypothesis>=6", "cryptography>=38"], "metrics": ["prometheus_client>=0.17"]},
    entry_points={"console_scripts": ["upnode=upnode._cli:main"]},
)
