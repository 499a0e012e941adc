"""pytest fixtures for the Kubernetes API test server (imported by the test modules that use it)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from .harness import KubeAPI, make_kubeapi


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the Kubernetes API test server makes its pods with unshare and needs root")


@pytest.fixture(scope="module")
def kubeapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A running test cluster shared by a module's tests (pods are not changed by them)."""
    _need_root()
    api = make_kubeapi(tmp_path_factory.mktemp("kubeapi"))
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def fresh_kubeapi(tmp_path: Path) -> Iterator[KubeAPI]:
    """A test cluster of its own, for tests that delete pods or restart the server."""
    _need_root()
    api = make_kubeapi(tmp_path / "kubeapi")
    api.start()
    try:
        yield api
    finally:
        api.stop()
