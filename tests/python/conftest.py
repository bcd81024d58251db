"""The servers the tests talk to: KVPACK_TARGETS, set by tests/sharding/with_servers.sh."""
import os
import uuid

import pytest


@pytest.fixture(scope="session")
def targets():
    value = os.environ.get("KVPACK_TARGETS")
    if not value:
        pytest.fail("KVPACK_TARGETS is not set: run through tests/python/run_pytest.sh")
    return value.split(",")


@pytest.fixture()
def ns():
    """A namespace of the test's own."""
    return "py-" + uuid.uuid4().hex[:12]
