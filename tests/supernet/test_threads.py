"""sned.supernet.threads: a scoped torch thread count, restored however the block ends."""

import pytest

torch = pytest.importorskip("torch")

from sned.supernet.threads import torch_threads  # noqa: E402


@pytest.fixture
def two_threads():
    """The test starts at 2 threads (whatever the process had is put back after it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_count_holds_inside_and_is_restored_after(two_threads):
    with torch_threads(1) as inside:
        assert inside == 1 and torch.get_num_threads() == 1
        with torch_threads(3):  # nested scopes unwind in order
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_restored_after_an_exception_and_after_a_bare_set_inside(two_threads):
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    with torch_threads(None) as inside:
        assert inside == 2
        torch.set_num_threads(1)  # what a library call might do
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_counts_are_refused_before_changing_anything(two_threads, bad):
    with pytest.raises(ValueError, match="positive integer"), torch_threads(bad):
        pass
    assert torch.get_num_threads() == 2
