"""The production-profile tier: one set of real loopback servers (``prod_support.prod_stores``) for the session.

Every test here is marked ``slow`` and ``prod_profile`` (``pytest -m prod_profile`` runs the tier alone).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prod_support import ProdStores, prod_stores


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/prod/" in item.nodeid:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.prod_profile)


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdStores]:
    """PostgreSQL, moto S3 and an MLflow server on them, shared by the tier's tests; a test that stops one
    starts it again before it ends."""
    with prod_stores(tmp_path_factory.mktemp("prod_stores")) as running:
        yield running
