"""Settings and fixtures shared by the test modules."""

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
