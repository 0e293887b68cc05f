"""Peak-memory meter for CPU and CUDA.

The planner (Gruslys et al., 2016) promises a peak; this module measures one, so the
executor's peak can be tested against ``mbrnn.plan.simulate``. Both devices report the
same quantity: bytes of tensor memory allocated *inside* a region, above what was live
when it began, forward and backward alike.

- CUDA reads the caching allocator's counters (``torch.cuda.max_memory_allocated``).
- Every other device (CPU above all) uses a :class:`~torch.utils._python_dispatch.TorchDispatchMode`
  that follows live tensor storages; see NOTE [ Tracking memory with a dispatch mode ].
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["MemoryMeter", "measure_peak"]


# NOTE [ Tracking memory with a dispatch mode ]
# Without a GPU there is no allocator to ask, so we watch every aten op instead. A
# ``TorchDispatchMode`` sees each op's outputs; each output tensor's untyped storage is
# keyed by its ``StorageImpl`` address (``storage._cdata``) so that views and repeated
# outputs count once:
#
#   * a storage that is none of the op's inputs' storages is a new allocation: add its
#     ``nbytes`` and keep a ``weakref.ref`` to the storage whose callback subtracts them;
#   * a storage that is one of the inputs' (views, in-place and ``out=`` ops) adds
#     nothing, unless the op grew it (``resize_``): then the growth is added;
#   * ``aten.lift_fresh`` (``torch.tensor(...)``) returns its input, which torch built
#     outside the dispatcher, so its storage counts as new.
#
# Since torch 2.0 a storage's Python object is preserved for as long as its C++
# ``StorageImpl`` lives (``t.untyped_storage() is t.untyped_storage()``), so the weakref
# callback runs exactly when the memory is released: when the last tensor, view, or
# autograd ``SavedVariable`` holding it dies. ``tests/test_memory.py`` checks this.
#
# Backward is seen too. On CPU the autograd engine runs backward on the thread that
# called ``backward()``; on accelerators its worker threads restore the caller's
# ``at::ThreadLocalState``, which holds the dispatch-mode stack. Ops run on threads
# the region starts itself are not seen.
#
# Caveats. Only storages are counted: scratch memory a kernel allocates and frees
# inside one op (not a tensor output) is invisible, as is non-tensor memory. A storage
# that existed before the region and is freed inside it is not credited, so the count
# never goes below zero; there the CUDA figure (which nets such frees) can be lower.
# Storages that outlive the region stay in ``current``; after the region nothing more
# is followed. Meta tensors have no memory and are ignored.


_LIFT_FRESH = frozenset({torch.ops.aten.lift_fresh.default})


def _storage_of(t: torch.Tensor) -> torch.UntypedStorage | None:
    """``t``'s untyped storage, or ``None`` for tensors without one (sparse, meta)."""
    if t.layout is not torch.strided or t.device.type == "meta":
        return None
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # wrapper subclasses, functional tensors
        return None


@dataclass
class _Owned:
    """Bytes this tracker attributes to one live storage."""

    base: int  # nbytes the storage had before the region touched it (0 if new)
    counted: int  # bytes currently counted for it
    ref: weakref.ref[torch.UntypedStorage]


class _StorageTracker(TorchDispatchMode):
    """Follows storages allocated while the mode is active.

    Args:
        device_type: count only storages on this device type (``"cpu"``); ``None``
            counts every device.
    """

    def __init__(self, device_type: str | None = None) -> None:
        super().__init__()
        self._device_type = device_type
        self._lock = threading.RLock()
        self._owned: dict[int, _Owned] = {}
        self.current = 0
        self.peak = 0

    def owns(self, storage: torch.UntypedStorage) -> bool:
        """Whether ``storage`` was allocated (or grown) while this tracker was active."""
        with self._lock:
            return storage._cdata in self._owned

    def close(self) -> None:
        """Stop following storages; ``current`` and ``peak`` keep their last values."""
        with self._lock:
            self._owned.clear()  # dropping the weakrefs cancels their callbacks

    def _counts(self, t: object) -> torch.UntypedStorage | None:
        if not isinstance(t, torch.Tensor):
            return None
        if self._device_type is not None and t.device.type != self._device_type:
            return None
        return _storage_of(t)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        before: dict[int, int] = {}  # input storages: key -> nbytes before the op
        if func not in _LIFT_FRESH:
            for t in tree_leaves((args, kwargs)):
                s = self._counts(t)
                if s is not None:
                    before[s._cdata] = s.nbytes()
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            s = self._counts(t)
            if s is not None:
                self._account(s, before.get(s._cdata))
        return out

    def _account(self, storage: torch.UntypedStorage, nbytes_before: int | None) -> None:
        key = storage._cdata
        nbytes = storage.nbytes()
        with self._lock:
            owned = self._owned.get(key)
            if owned is not None:  # ours already; an in-place op may have resized it
                counted = max(nbytes - owned.base, 0)
                self.current += counted - owned.counted
                owned.counted = counted
            elif nbytes_before is None:  # a fresh allocation
                self._follow(storage, key, base=0, counted=nbytes)
            elif nbytes > nbytes_before:  # an older storage grown in place
                self._follow(storage, key, base=nbytes_before, counted=nbytes - nbytes_before)
            self.peak = max(self.peak, self.current)

    def _follow(self, storage: torch.UntypedStorage, key: int, *, base: int, counted: int) -> None:
        ref = weakref.ref(storage, functools.partial(self._release, key))
        self._owned[key] = _Owned(base=base, counted=counted, ref=ref)
        self.current += counted

    def _release(self, key: int, _ref: object) -> None:
        with self._lock:
            owned = self._owned.pop(key, None)
            if owned is not None:
                self.current -= owned.counted


def _resolve_device(device: object) -> torch.device:
    if device is None:
        dev = torch.get_default_device()
    elif isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(
                f"MemoryMeter: device={device!r} is not a device torch knows; "
                "pass e.g. 'cpu' or 'cuda:0'"
            ) from e
    else:
        raise TypeError(
            f"MemoryMeter: device must be a torch.device, a str or None, got {type(device).__name__}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"MemoryMeter: device={str(dev)!r} but CUDA is not available; "
                "pass device='cpu' or run on a machine with a CUDA device"
            )
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


# Meters active on each CUDA device, outermost first. ``reset_peak_memory_stats`` is
# global per device, so a meter entering inside another first folds the allocator's
# peak so far into every active meter.
_CUDA_ACTIVE: dict[int, list[MemoryMeter]] = {}
_CUDA_LOCK = threading.Lock()


class MemoryMeter:
    r"""Measures the peak tensor memory allocated inside a ``with`` block.

    ``peak`` and ``current`` are bytes above what was live on entry, counting every
    allocation on ``device`` made while the block runs, ``backward()`` included. On
    CUDA they come from the caching allocator (``torch.cuda.max_memory_allocated``
    and ``memory_allocated``, after a synchronize); elsewhere from a dispatch mode
    that follows tensor storages, counting each storage once however many views it
    has (see NOTE [ Tracking memory with a dispatch mode ] in this module).

    Meters nest, and a meter may be reused for a new block after the last one ended.
    Only ops on the entering thread (and, for backward, autograd's threads) are seen.

    Args:
        device: the device to measure. Default: ``torch.get_default_device()``.
            A CUDA device without an index means the current CUDA device.

    Attributes:
        peak: the highest ``current`` seen so far (``>= 0``); frozen on exit.
        current: bytes allocated in the block and still live; frozen on exit. On CPU
            memory that existed before the block and was freed inside it is not
            credited, so ``current >= 0``; on CUDA such frees are netted and
            ``current`` may be negative.

    Example::

        >>> with MemoryMeter("cpu") as m:
        ...     a = torch.empty(1000)  # 4000 bytes
        ...     del a
        ...     b = torch.empty(500)  # 2000 bytes
        >>> m.peak, m.current
        (4000, 2000)
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = _resolve_device(device)
        self._tracker: _StorageTracker | None = None
        self._active = False
        self._used = False
        self._start = 0
        self._peak_abs = 0  # CUDA: the allocator's highest reading folded in so far
        self._peak = 0
        self._current = 0

    @property
    def _is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def __enter__(self) -> MemoryMeter:
        if self._active:
            raise RuntimeError(
                "MemoryMeter: this meter is already measuring a block; "
                "use a second MemoryMeter to measure a nested block"
            )
        self._peak = self._current = 0
        if self._is_cuda:
            torch.cuda.synchronize(self.device)
            with _CUDA_LOCK:
                high = torch.cuda.max_memory_allocated(self.device)
                active = _CUDA_ACTIVE.setdefault(self._index, [])
                for meter in active:
                    meter._peak_abs = max(meter._peak_abs, high)
                torch.cuda.reset_peak_memory_stats(self.device)
                self._start = self._peak_abs = torch.cuda.memory_allocated(self.device)
                active.append(self)
        else:
            self._tracker = _StorageTracker(self.device.type)
            self._tracker.__enter__()
        self._active = self._used = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        if self._is_cuda:
            torch.cuda.synchronize(self.device)
            self._peak, self._current = self._cuda_readings()
            with _CUDA_LOCK:
                active = _CUDA_ACTIVE.get(self._index, [])
                if self in active:
                    active.remove(self)
        else:
            tracker = self._tracker
            if tracker is not None:  # always: __enter__ set it
                tracker.__exit__(exc_type, exc, tb)
                tracker.close()
                self._peak, self._current = tracker.peak, tracker.current
            self._tracker = None
        self._active = False

    @property
    def _index(self) -> int:
        index = self.device.index
        return 0 if index is None else index

    def _cuda_readings(self) -> tuple[int, int]:
        high = max(self._peak_abs, torch.cuda.max_memory_allocated(self.device))
        return high - self._start, torch.cuda.memory_allocated(self.device) - self._start

    def _check_used(self, name: str) -> None:
        if not self._used:
            raise RuntimeError(
                f"MemoryMeter: {name} is read before the meter measured anything; "
                "read it inside or after `with MemoryMeter() as m: ...`"
            )

    @property
    def peak(self) -> int:
        """Peak bytes allocated in the block above the level on entry."""
        self._check_used("peak")
        if not self._active:
            return self._peak
        if self._tracker is not None:
            return self._tracker.peak
        return self._cuda_readings()[0]

    @property
    def current(self) -> int:
        """Bytes allocated in the block and still live (frozen on exit)."""
        self._check_used("current")
        if not self._active:
            return self._current
        if self._tracker is not None:
            return self._tracker.current
        return self._cuda_readings()[1]

    def __repr__(self) -> str:
        if not self._used:
            return f"MemoryMeter(device={str(self.device)!r})"
        return f"MemoryMeter(device={str(self.device)!r}, peak={self.peak}, current={self.current})"


def measure_peak(fn: Callable[[], object], *, device: torch.device | str | None = None) -> int:
    """Peak bytes of tensor memory newly allocated while ``fn()`` runs.

    A thin wrapper over :class:`MemoryMeter`: forward and backward (``fn`` may call
    ``.backward()``) on ``device`` are counted, above what was live when ``fn`` began.
    ``fn``'s return value is dropped before the meter stops, so what it returns counts
    only while it is live.

    Args:
        fn: a callable taking no arguments.
        device: the device to measure. Default: ``torch.get_default_device()``.

    Example::

        >>> measure_peak(lambda: torch.empty(1000).sum())
        4004
    """
    if not callable(fn):
        raise TypeError(
            f"measure_peak: fn must be a callable taking no arguments, got {type(fn).__name__}; "
            "wrap the work in a lambda or a function"
        )
    with MemoryMeter(device) as meter:
        fn()
    return meter.peak
