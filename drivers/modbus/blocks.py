"""Pure register arithmetic: coalesce a device's registers into block reads, and turn the
words of a block into values (word and byte order, type, scale), and back (simulators).

No I/O; tested from tables.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from drivers.modbus.profile import Order, Register

# The Modbus limits of one read: 125 registers (FC03/04), 2000 bits (FC01/02).
MAX_REGISTERS = 125
MAX_BITS = 2000

_FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d",
    "bits": "H",
}


@dataclass(frozen=True, slots=True)
class Tag:
    """One register of one device as it is read: its address after workarounds."""

    register: Register
    address: int
    word_order: Order

    @property
    def end(self) -> int:
        return self.address + self.register.width


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) from `start`, and the tags in it."""

    function: int
    start: int
    count: int
    tags: tuple[Tag, ...]


def plan(tags: Iterable[Tag], *, max_block: int = MAX_REGISTERS, gap: int = 0) -> list[Block]:
    """Fewest reads covering every tag: contiguous tags share a block, tags at most `gap`
    registers apart are bridged (the gap is read and thrown away), no block is longer than
    `max_block` (or the protocol's limit), and no tag is split across two blocks."""
    by_function: dict[int, list[Tag]] = {}
    for tag in tags:
        by_function.setdefault(tag.register.function, []).append(tag)
    blocks: list[Block] = []
    for function in sorted(by_function):
        limit = min(max_block, MAX_BITS if function in (1, 2) else MAX_REGISTERS)
        current: list[Tag] = []
        start = end = 0
        for tag in sorted(by_function[function], key=lambda t: t.address):
            if current and tag.address - end <= gap and max(end, tag.end) - start <= limit:
                current.append(tag)
                end = max(end, tag.end)
                continue
            if current:
                blocks.append(Block(function, start, end - start, tuple(current)))
            current, start, end = [tag], tag.address, tag.end
        if current:
            blocks.append(Block(function, start, end - start, tuple(current)))
    return blocks


def _words_to_bytes(words: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    ordered = list(words) if word_order == "big" else list(reversed(words))
    out = bytearray()
    for word in ordered:
        pair = word.to_bytes(2, "big")
        out += pair if byte_order == "big" else pair[::-1]
    return bytes(out)


def decode(register: Register, words: Sequence[int], word_order: Order = "big") -> float:
    """The value of one register from its words (already cut out of the block), scaled.
    A float may come out NaN or infinite: plausibility decides what that means."""
    if len(words) != register.width:
        raise ValueError(f"{register.metric}: {register.type} takes {register.width} "
                         f"registers, got {len(words)}")
    raw = _words_to_bytes(words, word_order, register.byte_order)
    (value,) = struct.unpack(">" + _FORMATS[register.type], raw)
    if register.type == "bits":
        return float(value)
    return float(value) * register.scale


def encode(register: Register, value: float, word_order: Order = "big") -> list[int]:
    """The words a device holds for `value` (the inverse of `decode`, for simulators)."""
    fmt = _FORMATS[register.type]
    if register.type in ("float32", "float64"):
        raw = struct.pack(">" + fmt, value / register.scale if math.isfinite(value) else value)
    else:
        scaled = value if register.type == "bits" else round(value / register.scale)
        raw = struct.pack(">" + fmt, int(scaled))
    words = []
    for i in range(0, len(raw), 2):
        pair = raw[i:i + 2] if register.byte_order == "big" else raw[i:i + 2][::-1]
        words.append(int.from_bytes(pair, "big"))
    return words if word_order == "big" else list(reversed(words))


def split(block: Block, words: Sequence[int]) -> dict[str, float]:
    """Every tag's value from one block's answer."""
    if len(words) != block.count:
        raise ValueError(f"block of {block.count} registers answered with {len(words)}")
    out: dict[str, float] = {}
    for tag in block.tags:
        offset = tag.address - block.start
        out[tag.register.metric] = decode(tag.register, words[offset:offset + tag.register.width],
                                          tag.word_order)
    return out


Decoder = Callable[[Sequence[int]], dict[str, float]]


def decoder(block: Block) -> Decoder:
    """`split` for one block, prepared once for the polls to come: the answer is packed
    into bytes once and each value unpacked in place with a struct made here. Tags whose
    word and byte orders differ (a little-endian word order of big-endian words) take
    `decode`; so do bit reads."""
    if block.function in (1, 2):
        return lambda words: split(block, words)
    count = block.count
    whole = struct.Struct(f">{count}H")
    # (metric, struct or None for decode, byte offset, scale, tag)
    steps: list[tuple[str, struct.Struct | None, int, float, Tag]] = []
    for tag in block.tags:
        reg = tag.register
        offset = tag.address - block.start
        if reg.width == 1 or tag.word_order == reg.byte_order:
            prefix = ">" if reg.byte_order == "big" else "<"
            scale = 1.0 if reg.type == "bits" else reg.scale
            steps.append((reg.metric, struct.Struct(prefix + _FORMATS[reg.type]), 2 * offset,
                          scale, tag))
        else:
            steps.append((reg.metric, None, offset, 0.0, tag))

    def run(words: Sequence[int]) -> dict[str, float]:
        if len(words) != count:
            raise ValueError(f"block of {count} registers answered with {len(words)}")
        try:
            raw = whole.pack(*words)
        except struct.error as exc:
            raise ValueError(f"block of {count} registers: {exc}") from exc
        out: dict[str, float] = {}
        for metric, form, at, scale, tag in steps:
            if form is None:
                out[metric] = decode(tag.register, words[at:at + tag.register.width],
                                     tag.word_order)
            else:
                out[metric] = float(form.unpack_from(raw, at)[0]) * scale
        return out

    return run
