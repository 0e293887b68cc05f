from __future__ import annotations

import pytest
import torch

from mbrnn.runtime.memory import MemoryMeter, _StorageTracker, measure_peak

F32 = 4  # bytes per float32 element


@pytest.mark.parametrize(
    ("dtype", "nbytes"),
    [(torch.float32, 4000), (torch.float64, 8000), (torch.float16, 2000), (torch.int8, 1000)],
)
def test_exact_allocation(dtype: torch.dtype, nbytes: int) -> None:
    with MemoryMeter("cpu") as m:
        a = torch.empty(1000, dtype=dtype)
        assert m.current == nbytes
    assert (m.peak, m.current) == (nbytes, nbytes)
    del a


def test_peak_survives_free() -> None:
    with MemoryMeter() as m:
        a = torch.empty(1000)
        del a
        assert m.current == 0
        b = torch.empty(500)
    assert (m.peak, m.current) == (1000 * F32, 500 * F32)
    del b


def test_measure_peak_sequential_temporaries() -> None:
    def fn() -> None:
        for _ in range(3):
            torch.empty(1000)  # dies at once: never more than one alive

    assert measure_peak(fn) == 1000 * F32
    assert measure_peak(lambda: torch.empty(1000).sum()) == 1000 * F32 + F32


def test_views_and_inplace_add_nothing() -> None:
    with MemoryMeter() as m:
        a = torch.empty(1000)
        views = [a[10:], a.view(10, 100).t(), a.unsqueeze(0).expand(3, -1), a.detach(), a.chunk(4)]
        a.add_(1).mul_(2)
        torch.mul(a, 3, out=a)
    assert m.peak == 1000 * F32
    del a, views


def test_storage_freed_with_its_last_view() -> None:
    with MemoryMeter() as m:
        a = torch.empty(1000)
        v = a[1:]
        del a
        assert m.current == 1000 * F32  # the view keeps the whole storage alive
        del v
        assert m.current == 0


def test_preexisting_tensors_are_not_counted_or_credited() -> None:
    old = torch.empty(1000)
    view_source = torch.empty(1000)
    with MemoryMeter() as m:
        v = view_source[2:].t()  # a view of an older storage is not new memory
        del old  # freed inside the region: not credited, the count stays >= 0
        b = torch.empty(250)
    assert (m.peak, m.current) == (250 * F32, 250 * F32)
    del v, b


def test_resize_and_out_growth_counted() -> None:
    out = torch.empty(0)
    x = torch.ones(1000)
    with MemoryMeter() as m:
        a = torch.empty(0)
        a.resize_(500)  # a region storage grown in place
        torch.add(x, x, out=out)  # an older storage grown by an out= op
    assert m.current == 500 * F32 + 1000 * F32
    del a


def test_tensor_constructor_and_meta_device() -> None:
    with MemoryMeter() as m:
        a = torch.tensor([1.0, 2.0, 3.0])  # built outside the dispatcher, lifted
        meta = torch.empty(10**6, device="meta")  # no memory behind it
    assert m.peak == 3 * F32
    del a, meta


def test_backward_allocations_are_tracked() -> None:
    x = torch.randn(1000, requires_grad=True)
    with MemoryMeter() as m:
        loss = (x * 2).sum()
        before = m.current
        loss.backward()
        assert x.grad is not None
        # the gradient is allocated by the autograd engine during backward
        assert m.current - before == x.grad.untyped_storage().nbytes() == 1000 * F32
    g = torch.randn(1000, requires_grad=True)
    with MemoryMeter() as m2:
        (grad,) = torch.autograd.grad((g * 3).sum(), g)
    assert m2.current == grad.untyped_storage().nbytes() == 1000 * F32  # the loss is gone
    del loss


def test_matmul_forward_backward_counts_saved_activations() -> None:
    X = torch.randn(32, 100)
    W = torch.randn(100, 100, requires_grad=True)

    def step() -> None:
        h = torch.tanh(X @ W)  # tanh saves its (32, 100) output for backward
        h.sum().backward()

    peak = measure_peak(step)
    activations = 32 * 100 * F32
    grad_w = 100 * 100 * F32
    # live at the end of backward: h (saved), its gradient, and W.grad
    assert peak >= 2 * activations + grad_w
    assert peak <= 3 * activations + grad_w + 64


def test_nested_meters() -> None:
    with MemoryMeter() as outer:
        a = torch.empty(1000)
        with MemoryMeter() as inner:
            b = torch.empty(500)
            del b
            c = torch.empty(100)
        assert (inner.peak, inner.current) == (500 * F32, 100 * F32)
        assert outer.current == 1100 * F32
    assert (outer.peak, outer.current) == (1500 * F32, 1100 * F32)
    del a, c


def test_meter_reuse_and_reentry() -> None:
    m = MemoryMeter()
    with m:
        a = torch.empty(1000)
    with m:
        b = torch.empty(10)
        with pytest.raises(RuntimeError, match="already measuring"), m:
            pass
    assert (m.peak, m.current) == (10 * F32, 10 * F32)
    del a, b


def test_exception_inside_region_stops_tracking() -> None:
    m = MemoryMeter()
    with pytest.raises(KeyError), m:
        a = torch.empty(10)
        raise KeyError("boom")
    b = torch.empty(1000)  # after the region: not seen
    assert (m.peak, m.current) == (10 * F32, 10 * F32)
    del a, b


def test_read_before_use_and_repr() -> None:
    m = MemoryMeter("cpu")
    assert repr(m) == "MemoryMeter(device='cpu')"
    with pytest.raises(RuntimeError, match="before the meter measured"):
        _ = m.peak
    with m:
        a = torch.empty(1)
    assert repr(m) == "MemoryMeter(device='cpu', peak=4, current=4)"
    del a


def test_default_device() -> None:
    assert MemoryMeter().device == torch.get_default_device()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"device": 3}, TypeError, "device must be a torch.device, a str or None, got int"),
        ({"device": "nonsense"}, ValueError, "device='nonsense'"),
    ],
)
def test_meter_validation(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        MemoryMeter(**kwargs)  # type: ignore[arg-type]


def test_measure_peak_validation() -> None:
    with pytest.raises(TypeError, match="fn must be a callable"):
        measure_peak(3)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_unavailable_is_an_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        MemoryMeter("cuda")


def test_tracker_counts_every_device_when_unfiltered() -> None:
    with _StorageTracker() as t:
        a = torch.empty(1000)
        assert t.owns(a.untyped_storage())
    t.close()
    assert t.peak == 1000 * F32
    assert not t.owns(a.untyped_storage())  # closed trackers follow nothing


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_exact_and_nested() -> None:
    mib = 1 << 20
    torch.cuda.synchronize()
    with MemoryMeter("cuda") as outer:
        a = torch.empty(mib // F32, device="cuda")
        with MemoryMeter("cuda") as inner:
            b = torch.empty(2 * mib // F32, device="cuda")
            del b
        c = torch.empty(mib // F32, device="cuda")  # after inner reset the allocator's peak
    assert (inner.peak, inner.current) == (2 * mib, 0)
    assert (outer.peak, outer.current) == (3 * mib, 2 * mib)
    del a, c


@pytest.mark.gpu
@needs_cuda
def test_cuda_matches_storage_tracker() -> None:
    X = torch.randn(256, 256, device="cuda")
    W = torch.randn(256, 256, device="cuda", requires_grad=True)
    (X @ W).tanh().sum().backward()  # warm up: cuBLAS workspaces are allocated once
    W.grad = None

    def step() -> None:
        (X @ W).tanh().sum().backward()
        W.grad = None

    on_cuda = measure_peak(step, device="cuda")
    with _StorageTracker("cuda") as t:
        step()
    t.close()
    assert on_cuda >= 3 * 256 * 256 * F32
    # the allocator rounds to 512-byte blocks and sees kernels' scratch memory
    assert abs(on_cuda - t.peak) <= 64 * 1024
