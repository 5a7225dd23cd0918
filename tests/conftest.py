"""Settings and fixtures shared by the test modules."""

import os
import shutil
import tempfile

import pytest

# The grading fixtures are submissions for `t5edu grade` to run (some deliberately broken), not book pages.
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a shared CPU does not oversubscribe."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    """One model cache per test session, fresh: test_demo trains the book's model (Chapter 07's demo recipe)
    once, and the chapters that nbval runs later in the same session load it from there instead of training
    it again. The notebooks' kernels inherit the variable. Nothing from an earlier session is reused."""
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: it inherited the controller's folder
        return
    config._t5edu_cache = tempfile.mkdtemp(prefix="t5edu-test-cache-")
    os.environ["T5EDU_CACHE"] = config._t5edu_cache


def pytest_unconfigure(config):
    folder = getattr(config, "_t5edu_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)

