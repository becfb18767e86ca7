"""Frames kept on disk between the passes of a streamed fusion (surgifuse.frame_spill)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from surgifuse import frame_spill, streaming
from surgifuse.engines.classical import ClassicalEngine
from surgifuse.frame_spill import FrameSpill
from surgifuse.synth import generate_stack


def test_frames_come_back_as_written_in_any_order(tmp_path, rng):
    frames = [rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16) for _ in range(4)]
    with FrameSpill.open(4, (12, 10, 3), np.uint16, folder=tmp_path) as spill:
        for i in (2, 0, 3):
            spill.write(i, frames[i])
        assert not spill.has(1)
        for i in (3, 0, 2):
            np.testing.assert_array_equal(spill.read(i), frames[i])
        with pytest.raises(KeyError, match="frame 1"):
            spill.read(1)
        with pytest.raises(ValueError, match="bytes"):
            spill.write(1, frames[1][:6])
    assert os.listdir(tmp_path) == []  # unlinked at once: nothing left behind


def test_no_spill_where_it_would_not_fit_or_would_live_in_memory(tmp_path, monkeypatch):
    assert FrameSpill.open(10, (100, 100, 3), np.uint8, folder=tmp_path, limit=10 * 30000 - 1) is None
    assert FrameSpill.open(2 ** 20, (4096, 4096, 3), np.uint16, folder=tmp_path, limit=2 ** 62) is None  # > free/2
    monkeypatch.setattr(frame_spill, "_file_system", lambda folder: "tmpfs")
    assert FrameSpill.open(2, (4, 4), np.uint8, folder=tmp_path) is None


def test_a_failed_write_turns_the_spill_off(tmp_path, monkeypatch):
    spill = FrameSpill.open(3, (4, 4), np.uint8, folder=tmp_path)
    spill.write(0, np.ones((4, 4), np.uint8))

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", disk_full)
    spill.write(1, np.ones((4, 4), np.uint8))
    monkeypatch.undo()
    spill.write(2, np.ones((4, 4), np.uint8))  # off for the frames after the failure
    assert spill.failed and spill.has(0) and not spill.has(1) and not spill.has(2)
    spill.close()


@pytest.mark.parametrize("fails_at", [None, 3])
def test_streamed_fusion_is_the_same_with_and_without_the_spill(monkeypatch, fails_at):
    stack = generate_stack(21, height=96, width=128, k=9, scene="mixed", breathing=0.01, motion=2)
    engine = ClassicalEngine()
    decoded_again = streaming.fuse_stream(engine, stack.frames, spill=False).result
    if fails_at is not None:  # the disk fills up at frame 3: the rest is decoded again
        write = FrameSpill.write

        def filling(self, index, frame):
            if index >= fails_at:
                self.failed = True
            return write(self, index, frame)

        monkeypatch.setattr(FrameSpill, "write", filling)
    read, reads = FrameSpill.read, []

    def counted(self, index):
        reads.append(index)
        return read(self, index)

    monkeypatch.setattr(FrameSpill, "read", counted)
    spilled = streaming.fuse_stream(engine, stack.frames).result
    assert reads and all(i < (fails_at or 9) for i in reads)  # pass 2 read back what was kept
    np.testing.assert_array_equal(spilled.image, decoded_again.image)
    np.testing.assert_array_equal(spilled.depth_index, decoded_again.depth_index)
