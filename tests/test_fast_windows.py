"""The columnar chunk windows (veff.io.fast_windows) equal oriented_windows token for token."""

from __future__ import annotations

import numpy as np
import pytest

from veff.io.fast_windows import ContigTokens, chunk_windows
from veff.io.genome import Genome
from veff.io.vcf import BuildCheck, read_variants
from veff.pipeline import oriented_windows
from veff.store import Store, variants_from_columns


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("fw")
    rng = np.random.default_rng(5)
    seqs = {"chr1": "".join(rng.choice(list("ACGTacgt"), 503)), "chr2": "".join(rng.choice(list("ACGT"), 211))}
    seqs["chr1"] = seqs["chr1"][:100] + "R" + seqs["chr1"][101:]  # an IUPAC base at 101 (1-based)
    (d / "g.fa").write_text("".join(f">{k}\n" + "\n".join(v[i:i + 59] for i in range(0, len(v), 59)) + "\n"
                                    for k, v in seqs.items()))
    rows = []
    for c, s in seqs.items():
        for p in [1, 2, 5, 40, 60, 99, 150, 200, len(s) - 3, len(s)]:
            r = s[p - 1].upper()
            rows.append((c, p, r if r in "ACGT" else "A", "ACGT".replace(r, "")[0] + ",T" if r != "T" else "G"))
    chr1 = seqs["chr1"].upper()
    rows += [("chr1", 101, "A", "C"), ("chr1", 101, "C", "G"),  # IUPAC match, then a flip onto it
             ("chr1", 120, "T" if chr1[119] != "T" else "A", chr1[119]),  # flipped SNV
             ("chr1", 130, chr1[129:132], chr1[129]),  # deletion
             ("chr1", 140, chr1[139], chr1[139] + "GG"),  # insertion
             ("chr1", 170, chr1[169:171], "AC" if chr1[169:171] != "AC" else "GT"),  # MNV
             ("chr1", 180, "N", "A"), ("chrZ", 5, "A", "C")]  # not ok
    rows.sort(key=lambda r: (r[0], r[1]))
    body = "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in rows)
    (d / "v.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + body)
    g = Genome(d / "g.fa")
    variants = list(read_variants(d / "v.vcf", g, ref_mismatch="flip", build_check=BuildCheck(min_checked=10**6)))
    store = Store.create(d / "s.zarr", variants, chunk_size=16, run_config={})
    yield g, store
    store.close()


@pytest.mark.parametrize("length,offset", [(31, 0), (32, -1), (64, 0), (7, 0)])
@pytest.mark.parametrize("mode", ["veff", "variant-scorer"])
def test_chunk_windows_equal_oriented_windows(world, length, offset, mode):
    g, store = world
    cols = store.read_columns(0, store.num_variants)
    assert (cols["flipped"]).any() and (cols["status"] != "ok").any()
    want = oriented_windows(g, variants_from_columns(cols), length, centre_offset=offset, indel_windows=mode)
    got = chunk_windows(g, ContigTokens(g), cols, length, centre_offset=offset, indel_windows=mode,
                        slow_rows=lambda idx: variants_from_columns(cols, idx))
    for f in ("ref", "alt", "ref_len", "alt_len", "padded"):
        np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
    assert want.padded.any() and not want.padded.all()
