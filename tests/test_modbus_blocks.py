"""Block coalescing and word decoding, from tables."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.blocks import Block, Tag, decode, decoder, encode, plan, split
from drivers.modbus.profile import Register


def _reg(metric: str, address: int, type_: str = "uint16", function: int = 3,
         **extra: object) -> Register:
    return Register.model_validate(
        {"metric": metric, "function": function, "address": address, "type": type_, **extra})


def _tags(*specs: tuple[int, str] | tuple[int, str, int]) -> list[Tag]:
    out = []
    for i, spec in enumerate(specs):
        address, type_ = spec[0], spec[1]
        function = spec[2] if len(spec) == 3 else 3
        out.append(Tag(_reg(f"m{i}", address, type_, function), address, "big"))
    return out


def _shape(blocks: list[Block]) -> list[tuple[int, int, int]]:
    return [(b.function, b.start, b.count) for b in blocks]


@pytest.mark.parametrize(
    ("tags", "max_block", "gap", "want"),
    [
        # contiguous: one read
        (_tags((0, "float32"), (2, "float32"), (4, "float32")), 125, 0, [(3, 0, 6)]),
        # a hole of 2 registers: two reads without a bridge, one with
        (_tags((0, "float32"), (4, "float32")), 125, 0, [(3, 0, 2), (3, 4, 2)]),
        (_tags((0, "float32"), (4, "float32")), 125, 2, [(3, 0, 6)]),
        # never more than max_block, and a tag is never split
        (_tags((0, "float32"), (2, "float32"), (4, "float32")), 4, 0, [(3, 0, 4), (3, 4, 2)]),
        (_tags((0, "uint16"), (1, "float64")), 4, 0, [(3, 0, 1), (3, 1, 4)]),
        # the protocol's 125-register limit holds whatever the config says
        (_tags((0, "uint16"), (124, "uint16"), (125, "uint16")), 125, 200,
         [(3, 0, 125), (3, 125, 1)]),
        # separate tables never share a read; order of input does not matter
        (_tags((2, "uint16", 4), (0, "uint16"), (0, "uint16", 4), (1, "uint16")), 125, 0,
         [(3, 0, 2), (4, 0, 1), (4, 2, 1)]),
        # bits on FC02 coalesce up to 2000
        (_tags((0, "bits", 2), (1, "bits", 2), (1999, "bits", 2)), 2000, 2000, [(2, 0, 2000)]),
    ],
)
def test_plan(tags: list[Tag], max_block: int, gap: int, want: list[tuple[int, int, int]]) -> None:
    blocks = plan(tags, max_block=max_block, gap=gap)
    assert _shape(blocks) == want
    assert sorted(t.register.metric for b in blocks for t in b.tags) == sorted(
        t.register.metric for t in tags)


def test_the_eastron_map_is_a_handful_of_reads() -> None:
    # V, I (0x00-0x0B), W 0x34, PF 0x3E, Hz 0x46, kWh 0x48/0x4A: a bridge of 12 makes it 2.
    addresses = [0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x34, 0x3E, 0x46, 0x48, 0x4A]
    tags = [Tag(_reg(f"m{a}", a, "float32", 4), a, "big") for a in addresses]
    assert len(plan(tags)) == 4
    assert _shape(plan(tags, gap=12)) == [(4, 0x00, 0x0C), (4, 0x34, 0x4C - 0x34)]
    assert _shape(plan(tags, gap=64)) == [(4, 0x00, 0x4C)]


@pytest.mark.parametrize(
    ("type_", "words", "word_order", "byte_order", "scale", "want"),
    [
        ("uint16", [0xFFFF], "big", "big", 1.0, 65535),
        ("int16", [0xFFFF], "big", "big", 1.0, -1),
        ("int16", [0xFF9C], "big", "big", 0.1, -10.0),
        ("uint16", [0x3412], "big", "little", 1.0, 0x1234),
        ("int32", [0xFFFF, 0xFA24], "big", "big", 1.0, -1500),
        ("int32", [0xFA24, 0xFFFF], "little", "big", 1.0, -1500),
        ("uint32", [0x0001, 0xE240], "big", "big", 0.01, 1234.56),
        ("uint32", [0xE240, 0x0001], "little", "big", 0.01, 1234.56),
        ("uint32", [0x0100, 0x40E2], "big", "little", 1.0, 123456),
        ("float32", [0x4366, 0x0000], "big", "big", 1.0, 230.0),
        ("float32", [0x0000, 0x4366], "little", "big", 1.0, 230.0),
        ("float32", [0x450F, 0xD000], "big", "big", 0.1, 230.1),
        ("float64", [0x40F8, 0x1CD4, 0x0000, 0x0000], "big", "big", 1.0, 98765.25),
        ("float64", [0x0000, 0x0000, 0x1CD4, 0x40F8], "little", "big", 1.0, 98765.25),
        ("bits", [0b101], "big", "big", 1.0, 5),
    ],
)
def test_decode(type_: str, words: list[int], word_order: str, byte_order: str, scale: float,
                want: float) -> None:
    reg = _reg("x", 0, type_, byte_order=byte_order, scale=scale)
    assert decode(reg, words, word_order) == pytest.approx(want)  # type: ignore[arg-type]
    assert encode(reg, want, word_order) == words  # type: ignore[arg-type]


def test_decode_lets_nan_through_for_plausibility_to_judge() -> None:
    reg = _reg("x", 0, "float32")
    assert math.isnan(decode(reg, [0x7FC0, 0x0000]))
    assert math.isinf(decode(reg, [0x7F80, 0x0000]))


def test_decode_refuses_the_wrong_number_of_words() -> None:
    with pytest.raises(ValueError, match="float32 takes 2 registers, got 1"):
        decode(_reg("x", 0, "float32"), [1])


def test_split_cuts_a_block_into_values_and_checks_its_length() -> None:
    tags = _tags((0, "uint16"), (2, "int32"))
    (block,) = plan(tags, gap=1)
    assert split(block, [7, 0, 0xFFFF, 0xFFFE]) == {"m0": 7, "m1": -2}
    with pytest.raises(ValueError, match="block of 4 registers answered with 3"):
        split(block, [7, 0, 0xFFFF])


_TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64", "bits"]
_ORDERS = ["big", "little"]


@st.composite
def _blocks_and_words(draw: st.DrawFn) -> tuple[Block, list[int]]:
    tags, address = [], 0
    for i in range(draw(st.integers(1, 6))):
        address += draw(st.integers(0, 3))
        type_ = draw(st.sampled_from(_TYPES))
        reg = _reg(f"m{i}", address, type_, byte_order=draw(st.sampled_from(_ORDERS)),
                   scale=draw(st.sampled_from([1.0, 0.1, 0.001, 10.0])))
        tags.append(Tag(reg, address, draw(st.sampled_from(_ORDERS))))
        address += reg.width
    (block,) = plan(tags, gap=3)
    words = draw(st.lists(st.integers(0, 0xFFFF), min_size=block.count,
                          max_size=block.count))
    return block, words


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=300, deadline=None)
@given(_blocks_and_words())
def test_a_prepared_decoder_gives_what_split_gives(case: tuple[Block, list[int]]) -> None:
    # The poll path decodes with the prepared decoder; split (tag by tag) is the reference.
    block, words = case
    want, got = split(block, words), decoder(block)(words)
    assert list(got) == list(want)
    assert all(_same(got[k], want[k]) for k in want), (got, want)


def test_a_prepared_decoder_refuses_a_short_answer_and_a_word_out_of_range() -> None:
    (block,) = plan(_tags((0, "uint16"), (2, "int32")), gap=1)
    decode_block = decoder(block)
    assert decode_block([7, 0, 0xFFFF, 0xFFFE]) == {"m0": 7, "m1": -2}
    with pytest.raises(ValueError, match="block of 4 registers answered with 3"):
        decode_block([7, 0, 0xFFFF])
    with pytest.raises(ValueError, match="block of 4 registers"):
        decode_block([7, 0, 0x10000, 0])
