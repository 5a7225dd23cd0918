"""pytest settings for the whole tree: tests/ and the chapter and exercise notebooks that nbval runs."""

import pytest

# The test modules that run the sandboxed grader look for sandbox processes machine-wide, so under
# pytest-xdist they must never run beside each other.
SANDBOX_MODULES = {"tests/test_grading.py", "tests/test_nbgrader.py"}


def scope_of(nodeid):
    """What one pytest-xdist worker runs whole and in order: a notebook (its cells share one kernel), a
    test module (its module fixtures are built once), or all of the sandboxed-grader modules."""
    path = nodeid.split("::")[0]
    return "sandboxed-grader" if path in SANDBOX_MODULES else path


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which `make test` runs with -n 2
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return scope_of(nodeid)

    return BookScheduling(config, log)
