"""reference.round_bf16: the bfloat16 rounding of the compute_dtype="bfloat16" products' operands,
against bit patterns worked out by hand and against PyTorch's float32 -> bfloat16 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import reference as R


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32)


def from_bits(*b: int) -> np.ndarray:
    return np.array(b, np.uint32).view(np.float32)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0x3F800000, 0x3F800000),  # 1.0: exact
        (0x3F807FFF, 0x3F800000),  # below half an ulp: down
        (0x3F808000, 0x3F800000),  # a tie, even below: down
        (0x3F818000, 0x3F820000),  # a tie, odd below: up to even
        (0x3F808001, 0x3F810000),  # above half: up
        (0xBF808001, 0xBF810000),  # the same, negative
        (0x7F7FFFFF, 0x7F800000),  # float32's largest: past bfloat16's, to infinity
        (0x7F7F7FFF, 0x7F7F0000),  # just below the midpoint: bfloat16's largest finite
        (0x7F800000, 0x7F800000),  # inf
        (0xFF800000, 0xFF800000),  # -inf
        (0x00000001, 0x00000000),  # the smallest subnormal: to zero
        (0x80000001, 0x80000000),  # keeps the sign of zero
        (0x00008000, 0x00000000),  # a subnormal tie, even below
        (0x00018000, 0x00020000),  # a subnormal tie, odd below
    ],
    ids=hex,
)
def test_round_to_nearest_even(given: int, expected: int) -> None:
    assert bits(R.round_bf16(from_bits(given)))[0] == expected


@pytest.mark.parametrize("nan", [0x7FC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF])
def test_nan_stays_nan_with_its_sign(nan: int) -> None:
    out = R.round_bf16(from_bits(nan))
    assert np.isnan(out[0])
    assert bits(out)[0] & 0xFFFF == 0  # a bfloat16 value
    assert bits(out)[0] >> 31 == nan >> 31


def test_shapes_dtypes_and_idempotence() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 5)).astype(np.float32) * 1e3
    r = R.round_bf16(a)
    assert r.dtype == np.float32 and r.shape == a.shape
    assert np.array_equal(R.round_bf16(r), r)
    assert (bits(r) & 0xFFFF == 0).all()
    assert np.all(np.abs(r - a) <= np.abs(a) * 2.0**-8)  # half an ulp of 8 significant bits
    assert R.round_bf16(np.float64(1.0)).shape == ()
    assert np.array_equal(R.round_bf16(a[:, ::2].T), R.round_bf16(a)[:, ::2].T)  # any strides


def test_against_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    scaled = np.ldexp(rng.uniform(-2, 2, 100_000), rng.integers(-150, 127, 100_000))
    patterns = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    a = np.concatenate([scaled.astype(np.float32), patterns.view(np.float32)])
    finite = np.isfinite(a)
    ours = R.round_bf16(a)
    theirs = torch.from_numpy(a).to(torch.bfloat16).float().numpy()
    assert np.array_equal(bits(ours[finite]), bits(theirs[finite]))
    assert np.array_equal(np.isnan(ours), np.isnan(theirs))
