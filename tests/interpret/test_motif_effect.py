"""Per-variant motif effects on hand-built windows with synthetic contributions."""

from __future__ import annotations

import numpy as np
import pytest

from veff.interpret import motif_effect as me
from veff.simulate.motifs import read_meme

L = 61  # odd, prime-ish small window; the variant sits at index 30
C = L // 2
MOTIFS = me.load_motifs()
BY_NAME = {m.name: m for m in read_meme()}


def consensus(name: str) -> np.ndarray:
    return BY_NAME[name].probs.argmax(1).astype(np.uint8)


def background(seed: int = 3) -> np.ndarray:
    # A, T only: no motif of the subset reaches 0.8 of its score range on an AT-only
    # background (checked by the empty-background test below)
    return np.random.RandomState(seed).choice([0, 3], size=L).astype(np.uint8)


def contrib_over(tokens: np.ndarray, a: int, b: int, per_base: float) -> np.ndarray:
    """Synthetic actual contributions: ``per_base`` on window bases [a, b), 0 elsewhere."""
    act = np.zeros(L, np.float32)
    act[a:b] = per_base
    return act


def test_background_has_no_instance():
    t = background()
    assert me.best_instances(t, np.zeros(L), C, C + 1, MOTIFS, 0.8) == {}


@pytest.mark.parametrize("name,strand", [("CTCF", "+"), ("GATA1", "-"), ("NRF1", "+")])
def test_break_names_the_motif_with_negative_sign(name, strand):
    site = consensus(name)
    if strand == "-":
        site = (3 - site)[::-1]
    W = len(site)
    start = C - W // 2
    ref = background()
    ref[start : start + W] = site
    # the variant destroys the site: the most informative column of the site goes to the
    # base least likely there (on the site's strand)
    probs = BY_NAME[name].probs if strand == "+" else BY_NAME[name].probs[::-1, ::-1]
    ic = (probs * np.log2(np.maximum(probs, 1e-9) / 0.25)).sum(1)
    j = int(np.argmax(ic))
    ref_base = ref[start + j]
    # put the variant at the window centre: shift the site so its column j sits at C
    shift = C - (start + j)
    ref = np.roll(ref, shift)
    alt = ref.copy()
    alt[C] = int(np.argmin(probs[j]))
    assert alt[C] != ref_base
    s = start + shift
    ref_act = contrib_over(ref, s, s + W, 0.25)   # the model sees the site: +0.25 per base
    alt_act = contrib_over(alt, s, s + W, 0.01)   # and not once it is broken
    r, a, effect, delta = me.variant_effect(ref, alt, ref_act, alt_act, 1, 1, MOTIFS)
    first = effect.split(";")[0]
    assert name in first and first.split()[0] in ("breaks", "weakens")
    assert delta == pytest.approx(W * 0.01 - W * 0.25, abs=1e-5)
    assert delta < 0 and f"({delta:+.2f})" in first
    assert r.startswith(f"{name} {strand}@{s - C:+d}")


def test_create_names_the_motif_with_positive_sign():
    site = consensus("GATA1")
    W = len(site)
    s = C - 3
    alt = background(5)
    alt[s : s + W] = site
    ref = alt.copy()
    ref[C] = 0 if site[3] != 0 else 3  # REF lacks the site's base at the variant
    assert ref[C] != alt[C]
    ref_act = contrib_over(ref, 0, 0, 0.0)
    alt_act = contrib_over(alt, s, s + W, 0.08)
    _, a, effect, delta = me.variant_effect(ref, alt, ref_act, alt_act, 1, 1, MOTIFS)
    assert effect.split(";")[0].startswith(("creates GATA1", "strengthens GATA1"))
    assert delta == pytest.approx(W * 0.08, abs=1e-5) and delta > 0
    assert a.startswith("GATA1 +@-3")


def test_negative_contribution_motif_broken_gives_positive_delta():
    site = consensus("REST")
    W = len(site)
    s = C - 5
    ref = background(7)
    ref[s : s + W] = site
    alt = ref.copy()
    alt[C] = (ref[C] + 2) % 4
    ref_act = contrib_over(ref, s, s + W, -0.1)  # a repressive site
    alt_act = contrib_over(alt, s, s + W, -0.02)
    *_, effect, delta = me.variant_effect(ref, alt, ref_act, alt_act, 1, 1, MOTIFS)
    assert "REST" in effect.split(";")[0] and delta == pytest.approx(W * 0.08, abs=1e-5)


def test_no_overlap_no_effect_and_min_delta():
    site = consensus("CTCF")
    ref = background()
    ref[0 : len(site)] = site  # far from the variant
    alt = ref.copy()
    alt[C] = 3 - ref[C]
    act = contrib_over(ref, 0, len(site), 1.0)
    r, a, effect, delta = me.variant_effect(ref, alt, act, act, 1, 1, MOTIFS)
    assert (r, a, effect) == ("", "", "") and np.isnan(delta)
    # a site that the variant touches but whose contribution barely changes is dropped by min_delta
    W = len(site)
    ref2 = background()
    ref2[C - 2 : C - 2 + W] = site
    alt2 = ref2.copy()
    alt2[C] = (ref2[C] + 1) % 4
    act2 = contrib_over(ref2, C - 2, C - 2 + W, 0.1)
    *_, e2, d2 = me.variant_effect(ref2, alt2, act2, act2 + 1e-4, 1, 1, MOTIFS, min_delta=0.05)
    assert e2 == "" and np.isnan(d2)


def test_deletion_removes_site_on_alt():
    site = consensus("YY1")
    W = len(site)
    s = C
    ref = background(11)
    ref[s : s + W] = site
    # ALT window of a deletion of the whole site: left part kept, the rest shifted in
    alt = np.concatenate([ref[:C + 1], ref[s + W :], background(12)[: W - 1]])[:L].astype(np.uint8)
    ref_act = contrib_over(ref, s, s + W, 0.2)
    alt_act = np.zeros(L, np.float32)
    *_, effect, delta = me.variant_effect(ref, alt, ref_act, alt_act, W, 1, MOTIFS)
    assert effect.startswith("breaks YY1") and delta == pytest.approx(-0.2 * W, abs=1e-5)


def test_annotate_store_writes_columns(tmp_path):
    import zarr

    from veff.interpret import store as istore
    from veff.types import Variant

    site = consensus("CTCF")
    W = len(site)
    s = C - 4
    ref = background()
    ref[s : s + W] = site
    alt = ref.copy()
    alt[C] = (ref[C] + 2) % 4
    eye = np.eye(5, 4, dtype=np.uint8)
    root = istore.create(tmp_path / "c.zarr", overwrite=False, kind="contrib", attrs={})
    vs = [Variant(chrom="chr1", pos1=100, ref="ACGT"[ref[C]], alt="ACGT"[alt[C]], id="v1"),
          Variant(chrom="chr1", pos1=200, ref="A", alt="T", id="v2")]
    istore.write_variants(root, vs)
    hyp = np.zeros((2, L, 4), np.float32)
    hyp[0, s : s + W] = 0.3
    hyp_alt = np.zeros((2, L, 4), np.float32)
    hyp[1] = np.nan  # not attributed (e.g. a failed status): left empty
    istore.write_array(root, "onehot", eye[np.stack([ref, ref])], ["item", "position", "base"])
    istore.write_array(root, "onehot_alt", eye[np.stack([alt, alt])], ["item", "position", "base"])
    istore.write_array(root, "hypothetical", hyp, ["item", "position", "base"])
    istore.write_array(root, "hypothetical_alt", hyp_alt, ["item", "position", "base"])
    n, hit = me.annotate_store(tmp_path / "c.zarr")
    assert (n, hit) == (1, 1)
    z = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert str(z["motif_effect"][0]).split(" ")[1] == "CTCF"
    assert z["motif_delta"][0] == pytest.approx(-0.3 * W, abs=1e-5)
    assert str(z["motif_effect"][1]) == "" and np.isnan(z["motif_delta"][1])
    assert z["motif_delta"].metadata.dimension_names == ("item",)
    me.annotate_store(tmp_path / "c.zarr")  # re-running replaces the columns
