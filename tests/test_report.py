"""`veff report`: a self-contained HTML file that renders in headless Chromium without console
errors, with plots drawn (non-blank screenshot), and optional REF/ALT prediction panels."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_consensus import BG, BPNET_CFG, RAW, hand_bg, make_store  # noqa: E402

from veff import consensus as cs  # noqa: E402
from veff.report import ReportError, bar_svg, write_report  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB/RGBA non-interlaced PNG -> (H, W, C) uint8 (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * ch
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for r in range(h):
        f = raw[r * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, r * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(w, ch), axis=0).reshape(-1) & 0xFF
        elif f == 2:  # Up
            cur = (line + prev) & 0xFF
        else:
            cur = _unfilter_slow(f, line, prev, ch)
        out[r], prev = cur, cur
    return out.reshape(h, w, ch).astype(np.uint8)


def _unfilter_slow(f: int, line: np.ndarray, prev: np.ndarray, ch: int) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the byte just decoded: a plain loop."""
    cur = np.zeros(len(line), dtype=np.int32)
    for i in range(len(line)):
        a = int(cur[i - ch]) if i >= ch else 0
        b, c = int(prev[i]), (int(prev[i - ch]) if i >= ch else 0)
        if f == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (int(line[i]) + pred) & 0xFF
    return cur


def run_chromium(page: Path, tmp: Path, size=(1000, 2600)) -> tuple[np.ndarray, str]:
    shot = tmp / "shot.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'ud'}",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars", f"--window-size={size[0]},{size[1]}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    return decode_png(shot.read_bytes()), proc.stderr


def console_messages(log: str) -> list[str]:
    """Chromium logs every page console message (errors included) as a CONSOLE line."""
    return [ln for ln in log.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln or "Failed to load" in ln]


@pytest.fixture(scope="module")
def store_with_consensus(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    other = np.array([0.0, 99.0, -10.0, 96.0, -99.0, 1.0, 2.0, 1.0, 1.0, 1.0, np.nan])[:, None]
    path = make_store(d / "s.zarr", {
        "a": {"kind": "profile", "stats": {"logfc": RAW, "jsd": np.abs(RAW)}},
        "c": {"kind": "profile", "stats": {"logfc": other}},
        "neg": {"kind": "profile", "stats": {"logfc": -RAW}},
    })
    cs.write_consensus(path, backgrounds={m: hand_bg(m, {"logfc": BG}) for m in ("a", "c", "neg")})
    return path


def test_report_is_self_contained_and_complete(store_with_consensus, tmp_path):
    out = write_report(store_with_consensus, tmp_path / "r.html")
    text = out.read_text()
    assert "<script" not in text.lower()
    # nothing fetched at view time: the only URLs are SVG namespace declarations
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "Consensus: accessibility" in text and "Top variants" in text and "Agreement" in text
    assert text.count("<circle") == 3 * 10  # 3 pairs x 10 variants scored by both members
    assert text.count("background (n=100)") == 3  # one distribution per member
    assert "a:logfc vs neg:logfc" in text and "conflict" in text
    # the top table lists the 10 scored variants by |consensus| (the non-ok row has none)
    assert text.count("&gt;") >= 10 and "rs10" not in text.split("Top variants")[1]


def test_bar_svg_geometry():
    assert 'x="45.0" y="1" width="45.0"' in bar_svg(1.0, signed=True)
    assert 'x="22.5" y="1" width="22.5"' in bar_svg(-0.5, signed=True)
    assert 'x="0.0" y="1" width="45.0"' in bar_svg(0.5, signed=False)
    assert "NA" in bar_svg(float("nan"), signed=True)


def test_report_needs_models_and_genome_together(store_with_consensus, tmp_path):
    with pytest.raises(ReportError, match="both"):
        write_report(store_with_consensus, tmp_path / "r.html", models=["x"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(store_with_consensus, tmp_path):
    out = write_report(store_with_consensus, tmp_path / "r.html")
    img, log = run_chromium(out, tmp_path)
    assert console_messages(log) == [], console_messages(log)
    rgb = img[..., :3].astype(int)
    non_white = (rgb.min(axis=2) < 235).sum()
    coloured = ((np.abs(rgb[..., 0] - rgb[..., 1]) > 40) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 40)).sum()
    try:  # the small decoder agrees with PIL where PIL is installed
        from PIL import Image

        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "shot.png")), img)
    except ImportError:
        pass
    assert non_white > 20_000, non_white  # text, tables and plots drawn
    assert coloured > 500, coloured  # the coloured points, bars and lines of the SVG plots


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_console_check_catches_errors(tmp_path):
    """The harness itself must be able to fail: a page with a console error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('boom'); undefinedFn();</script></body></html>")
    _, log = run_chromium(bad, tmp_path, size=(200, 200))
    assert any("boom" in m for m in console_messages(log))


def test_prediction_panels_with_models(tmp_path):
    """REF/ALT panels recomputed with the model: the ALT profile differs from REF at the SNV."""
    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet
    from veff.store import Store
    from veff.types import Variant

    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 600))
    (tmp_path / "g.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, 600, 60)) + "\n")
    save_checkpoint(tmp_path / "m", arch="bpnet", config=BPNET_CFG.to_dict(),
                    params=bpnet.init(BPNET_CFG, jax.random.key(4)), metadata={"name": "m"})
    from veff.models.registry import load_model

    handle = load_model(str(tmp_path / "m"))
    rows = [Variant(chrom="chr1", pos1=p, ref=seq[p - 1], alt="ACGT"[("ACGT".index(seq[p - 1]) + 2) % 4],
                    id=f"v{k}", fasta_chrom="chr1") for k, p in enumerate((200, 300, 400))]
    s = Store.create(tmp_path / "s.zarr", rows, chunk_size=3, run_config={})
    s.add_model("m", tracks=["m"], stats={"logfc": "f"}, attrs={"kind": "profile", "checkpoint_sha256": handle.sha256})
    s.write_scores("m", 0, {"logfc": np.array([[0.1], [-2.0], [0.5]], np.float32)}, np.zeros(3, bool))
    s.mark_done(0)
    s.finalize()
    s.close()
    out = write_report(tmp_path / "s.zarr", tmp_path / "r.html", genome=tmp_path / "g.fa",
                       models=[str(tmp_path / "m")], num_panels=2)
    text = out.read_text()
    assert "REF/ALT predictions" in text
    # the two top variants by |logfc| are v1 then v2 (no consensus: one model)
    panels = re.findall(r"<figcaption>m: (chr1:\d+)", text)
    assert panels == ["chr1:300", "chr1:400"]
    # each panel draws a REF and an ALT polyline, and they differ
    lines = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="(#[0-9a-f]+)"', text.split("REF/ALT predictions")[1])
    assert [c for _, c in lines] == ["#2166ac", "#d6604d"] * 2
    assert lines[0][0] != lines[1][0]
