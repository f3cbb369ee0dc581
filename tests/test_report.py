"""`veff report`: a self-contained HTML file that renders in headless Chromium without console
errors, with plots drawn (non-blank screenshot), legends in colour, no clipped text, background
false-positive rates, raw effects in the top table, and REF/ALT panels on genome coordinates."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
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
from veff import backgrounds as bgmod  # noqa: E402
from veff.report import ReportError, bar_html, browser_url, write_report  # noqa: E402
from veff.report_plots import svg_ids  # noqa: E402

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



_CLIP_CHECK = """<script>
const out = [];
for (const svg of document.querySelectorAll('svg.fig')) {
  const b = svg.getBoundingClientRect();
  for (const t of svg.querySelectorAll('text')) {
    const r = t.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1)
      out.push(svg.dataset.fig + ': ' + t.textContent);
  }
}
document.body.setAttribute('data-clipped', JSON.stringify(out));
document.body.setAttribute('data-texts', String(document.querySelectorAll('svg.fig text').length));
</script>"""


def clipped_texts(page: Path, tmp: Path) -> tuple[list[str], int]:
    """Text of every figure label that the browser lays out outside its SVG (a copy of the page
    with a measuring script; the report itself has none), and how many labels were measured."""
    import json

    probe = tmp / f"probe_{page.stem}.html"
    probe.write_text(page.read_text().replace("</body>", _CLIP_CHECK + "</body>"))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         f"--user-data-dir={tmp / 'ud2'}", "--window-size=1400,1000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    clipped = re.search(r'data-clipped="([^"]*)"', proc.stdout)
    texts = re.search(r'data-texts="(\d+)"', proc.stdout)
    assert clipped and texts, proc.stderr[-2000:]
    return json.loads(html.unescape(clipped.group(1))), int(texts.group(1))


def figures(text: str) -> list[ET.Element]:
    """Every matplotlib figure of a page, parsed as XML (each must be well-formed)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg class=\"fig\".*?</svg>", text, flags=re.S)]


def legend_colours(svg: ET.Element) -> set[str]:
    """Colours (fill or stroke) drawn inside the figure's legends."""
    found = set()
    for el in svg.iter():
        if re.fullmatch(r"(.*-)?legend_\d+", el.get("id") or ""):
            for sub in el.iter():
                style = (sub.get("style") or "") + " " + (sub.get("fill") or "") + " " + (sub.get("stroke") or "")
                found.update(c.lower() for c in re.findall(r"#[0-9a-fA-F]{6}", style))
    return found


def tick_labels(svg: ET.Element, axis: str) -> list[str]:
    out = []
    for el in svg.iter():
        if re.fullmatch(f"(.*-)?{axis}tick_\\d+", el.get("id") or ""):
            out += ["".join(t.itertext()).strip() for t in el.iter("{http://www.w3.org/2000/svg}text")]
    return [t for t in out if t]


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


@pytest.fixture(scope="module")
def consensus_report(store_with_consensus, tmp_path_factory):
    return write_report(store_with_consensus, tmp_path_factory.mktemp("out") / "r.html")


def test_report_is_self_contained_and_complete(consensus_report):
    text = consensus_report.read_text()
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    # nothing fetched at view time: SVG/XLink namespaces, and plain links to the genome browser
    urls = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert {u for u in urls if not u.startswith("https://genome.ucsc.edu/cgi-bin/hgTracks?db=hg38&amp;position=")} <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert not re.search(r"(src|xlink:href|href)=[\"']https?://(?!genome\.ucsc\.edu)", text)
    assert "Consensus: accessibility" in text and "Top variants" in text and "Agreement" in text
    svgs = figures(text)
    assert len(svgs) == 3 + 3  # 3 pair densities, 3 member tails
    ids = [i for s in re.findall(r"<svg class=\"fig\".*?</svg>", text, flags=re.S) for i in svg_ids(s)]
    assert len(ids) == len(set(ids))  # clip paths and markers of different figures never collide
    assert "svg text" not in text.split("</style>")[0]  # no page CSS recolours the figures' text


def test_false_positive_rate_of_strong_is_stated(consensus_report):
    """Background |b| = 1..100: quantile >= 0.95 for 6 of 100 SNVs in every member; the three
    backgrounds are the same SNVs with the same signs, so 6 % of them are called agreed."""
    text = consensus_report.read_text()
    fpr = re.search(r"<p class='fpr'>(.*?)</p>", text, flags=re.S).group(1)
    assert "100 random SNVs" in fpr
    assert "a:logfc 6.00 %; c:logfc 6.00 %; neg:logfc 6.00 %" in fpr
    assert "calls 6.00 % of background SNVs “agreed”" in fpr
    assert "about 1 of the 10 scored variants would be “agreed” by chance; this store has 0" in fpr
    # the calls table carries the same rate beside the observed counts
    assert re.search(r"<td>agreed</td><td class=\"num\">0</td><td class=\"num\">0.00 %</td>"
                     r"<td class=\"num\">6.00 %</td><td class=\"num\">1</td>", text)


def test_top_table_ranks_by_scaled_raw_effect(consensus_report):
    """a and neg cancel, so the scaled effect is c's raw effect / 3 / 95.05 (|b| at q 0.95):
    rs1 (99), rs4 (-99), rs3 (96), rs2 (-10); raw effects and links are in each row."""
    text = consensus_report.read_text().split("<h3>Top variants</h3>")[1]
    ids = re.findall(r"\((rs\d+)\)</a>", text)
    assert ids[:4] == ["rs1", "rs4", "rs3", "rs2"] and "rs10" not in ids and len(ids) == 10
    row = re.search(r"<tr title='chr1:110 A&gt;G \(rs1\)'>(.*?)</tr>", text).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[2:6] == ["single_model", "1", f"{99 / 3 / 95.05:.3g}", "0.33"]
    assert cells[6].startswith("50.5 ") and cells[7].startswith("99 ") and cells[8].startswith("-50.5 ")
    assert "db=hg38&amp;position=chr1:90-130" in row


def test_figures_have_coloured_legends_tooltips_and_full_tick_labels(consensus_report):
    text = consensus_report.read_text()
    svgs = figures(text)
    pairs, tails = svgs[:3], svgs[3:]
    for s in pairs:  # the top variants' calls, each in its own colour
        assert {"#e08214", "#c51b7d", "#9e9e9e"} <= legend_colours(s)
    for s in tails:
        assert {"#d6604d", "#7f7f7f"} <= legend_colours(s)
    # every top variant drawn in a pair plot has a tooltip naming it
    assert "<title>#1 chr1:110 A&gt;G (rs1) (single_model)</title>" in text
    assert len(re.findall(r"<title>#\d+ chr", text)) == 3 * 10
    # tick labels are whole numbers written out in full (symlog axes: 0 and ±10^k)
    xt = tick_labels(pairs[0], "x")
    assert "0" in xt and "100" in xt and "-100" in xt
    assert all(re.fullmatch(r"-?\d+(\.\d+)?(e[+-]\d+)?", t) for t in xt + tick_labels(pairs[0], "y")), xt


def test_thirty_thousand_variants_do_not_grow_the_figures(tmp_path):
    """Density, not one mark per variant: a 30,000-variant store gives figures of the same
    size as a small one, and the top variants stand out by call."""
    from veff.store import Store
    from veff.types import Variant

    n, rng = 30_000, np.random.default_rng(0)
    rows = [Variant(chrom="chr1", pos1=1000 + i, ref="A", alt="G", id=f"v{i}") for i in range(n)]
    s = Store.create(tmp_path / "big.zarr", rows, chunk_size=n, run_config={})
    shared = rng.standard_t(3, n)
    vals = {m: (shared + 0.5 * rng.standard_normal(n))[:, None] * scale for m, scale in (("p", 1.0), ("q", 30.0))}
    for m, x in vals.items():
        s.add_model(m, tracks=[f"{m}_t0"], stats={"logfc": "f"}, attrs={"kind": "profile", "checkpoint_sha256": f"sha-{m}"})
        s.write_scores(m, 0, {"logfc": x.astype(np.float32)}, np.zeros(n, bool))
    s.mark_done(0)
    s.finalize()
    s.close()
    bgv = rng.standard_normal((5000, 1))
    cs.write_consensus(tmp_path / "big.zarr", backgrounds={
        "p": hand_bg("p", {"logfc": bgv}), "q": hand_bg("q", {"logfc": 30 * bgv})})
    out = write_report(tmp_path / "big.zarr", tmp_path / "big.html")
    text = out.read_text()
    assert len(text) < 600_000, len(text)
    assert len(re.findall(r"<title>#\d+ chr", text)) == 25
    if CHROMIUM is not None:
        clipped, measured = clipped_texts(out, tmp_path)
        assert clipped == [] and measured > 40


def test_single_model_store_shows_distribution_and_top_variants(tmp_path):
    """No consensus: the model's tail against its background and the top variants by |raw|,
    each with its quantile against the background of its track."""
    from veff.store import Store

    path = make_store(tmp_path / "s.zarr", {"a": {"kind": "profile", "stats": {"logfc": RAW}}})
    s = Store.open(path)
    bgmod.write_to_store(s.root, hand_bg("a", {"logfc": BG}))
    s.close()
    cs._consolidate(path)  # as write_consensus leaves it: readers use the consolidated metadata
    text = write_report(path, tmp_path / "r.html", assembly=None).read_text()
    assert "Model a" in text and "genome.ucsc.edu" not in text
    body = text.split("<h3>Top variants</h3>")[1]
    rows = re.findall(r"<tr title='[^']*\((rs\d+)\)'>(.*?)</tr>", body)
    assert [r for r, _ in rows][:3] == ["rs6", "rs5", "rs4"]  # |250| > |100| > |-99|
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[2][1])
    assert cells[3] == "-99" and cells[4].endswith("-0.99")
    assert {"#d6604d", "#7f7f7f"} <= legend_colours(figures(text)[0])


def test_bar_html_geometry():
    assert "left:50.0%;width:50.0%" in bar_html(1.0, signed=True)
    assert "left:25.0%;width:25.0%" in bar_html(-0.5, signed=True) and "#2166ac" in bar_html(-0.5, signed=True)
    assert "left:0.0%;width:50.0%" in bar_html(0.5, signed=False)
    assert "<span class='bar'></span>" == bar_html(float("nan"), signed=True)


def test_browser_links():
    assert browser_url("chr2", 100, 1, "hg38") == "https://genome.ucsc.edu/cgi-bin/hgTracks?db=hg38&position=chr2:80-120"
    assert browser_url("X", 5, 3, "mm10").endswith("db=mm10&position=chrX:1-27")
    assert browser_url("MT", 50, 1, "hg19").endswith("position=chrM:30-70")


def test_report_argument_errors(store_with_consensus, tmp_path):
    with pytest.raises(ReportError, match="both"):
        write_report(store_with_consensus, tmp_path / "r.html", models=["x"])
    with pytest.raises(ReportError, match="--model and --genome"):
        write_report(store_with_consensus, tmp_path / "r.html", genes=tmp_path / "g.gtf")
    with pytest.raises(ReportError, match="assembly"):
        write_report(store_with_consensus, tmp_path / "r.html", assembly="hg38&x=1")


def test_missing_matplotlib_is_one_line(store_with_consensus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ReportError, match=r"pip install 'veff\[report\]'"):
        write_report(store_with_consensus, tmp_path / "r.html")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(consensus_report, tmp_path):
    img, log = run_chromium(consensus_report, tmp_path)
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
    assert coloured > 500, coloured  # the coloured points, bars and lines of the plots
    # the legend colours are on screen: the call colours of the top variants
    for hexc in ("#c51b7d", "#e08214"):
        want = np.array([int(hexc[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(rgb - want).max(axis=2) <= 6).sum() > 20, hexc


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_no_figure_text_is_clipped(consensus_report, tmp_path):
    clipped, measured = clipped_texts(consensus_report, tmp_path)
    assert clipped == [] and measured > 60, (clipped, measured)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_clip_check_catches_clipped_text(tmp_path):
    """The measuring harness can fail: a label outside its SVG is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><svg class="fig" data-fig="x" xmlns="http://www.w3.org/2000/svg" width="100" '
                   'height="50"><text x="-20" y="20">3.31e+03</text><text x="30" y="20">ok</text></svg></body></html>')
    clipped, measured = clipped_texts(bad, tmp_path)
    assert clipped == ["x: 3.31e+03"] and measured == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_console_check_catches_errors(tmp_path):
    """The harness itself must be able to fail: a page with a console error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('boom'); undefinedFn();</script></body></html>")
    _, log = run_chromium(bad, tmp_path, size=(200, 200))
    assert any("boom" in m for m in console_messages(log))


def test_output_starts_geometry():
    from veff.report_panels import output_starts

    # L = 10, P = 4 per-base outputs: window [pos1 - 1 - 5, +10) 0-based, outputs from index 3
    np.testing.assert_array_equal(output_starts(100, 10, 4, 1), [98, 99, 100, 101])
    # 3 bins of 2 bp in a 10 bp window: offset 2, bins start at window index 2, 4, 6
    np.testing.assert_array_equal(output_starts(100, 10, 3, 2), [97, 99, 101])


def test_prediction_panels_on_genome_coordinates(tmp_path):
    """REF/ALT panels recomputed with the model for the first --panels top variants, on genome
    coordinates, with the genes of a GTF and the peaks of a BED drawn under them."""
    from veff.checkpoint import save_checkpoint
    from veff.models import bpnet
    from veff.models.registry import load_model
    from veff.report_panels import output_starts
    from veff.store import Store
    from veff.types import Variant

    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 600))
    (tmp_path / "g.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, 600, 60)) + "\n")
    save_checkpoint(tmp_path / "m", arch="bpnet", config=BPNET_CFG.to_dict(),
                    params=bpnet.init(BPNET_CFG, jax.random.key(4)), metadata={"name": "m"})
    handle = load_model(str(tmp_path / "m"))
    rows = [Variant(chrom="chr1", pos1=p, ref=seq[p - 1], alt="ACGT"[("ACGT".index(seq[p - 1]) + 2) % 4],
                    id=f"v{k}", fasta_chrom="chr1") for k, p in enumerate((200, 300, 400))]
    s = Store.create(tmp_path / "s.zarr", rows, chunk_size=3, run_config={})
    s.add_model("m", tracks=["m"], stats={"logfc": "f"}, attrs={"kind": "profile", "checkpoint_sha256": handle.sha256})
    s.write_scores("m", 0, {"logfc": np.array([[0.1], [-2.0], [0.5]], np.float32)}, np.zeros(3, bool))
    s.mark_done(0)
    s.finalize()
    s.close()
    (tmp_path / "g.gtf").write_text(
        'chr1\tt\tgene\t280\t330\t.\t+\t.\tgene_id "G1"; gene_name "GENEA";\n'
        'chr1\tt\texon\t280\t295\t.\t+\t.\tgene_id "G1"; gene_name "GENEA";\n'
        'chr1\tt\texon\t310\t330\t.\t+\t.\tgene_id "G1"; gene_name "GENEA";\n'
        'chr1\tt\texon\t100\t120\t.\t-\t.\tgene_id "G2"; gene_name "FARAWAY";\n')
    (tmp_path / "p.bed").write_text("chr1\t390\t410\n")
    out = write_report(tmp_path / "s.zarr", tmp_path / "r.html", genome=tmp_path / "g.fa",
                       models=[str(tmp_path / "m")], num_panels=2, genes=tmp_path / "g.gtf", peaks=tmp_path / "p.bed")
    text = out.read_text().split("REF/ALT predictions")[1]
    panels = figures(text)
    assert len(panels) == 2  # --panels 2: the two top variants by |logfc|, v1 then v2
    for svg, pos in zip(panels, (300, 400)):
        x0 = output_starts(pos, handle.window_len, handle.output_len, 1)
        words = " ".join("".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}text"))
        assert f"chr1:{x0[0]:,}–{x0[-1]:,}" in words and f"chr1:{pos} " in words
        assert "chr1 position (bp)" in words
        assert {"#2166ac", "#d6604d"} <= legend_colours(svg)  # REF and ALT in their colours
        # the x tick labels are genome positions inside the output span
        ticks = [int(t.replace(",", "")) for t in tick_labels(svg, "x")]
        assert ticks and all(x0[0] <= t <= x0[-1] + 1 for t in ticks), ticks
    words0 = " ".join("".join(t.itertext()) for t in panels[0].iter("{http://www.w3.org/2000/svg}text"))
    words1 = " ".join("".join(t.itertext()) for t in panels[1].iter("{http://www.w3.org/2000/svg}text"))
    assert "GENEA →" in words0 and "FARAWAY" not in words0 and "genes" in words0 and "peaks" not in words0
    assert "peaks" in words1 and "GENEA" not in words1


def test_report_cli_options(store_with_consensus, tmp_path):
    from click.testing import CliRunner

    from veff.cli import main

    r = CliRunner().invoke(main, ["report", str(store_with_consensus), "--out", str(tmp_path / "r.html"),
                                  "--top", "3", "--assembly", "mm10"])
    assert r.exit_code == 0, r.output
    body = (tmp_path / "r.html").read_text().split("<h3>Top variants</h3>")[1]
    assert len(re.findall(r"db=mm10&amp;position=", body)) == 3
    r = CliRunner().invoke(main, ["report", str(store_with_consensus), "--out", str(tmp_path / "r2.html"),
                                  "--genes", str(tmp_path / "r.html")])
    assert r.exit_code == 1 and "--model and --genome" in r.output
