"""Model interpretation: in-silico saturation mutagenesis (ism), contribution scores
(contrib: DeepLIFT/DeepSHAP, integrated gradients, input × gradient), motif discovery and
annotation (motifs) and their Zarr stores (store). See docs/interpret.md."""
