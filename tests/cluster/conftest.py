"""Lets a module know which of its tests failed (it lists them in ``FAILED_TESTS``)."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    failed = getattr(item.module, "FAILED_TESTS", None)
    if failed is not None and outcome.get_result().failed:
        failed.append(item.name)
