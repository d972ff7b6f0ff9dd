"""Session fixtures of the serving tests (helpers in ``serving_support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serving_support import Api, Server, Stores, quiet, train_and_register


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    home = tmp_path_factory.mktemp("platform_home")
    with quiet():
        return train_and_register(home)


@pytest.fixture(scope="session")
def server(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("logs")
    srv = Server(stores.env(), logs / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api(server: Server, stores: Stores) -> Api:
    return Api(server.url, stores.keys)
