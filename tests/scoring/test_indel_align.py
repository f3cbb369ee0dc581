"""Indel alignment of binned models (ALT stitched at the variant, on the device), with a
hand-set model whose aligned and unaligned effects are known exactly.

The model: window 64 bp, 12 output bins of 4 bp (8 bp cropped each side), one track = the
number of G or C bases in the bin (strand-symmetric, so the RC ensemble changes nothing).
The genome is all A except a few G. The variant's first base is at window index 32, bin 6.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from veff.engine import ModelScorer, ScoreOptions
from veff.io.genome import Genome
from veff.io.windows import build_windows
from veff.models.base import ModelHandle
from veff.scoring.indel_align import shift_rows
from veff.types import Variant

L, BS, P = 64, 4, 12
POS1 = 101  # the variant's first base (1-based); the window covers genome [68, 132)


def _handle() -> ModelHandle:
    def apply(params, x):
        gc = (x[:, 8 : 8 + P * BS, 1] + x[:, 8 : 8 + P * BS, 2]) * params["w"]
        return {"tracks": gc.reshape(x.shape[0], P, BS).sum(-1)[..., None]}

    return ModelHandle(name="gc", arch="test", kind="binned", window_len=L, output_len=P,
                       tracks=[{"name": "gc"}], sha256="0", params={"w": jnp.float32(1)},
                       apply=apply, bin_size=BS)


@pytest.fixture
def genome(tmp_path):
    seq = ["A"] * 300
    # deletion AGG>A at 101: the deleted G at 102, 103 (window index 33, 34: bin 6); a G pair
    # in the right flank at window index 40, 41 (bin 8), which the deletion pulls into bin 7.
    # insertion A>AGG at 201: a G pair at window index 38, 39 (bin 7), pushed into bin 8.
    for p1 in (102, 103, 109, 110, 207, 208):
        seq[p1 - 1] = "G"
    path = tmp_path / "g.fa"
    path.write_text(">c\n" + "".join(seq) + "\n")
    return Genome(str(path))


def _score(genome, variants, **opts):
    scorer = ModelScorer(_handle(), ScoreOptions(stats=("SUM", "D1"), batch_size=4, **opts))
    return scorer.score(build_windows(genome, variants, L))


@pytest.mark.parametrize("rc", [False, True])
def test_deletion_and_insertion_aligned_and_not(genome, rc):
    dele = Variant(chrom="c", pos1=POS1, ref="AGG", alt="A")
    ins = Variant(chrom="c", pos1=POS1 + 100, ref="A", alt="AGG")
    aligned = _score(genome, [dele, ins], rc=rc)
    plain = _score(genome, [dele, ins], rc=rc, indel_align=False)
    # deletion, aligned: only the variant bin differs, by the two deleted G; unaligned: bin 6
    # -2, and the flank pair moves from bin 8 to bin 7 (+2, -2).
    np.testing.assert_array_equal(aligned["SUM"][0], [-2.0])
    np.testing.assert_array_equal(aligned["D1"][0], [2.0])
    np.testing.assert_array_equal(plain["SUM"][0], [-2.0])
    np.testing.assert_array_equal(plain["D1"][0], [6.0])
    # insertion: the stitched ALT keeps one inserted G in the variant bin (+1), the other
    # falls left of the split and is dropped; unaligned: +2 in bin 6, the flank pair moves
    # from bin 7 to bin 8 (-2, +2).
    np.testing.assert_array_equal(aligned["SUM"][1], [1.0])
    np.testing.assert_array_equal(aligned["D1"][1], [1.0])
    np.testing.assert_array_equal(plain["SUM"][1], [2.0])
    np.testing.assert_array_equal(plain["D1"][1], [6.0])


def test_snvs_and_mnvs_unchanged_by_alignment(genome):
    rows = [Variant(chrom="c", pos1=POS1 + 1, ref="G", alt="C"),
            Variant(chrom="c", pos1=POS1 + 1, ref="GG", alt="AT")]
    a, b = _score(genome, rows), _score(genome, rows, indel_align=False)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["SUM"][:, 0], [0.0, -2.0])


def test_shift_rows_moves_each_row_by_its_own_amount():
    t = np.arange(10, dtype=np.uint8)[None].repeat(3, 0) % 4
    out = np.asarray(shift_rows(jnp.asarray(t), jnp.asarray([0, 2, -3])))
    np.testing.assert_array_equal(out[0], t[0])
    np.testing.assert_array_equal(out[1], [4, 4, *t[1, :8]])
    np.testing.assert_array_equal(out[2], [*t[2, 3:], 4, 4, 4])
