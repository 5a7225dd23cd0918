"""pytest settings for the whole tree: tests/ and the chapter and exercise notebooks that nbval runs."""

import pytest

# The test modules that run the sandboxed grader look for sandbox processes machine-wide, so under
# pytest-xdist they must never run beside each other.
SANDBOX_MODULES = {"tests/test_grading.py", "tests/test_nbgrader.py"}
# The book's model is trained once per session (tests/conftest.py): first by test_demo, in one worker,
# while the other goes on; the chapters that load it come last, so that they find it instead of waiting.
TRAINS_FIRST = ("tests/test_demo.py", "chapters/09_finetune.ipynb")
LOADS_LAST = ("chapters/07_train.ipynb", "chapters/08_generate.ipynb")


def scope_of(nodeid):
    """What one pytest-xdist worker runs whole and in order: a notebook (its cells share one kernel), a
    test module (its module fixtures are built once), or all of the sandboxed-grader modules."""
    path = nodeid.split("::")[0]
    return "sandboxed-grader" if path in SANDBOX_MODULES else path


def scope_order(scope, size):
    """Sort key of the work queue: what trains first, what loads last, the rest largest first."""
    return (0 if scope in TRAINS_FIRST else 2 if scope in LOADS_LAST else 1, -size)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which `make test` runs with -n 2
def pytest_xdist_make_scheduler(config, log):
    # also for plain `-n 2` (dist "load"), which would otherwise split a notebook's cells between kernels
    if config.getvalue("dist") not in ("load", "loadscope"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BookScheduling(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid):
            return scope_of(nodeid)

        def _assign_work_unit(self, node):
            if not self.ordered:  # the queue is complete before the first unit is handed out
                queue = sorted(self.workqueue.items(), key=lambda item: scope_order(item[0], len(item[1])))
                self.workqueue.clear()
                self.workqueue.update(queue)
                self.ordered = True
            super()._assign_work_unit(node)

    return BookScheduling(config, log)
