import pytest
import torch

from dsedge.quantize.primitives import pack_int4, qrange, quant_sqnr_db, sqnr_db
from dsedge.quantize.qweight import QuantizedWeight
from dsedge.quantize.rtn import quantize_weight

# Floors for Gaussian weights (N(0, 1), 64 x 512, seed 0). Measured: 4-bit g128 sym 18.6 dB,
# asym 19.95, g32 20.3, per-channel 17.4; 8-bit per-channel 42.6, g128 43.8, asym 43.2.
# Floors sit ~1 dB below (6 dB per bit is the textbook step).
SQNR_FLOOR = {(4, 128, True): 17.5, (4, 128, False): 19.0, (4, 32, True): 19.3, (4, -1, True): 16.4,
              (8, -1, True): 41.5, (8, 128, True): 42.7, (8, -1, False): 42.0}


def unpack_int4(packed: torch.Tensor, signed: bool) -> torch.Tensor:
    """Inverse of pack_int4: (..., K/2) uint8 -> (..., K) int8."""
    lo = (packed & 0xF).to(torch.int8)
    hi = ((packed >> 4) & 0xF).to(torch.int8)
    out = torch.stack([lo, hi], dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    if signed:
        out = torch.where(out > 7, out - 16, out)
    return out


@pytest.fixture
def w():
    return torch.randn(64, 512, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bits,group,sym", list(SQNR_FLOOR))
def test_round_trip_sqnr_and_range(w, bits, group, sym):
    qw = quantize_weight(w, bits, group, sym)
    lo, hi = qrange(bits)
    assert qw.codes.dtype == torch.int8
    assert lo <= int(qw.codes.min()) and int(qw.codes.max()) <= hi
    groups = 512 // (512 if group == -1 else group)
    assert qw.scale.shape == (64, groups)
    assert (qw.zero_point is None) == sym
    assert sqnr_db(w, qw.dequantize()) > SQNR_FLOOR[(bits, group, sym)]
    # scales are stored as fp16 in the artifact: they must be exactly representable
    assert torch.equal(qw.scale, qw.scale.half().float())


@pytest.mark.parametrize("bits", [4, 8])
def test_error_bounded_by_half_step(w, bits):
    """amax / (qmax + 1/2): the extreme weight is clipped by half a step, no more (plus what rounding
    the scale to FP16 moves it, qmax + 1/2 steps of 2^-11 relative at most)."""
    qw = quantize_weight(w, bits, 128, True)
    err = (qw.dequantize() - w).abs().reshape(64, 4, 128)
    qmax = (1 << (bits - 1)) - 1
    assert (err <= qw.scale.unsqueeze(-1) * (0.5 + (qmax + 0.5) * 2.0 ** -11) + 1e-7).all()
    amax = w.abs().reshape(64, 4, 128).amax(-1)                                        # (64, 4)
    assert torch.equal(qw.scale, (amax / (qmax + 0.5)).half().float())   # compressed-tensors' scale


@pytest.mark.parametrize("bits,group,sym", [(4, 128, True), (4, 64, False), (8, -1, True)])
def test_sqnr_measured_in_passing_equals_the_dequantized_figure(monkeypatch, w, bits, group, sym):
    """RTN's in-pass SQNR (what LayerErrors reports for it) is the FP64 figure of its dequantized
    weight, and what quant_sqnr_db (every other method's path) computes, over several row blocks."""
    from dsedge.quantize import primitives as P

    monkeypatch.setattr(P, "ROW_BLOCK_BYTES", 5 * 512 * 4)              # 13 blocks of 5 rows
    qw = quantize_weight(w * 0.02, bits, group, sym)
    exact = sqnr_db(w * 0.02, qw.dequantize())
    assert qw.sqnr_db == pytest.approx(exact, abs=1e-4)
    assert quant_sqnr_db(w * 0.02, qw.codes, group, qw.scale, qw.zero_point) == pytest.approx(exact, abs=1e-4)
    assert quantize_weight(torch.zeros(4, 128), bits, 128, sym).sqnr_db == float("inf")


def test_asymmetric_beats_symmetric_on_shifted_weights():
    w = torch.rand(32, 256, generator=torch.Generator().manual_seed(1)) + 0.5   # all positive
    sym = sqnr_db(w, quantize_weight(w, 4, 128, True).dequantize())
    asym = sqnr_db(w, quantize_weight(w, 4, 128, False).dequantize())
    assert asym > sym + 3


def test_more_bits_and_smaller_groups_help(w):
    s = {k: sqnr_db(w, quantize_weight(w, *k, True).dequantize()) for k in [(4, 128), (4, 32), (8, 128)]}
    assert s[(4, 32)] > s[(4, 128)] and s[(8, 128)] > s[(4, 32)] + 20


def test_group_must_divide():
    with pytest.raises(ValueError, match="does not divide"):
        quantize_weight(torch.randn(4, 200), 4, 128, True)


def test_zero_weights_do_not_divide_by_zero():
    qw = quantize_weight(torch.zeros(4, 128), 4, 128, True)
    assert torch.isfinite(qw.scale).all() and torch.equal(qw.dequantize(), torch.zeros(4, 128))


@pytest.mark.parametrize("signed", [True, False])
def test_int4_pack_round_trip_and_onnx_nibble_order(signed):
    lo, hi = (-8, 7) if signed else (0, 15)
    codes = torch.randint(lo, hi + 1, (3, 64), dtype=torch.int8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 32)
    assert torch.equal(unpack_int4(packed, signed), codes)
    # ONNX INT4: element 0 in the low nibble
    assert int(pack_int4(torch.tensor([[1, 2]], dtype=torch.int8))[0, 0]) == 0x21
    assert int(pack_int4(torch.tensor([[-1, 0]], dtype=torch.int8))[0, 0]) == 0x0F


def test_pack_needs_even_length():
    with pytest.raises(ValueError):
        pack_int4(torch.zeros(2, 3, dtype=torch.int8))


def test_permuted_weight_dequantizes_in_original_order(w):
    perm = torch.randperm(512, generator=torch.Generator().manual_seed(2))
    qw = quantize_weight(w[:, perm], 4, 128, True)
    qw.perm = perm
    plain = quantize_weight(w[:, perm], 4, 128, True).dequantize()
    restored = qw.dequantize()
    assert torch.equal(restored[:, perm], plain)
    assert sqnr_db(w, restored) > 17.5


def test_nbytes_counts_packed_codes_and_fp16_scales():
    qw = QuantizedWeight(torch.zeros(256, 512, dtype=torch.int8), torch.ones(256, 4), None, 4, 128)
    assert qw.nbytes() == 256 * 512 // 2 + 2 * 256 * 4


@pytest.mark.parametrize("sym", [True, False])
def test_row_blocks_give_the_same_result_as_one_block(monkeypatch, sym):
    """Big tensors are quantized in blocks of rows: blocks of 3 rows (and an uneven last one)
    must produce exactly what one block does."""
    from dsedge.quantize import primitives as P

    w = torch.randn(50, 256, generator=torch.Generator().manual_seed(1)) * 0.02
    whole = quantize_weight(w, 4, 64, sym)
    packed = P.pack_int4(whole.codes)
    deq = whole.dequantize()
    monkeypatch.setattr(P, "ROW_BLOCK_BYTES", 3 * 256 * 4)
    assert len(P.row_blocks(50, 256)) == 17
    blocked = quantize_weight(w, 4, 64, sym)
    assert torch.equal(blocked.codes, whole.codes) and torch.equal(blocked.scale, whole.scale)
    assert (blocked.zero_point is None) == sym
    if not sym:
        assert torch.equal(blocked.zero_point, whole.zero_point)
    assert torch.equal(P.pack_int4(blocked.codes), packed)
    assert torch.equal(blocked.dequantize(), deq)
