"""How a batch's fits are laid out on the devices (static): ``Layout`` and the
default for a platform and a problem."""

from __future__ import annotations

from typing import NamedTuple

from jaxfit.core import lanes


class Layout(NamedTuple):
    """How a chunk is laid out (static)."""

    devices: int
    blocks: int
    block_size: int
    refill: int = 0
    """0: each block of ``block_size`` fits runs until its slowest fit stops (``blocks``).
    ``k > 0``: a device's fits stream through ``block_size`` lanes, and whenever ``k``
    lanes have stopped they take the next ``k`` fits (``streamed``)."""
    on_lanes: bool = False
    """The fits of a block as a struct of arrays on the vector lanes (``vector``), not
    a ``vmap`` of the single-fit step (``vmapped``)."""

    @property
    def chunk(self) -> int:
        """Fits per compiled call."""
        return self.devices * self.blocks * self.block_size


def default_layout(
    platform: str, devices: int, block_size: int | None = None, trainable: int = 1, optimizer: str = "sgd"
) -> Layout:
    """Block size and blocks per call that suit ``platform`` and the fits.

    On CPU, fits of one parameter (a convex problem) take similar step counts: blocks
    of 16384, each running until its slowest fit stops, amortise the loop best. Fits of
    several parameters vary widely in step count, so they stream through 128 lanes,
    refilled 8 at a time, 8192 fits per device per call; Levenberg–Marquardt's stream
    on the vector lanes (``core.lanes``), 256 lanes refilled 64 at a time (W4 / W5
    refilled 32, 64, 128 at a time: 50 / 42 / 44 ms and 343 / 330 / 369 ms; W5 through
    128/256/512/1024 lanes here: 464k/498k/493k/423k fits/s; in blocks of 1024 that
    wait for their slowest fit, 244k). A GPU wants far wider blocks to fill its cores.
    """
    if platform == "cpu":
        if trainable == 1:
            return Layout(devices, 8, block_size or 16384)
        if lanes.suits(optimizer, trainable):
            return Layout(devices, 32, lanes.width(block_size or 256), refill=64, on_lanes=True)
        return Layout(devices, 64, block_size or 128, refill=8)
    # on a GPU each loop iteration is a few kernel launches: one wide block per call
    # keeps the launches few
    if lanes.suits(optimizer, trainable):
        return Layout(devices, 1, lanes.width(block_size or 1 << 20), on_lanes=True)
    return Layout(devices, 1, block_size or (1 << 22 if trainable == 1 else 1 << 20))
