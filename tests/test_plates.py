"""Plates from tables: normalisation, GA 36 classification, validation and the one-edit
matching that forgives only OCR-confusable characters; properties with Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.vehicles.plates import (
    CONFUSABLE_GROUPS,
    PROVINCES,
    MatchKind,
    PlateError,
    PlateKind,
    classify,
    confusable,
    is_valid,
    match,
    normalise,
    parse,
)


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        ("湘A12345", "湘A12345"),
        ("湘 A 12345", "湘A12345"),
        ("湘A·12345", "湘A12345"),
        ("湘A.123.45", "湘A12345"),
        ("湘A-12345", "湘A12345"),
        ("湘ａ１２３４５", "湘A12345"),  # full-width letter and digits
        ("湘Ａ１２３４５", "湘A12345"),
        ("湘\u3000A12345", "湘A12345"),  # ideographic space
        ("湘ad12345", "湘AD12345"),
        (" 粤z1234港 ", "粤Z1234港"),
        ("", ""),
        # found by Hypothesis: a diaeresis whose space is stripped composes again
        ("U\u00a8", "\u00dc"),
    ],
)
def test_normalise(read: str, expected: str) -> None:
    assert normalise(read) == expected


@pytest.mark.parametrize(
    ("plate", "kind"),
    [
        ("湘A12345", PlateKind.ORDINARY),
        ("湘AB1C23", PlateKind.ORDINARY),
        ("京A8888Z", PlateKind.ORDINARY),
        ("湘AD12345", PlateKind.NEW_ENERGY_SMALL),
        ("湘AF12345", PlateKind.NEW_ENERGY_SMALL),
        ("湘AK12345", PlateKind.NEW_ENERGY_SMALL),
        ("湘ADA1234", PlateKind.NEW_ENERGY_SMALL),
        ("湘A12345D", PlateKind.NEW_ENERGY_LARGE),
        ("湘A12345F", PlateKind.NEW_ENERGY_LARGE),
        ("湘A1234挂", PlateKind.TRAILER),
        ("湘A1234学", PlateKind.LEARNER),
        ("湘A0123警", PlateKind.POLICE),
        ("粤Z1234港", PlateKind.HONG_KONG),
        ("粤Z1234澳", PlateKind.MACAU),
        ("使123456", PlateKind.EMBASSY),
        ("123456使", PlateKind.EMBASSY),
        ("沪A1234领", PlateKind.CONSULATE),
        ("VA12345", PlateKind.MILITARY),
        ("KB12345", PlateKind.MILITARY),
        ("WJ湘12345", PlateKind.ARMED_POLICE),
        ("WJ1234X", PlateKind.ARMED_POLICE),
        ("湘A1234应急", PlateKind.EMERGENCY),
        ("无牌车", PlateKind.NO_PLATE),
        ("未识别", PlateKind.NO_PLATE),
        ("", PlateKind.NO_PLATE),
        # not plates
        ("湘AI2345", PlateKind.INVALID),  # I is never in a serial
        ("湘AO2345", PlateKind.INVALID),  # nor O
        ("湘I12345", PlateKind.INVALID),  # nor as the authority letter
        ("湘A1234", PlateKind.INVALID),  # too short
        ("湘A123456", PlateKind.INVALID),  # too long for ordinary, no energy letter
        ("X A12345".replace(" ", ""), PlateKind.INVALID),  # no province
        ("港A12345", PlateKind.INVALID),
        ("湘AM12345", PlateKind.INVALID),  # M is no energy letter
        ("AA12345", PlateKind.INVALID),  # A is no military code
    ],
)
def test_classify(plate: str, kind: PlateKind) -> None:
    assert classify(plate) is kind
    assert is_valid(plate) is (kind not in (PlateKind.NO_PLATE, PlateKind.INVALID))


def test_parse_says_why() -> None:
    assert parse("湘ａ 12345") == ("湘A12345", PlateKind.ORDINARY)
    with pytest.raises(PlateError, match="not a valid plate"):
        parse("湘AI2345")
    with pytest.raises(PlateError, match="no plate"):
        parse("无牌车")


REGISTERED = frozenset({"湘A12345", "湘A8B8B8", "湘AD12345", "粤B20000", "湘A5S550"})


@pytest.mark.parametrize(
    ("read", "low", "kind", "plate"),
    [
        ("湘A12345", False, MatchKind.EXACT, "湘A12345"),
        ("湘 a·12345", False, MatchKind.EXACT, "湘A12345"),  # normalised first
        ("湘AI2345", False, MatchKind.FUZZY, "湘A12345"),  # 1/I
        ("湘AL2345", False, MatchKind.FUZZY, "湘A12345"),  # 1/L
        ("湘A1Z345", False, MatchKind.FUZZY, "湘A12345"),  # 2/Z
        ("湘A1234S", False, MatchKind.FUZZY, "湘A12345"),  # 5/S
        ("湘A8B8B6", False, MatchKind.NONE, None),  # 8 -> 6 is not a confusion
        ("湘A8B888", False, MatchKind.FUZZY, "湘A8B8B8"),  # B/8
        ("湘A0D12345", False, MatchKind.NONE, None),  # an insertion is no swap
        ("湘ADI2345", False, MatchKind.FUZZY, "湘AD12345"),
        ("湘AQ12345", False, MatchKind.FUZZY, "湘AD12345"),  # D/Q
        ("粤BZ0000", False, MatchKind.FUZZY, "粤B20000"),
        ("粤B2OOOO", False, MatchKind.NONE, None),  # four edits
        ("粤B2O000", False, MatchKind.FUZZY, "粤B20000"),
        # must NOT match: two edits, a non-confusable edit, a swap on the province
        ("湘AIZ345", False, MatchKind.NONE, None),
        ("湘A12346", False, MatchKind.NONE, None),
        ("湘A13345", False, MatchKind.NONE, None),
        ("鄂A12345", False, MatchKind.NONE, None),
        ("粤A12345", False, MatchKind.NONE, None),
        # ...unless the camera says its province character is unsure
        ("鄂A12345", True, MatchKind.FUZZY, "湘A12345"),
        ("鄂AI2345", True, MatchKind.NONE, None),  # province and a swap: two edits
        ("无牌车", False, MatchKind.NONE, None),
        ("", False, MatchKind.NONE, None),
    ],
)
def test_match(read: str, low: bool, kind: MatchKind, plate: str | None) -> None:
    m = match(read, REGISTERED, province_low_confidence=low)
    assert (m.kind, m.plate) == (kind, plate)


def test_a_read_near_two_plates_is_ambiguous_and_opens_nothing() -> None:
    m = match("湘A5S55S", REGISTERED | {"湘A5S5S5"})
    assert m.kind is MatchKind.NONE  # two swaps from each
    m = match("湘A5S5S0", {"湘A5S550", "湘A5S5SO", "湘A5S5SD"})
    assert m.kind is MatchKind.AMBIGUOUS
    assert m.plate is None
    assert m.candidates == ("湘A5S550", "湘A5S5SD", "湘A5S5SO")


def test_fuzzy_match_names_the_forgiven_position() -> None:
    assert match("湘A1Z345", REGISTERED).position == 3


# ---- properties ---------------------------------------------------------------------------

_SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_CONFUSABLE = "".join(CONFUSABLE_GROUPS)

ordinary = st.builds(
    lambda p, a, s: p + a + s,
    st.sampled_from(PROVINCES),
    st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ"),
    st.text(alphabet=_SERIAL, min_size=5, max_size=5),
)
noise = st.text(alphabet=" .·-\uff41\uff42\uff11\uff12\u3000abcXYZ湘粤0123456789", max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.one_of(noise, ordinary, st.text(max_size=12)))
@example("A\u00b4")  # a spacing accent: NFKC makes it a space and a mark, which then join
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


@settings(max_examples=150, deadline=None)
@given(ordinary)
def test_a_registered_plate_always_matches_itself_exactly(plate: str) -> None:
    assert classify(plate) is PlateKind.ORDINARY
    m = match(plate, {plate})
    assert (m.kind, m.plate) == (MatchKind.EXACT, plate)


@settings(max_examples=200, deadline=None)
@given(ordinary, st.integers(min_value=1, max_value=6), st.sampled_from(_SERIAL))
def test_a_non_confusable_edit_never_matches(plate: str, position: int, other: str) -> None:
    if confusable(plate[position], other):
        other = next(c for c in _SERIAL if not confusable(plate[position], c))
    edited = plate[:position] + other + plate[position + 1:]
    assert match(edited, {plate}).kind is MatchKind.NONE


@settings(max_examples=200, deadline=None)
@given(ordinary, st.data())
def test_one_confusable_swap_off_the_province_matches(plate: str, data: st.DataObject) -> None:
    spots = [i for i in range(1, len(plate)) if plate[i] in _CONFUSABLE]
    if not spots:
        plate = plate[:2] + "0" + plate[3:]
        spots = [2]
    i = data.draw(st.sampled_from(spots))
    group = next(g for g in CONFUSABLE_GROUPS if plate[i] in g)
    other = data.draw(st.sampled_from(group.replace(plate[i], "")))
    m = match(plate[:i] + other + plate[i + 1:], {plate})
    assert (m.kind, m.plate, m.position) == (MatchKind.FUZZY, plate, i)


@settings(max_examples=150, deadline=None)
@given(ordinary, st.sampled_from(PROVINCES))
def test_a_province_swap_matches_only_when_low_confidence(plate: str, province: str) -> None:
    if province == plate[0]:
        return
    read = province + plate[1:]
    assert match(read, {plate}).kind is MatchKind.NONE
    assert match(read, {plate}, province_low_confidence=True).plate == plate


@settings(max_examples=150, deadline=None)
@given(ordinary, st.data())
def test_two_edits_never_match(plate: str, data: st.DataObject) -> None:
    i, j = sorted(data.draw(st.lists(st.integers(1, 6), min_size=2, max_size=2, unique=True)))
    chars = list(plate)
    for k in (i, j):
        group = next((g for g in CONFUSABLE_GROUPS if chars[k] in g), None)
        chars[k] = group.replace(chars[k], "")[0] if group else ("Y" if chars[k] != "Y" else "X")
    assert match("".join(chars), {plate}).kind is MatchKind.NONE
