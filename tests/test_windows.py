import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veff.io.genome import Genome
from veff.io.windows import alignment, build_windows, one_hot, reverse_complement
from veff.types import Status, Variant, decode, encode


@pytest.fixture(scope="module")
def genome(tiny_fasta):
    return Genome(tiny_fasta)


def gstr(seqs, chrom, start0, end0):
    s = seqs[chrom].upper()
    return "".join(s[i] if 0 <= i < len(s) else "N" for i in range(start0, end0)).replace("R", "N")


def variant(chrom, pos1, ref, alt, status=Status.OK):
    return Variant(chrom=chrom, pos1=pos1, ref=ref, alt=alt, status=status, fasta_chrom=chrom)


def expected_windows(seqs, v, length):
    """variant-scorer's construction, written with strings."""
    c = length // 2
    start0 = v.pos1 - 1 - c
    flank = gstr(seqs, v.chrom, start0, start0 + length + max(0, len(v.ref) - len(v.alt)))
    ref = flank[:length]
    alt = (flank[:c] + v.alt + flank[c + len(v.ref) :])[:length]
    return ref, alt


@pytest.mark.parametrize("length", [1, 2, 11, 12, 97])
def test_table(genome, tiny_seqs, length):
    s = tiny_seqs
    g = lambda p, n=1: gstr(s, "chr1", p - 1, p - 1 + n)  # noqa: E731
    vs = [
        variant("chr1", 50, g(50), "A" if g(50) != "A" else "C"),  # SNV
        variant("chr1", 40, g(40, 4), g(40)),  # deletion: pulls in 3 extra bases
        variant("chr1", 40, g(40), g(40) + "GGTTA"),  # insertion: truncates the right
        variant("chr1", 40, g(40, 3), "ACGTACGTAC"),  # complex
        variant("chr1", 1, g(1), "A"),  # contig start: left padding
        variant("chr1", 997, g(997), "C"),  # contig end: right padding
        variant("chr1", 995, g(995, 3), g(995)),  # deletion needing bases past the end
        variant("chr2", 3, gstr(s, "chr2", 2, 3), "T"),
        variant("chr1", 50, "A", "<DEL>", Status.SYMBOLIC_ALLELE),  # not ok: all N
        variant("chr9", 50, "ACGT", "A", Status.UNKNOWN_CONTIG),
    ]
    w = build_windows(genome, vs, length)
    assert w.ref.shape == w.alt.shape == (len(vs), length)
    assert w.ref.dtype == w.alt.dtype == np.uint8
    for b, v in enumerate(vs):
        if v.status != Status.OK:
            assert (w.ref[b] == 4).all() and (w.alt[b] == 4).all()
            assert (w.ref_len[b], w.alt_len[b], w.padded[b]) == (1, 1, False)
            continue
        ref, alt = expected_windows(s, v, length)
        assert decode(w.ref[b]) == ref, (b, v)
        assert decode(w.alt[b]) == alt, (b, v)
        assert (w.ref_len[b], w.alt_len[b]) == (len(v.ref), len(v.alt))
        start0 = v.pos1 - 1 - length // 2
        end0 = start0 + length + max(0, len(v.ref) - len(v.alt))
        assert w.padded[b] == (start0 < 0 or end0 > genome.contigs[v.chrom])


def test_centring_contract(genome, tiny_seqs):
    # REF's first base sits at index L // 2, for odd and even L
    for length in (21, 22):
        w = build_windows(genome, [variant("chr1", 600, "C", "G")], length)
        assert decode(w.ref[0])[length // 2] == "C" and decode(w.alt[0])[length // 2] == "G"
        assert decode(w.ref[0])[length // 2 + 1 :].startswith("AAAAAAAAG")
    w = build_windows(genome, [variant("chr1", 2, gstr(tiny_seqs, "chr1", 1, 2), "A")], 9)
    assert decode(w.ref[0])[:3] == "NNN"  # start0 = -3: padded, not wrapped around
    assert w.padded[0]


def test_deletion_and_insertion_layout(genome, tiny_seqs):
    # chr1 1-based 599..610 = A? C AAAAAAAA G ...; delete 3 As after the C at 600
    s = gstr(tiny_seqs, "chr1", 0, 997)
    vs = [variant("chr1", 600, "CAAA", "C"), variant("chr1", 600, "C", "CGG")]
    w = build_windows(genome, vs, 10)
    left = s[594:599]  # L // 2 = 5 bases before pos 600
    assert decode(w.ref[0]) == left + s[599:604]
    assert decode(w.alt[0]) == left + "C" + s[603:607]  # right flank continues after REF
    assert decode(w.alt[1]) == left + "CGG" + s[600:602]  # insertion truncates
    assert not w.padded.any()


def test_empty_batch(genome):
    w = build_windows(genome, [], 13)
    assert w.ref.shape == (0, 13) and w.ref_len.shape == (0,)


@settings(max_examples=50, deadline=None)
@given(
    chrom=st.sampled_from(["chr1", "chr2"]),
    pos_frac=st.floats(0, 1),
    kind=st.sampled_from(["snv", "del", "ins", "mnv"]),
    size=st.integers(1, 9),
    length=st.integers(1, 64),
    seed=st.integers(0, 2**16),
)
def test_window_properties(genome, tiny_seqs, chrom, pos_frac, kind, size, length, seed):
    n = genome.contigs[chrom]
    rng = np.random.default_rng(seed)
    ref_len = {"snv": 1, "del": size + 1, "ins": 1, "mnv": size}[kind]
    pos1 = 1 + int(pos_frac * (n - ref_len))
    ref = genome.bases(chrom, pos1 - 1, pos1 - 1 + ref_len)
    rand = "".join(rng.choice(list("ACGT"), size))
    alt = {"snv": rand[:1], "del": ref[:1], "ins": ref[:1] + rand, "mnv": rand}[kind]
    v = variant(chrom, pos1, ref, alt)
    w = build_windows(genome, [v, v], length)
    c = length // 2
    start0 = pos1 - 1 - c
    assert w.ref.shape == w.alt.shape == (2, length)
    np.testing.assert_array_equal(w.ref[0], genome.fetch(chrom, start0, start0 + length))
    np.testing.assert_array_equal(w.alt[0, :c], w.ref[0, :c])  # same left flank
    np.testing.assert_array_equal(w.alt[0, c : c + len(alt)], encode(alt)[: length - c])
    right = genome.fetch(chrom, pos1 - 1 + len(ref), pos1 - 1 + len(ref) + length)
    tail = w.alt[0, c + len(alt) :]
    np.testing.assert_array_equal(tail, right[: tail.shape[0]])
    np.testing.assert_array_equal(w.ref[0], w.ref[1])
    # the alignment pairs REF and ALT positions that show the same genome base (outside the
    # allele itself, whose paired positions hold REF and ALT bases)
    alt_index, valid = alignment(w.ref_len, w.alt_len, length)
    aligned = np.take_along_axis(w.alt, alt_index, axis=1)
    shared = min(len(ref), len(alt))
    i = np.arange(length)
    flank = valid & ~((i >= c) & (i < c + shared))[None, :]
    np.testing.assert_array_equal(aligned[flank], w.ref[flank])
    num_valid = valid[0].sum()
    expected_valid = length - max(0, min(length, c + len(ref)) - min(length, c + shared))
    if len(alt) > len(ref):  # the last REF positions leave the ALT window
        lost = len(alt) - len(ref)
        expected_valid -= max(0, min(lost, length - (c + len(ref))))
    assert num_valid == expected_valid


@pytest.mark.parametrize(
    "ref_len,alt_len,want_index,want_valid",
    [
        # P = 9, centre 4
        (1, 1, list(range(9)), [True] * 9),
        (3, 3, list(range(9)), [True] * 9),
        # deletion REF=4 ALT=1: ref 5,6,7 deleted; ref 8 <- alt 5
        (4, 1, [0, 1, 2, 3, 4, 0, 0, 0, 5], [True] * 5 + [False] * 3 + [True]),
        # insertion REF=1 ALT=3: ref 5 -> alt 7, ref 6 -> alt 8, ref 7, 8 fall off
        (1, 3, [0, 1, 2, 3, 4, 7, 8, 0, 0], [True] * 7 + [False] * 2),
        # complex REF=3 ALT=2: pairs 4-4, 5-5, ref 6 deleted, ref 7 -> alt 6
        (3, 2, [0, 1, 2, 3, 4, 5, 0, 6, 7], [True] * 6 + [False] + [True] * 2),
    ],
)
def test_alignment_table(ref_len, alt_len, want_index, want_valid):
    idx, valid = alignment(np.array([ref_len]), np.array([alt_len]), 9)
    assert idx.dtype == np.int32 and valid.dtype == bool
    assert valid[0].tolist() == want_valid
    assert idx[0].tolist() == want_index


def test_alignment_custom_centre():
    # output of 6 positions whose index 1 holds the variant
    idx, valid = alignment(np.array([3]), np.array([1]), 6, centre=1)
    assert valid[0].tolist() == [True, True, False, False, True, True]
    assert idx[0].tolist() == [0, 1, 0, 0, 2, 3]


def test_reverse_complement_and_one_hot():
    t = encode("ACGTNNA")
    assert decode(reverse_complement(t)) == "TNNACGT"
    batch = np.stack([encode("AACGT"), encode("GGNTC")])
    np.testing.assert_array_equal(reverse_complement(batch)[1], encode("GANCC"))
    oh = one_hot(batch)
    assert oh.dtype == np.float32 and oh.shape == (2, 5, 4)
    np.testing.assert_array_equal(oh[1, 2], 0.0)  # N is all zeros
    np.testing.assert_array_equal(oh[0].argmax(-1), [0, 0, 1, 2, 3])
    # RC of one-hot tokens == one-hot flipped on both axes (A<->T, C<->G with order ACGT)
    np.testing.assert_array_equal(one_hot(reverse_complement(batch)), oh[:, ::-1, ::-1])


def test_one_hot_and_rc_under_jax():
    jnp = pytest.importorskip("jax.numpy")
    batch = np.stack([encode("AACGTN"), encode("GGNTCA")])
    jb = jnp.asarray(batch)
    np.testing.assert_array_equal(np.asarray(one_hot(jb)), one_hot(batch))
    np.testing.assert_array_equal(np.asarray(reverse_complement(jb)), reverse_complement(batch))
    assert type(one_hot(jb)).__module__.startswith("jax")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=7, max_size=7), min_size=1, max_size=5))
def test_rc_twice_is_identity(rows):
    t = np.array(rows, dtype=np.uint8)
    np.testing.assert_array_equal(reverse_complement(reverse_complement(t)), t)
