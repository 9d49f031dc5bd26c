"""The instance segmenter of §3.3 and its parts.

sparse/      the sparse-convolution seam (`get_backend("spconv" | "minkowski")`)
backbone     Res16UNet (tiny / 14 / 18 / 34C) -> per-voxel features and decoder levels
decoder      Mask3D-style query decoder (FPS queries, masked cross-attention)
segmenter    backbone + decoder (`InstanceSegmenter`, `SegmenterConfig`, `TINY`)
voxels       `SparseBatch`, `collate`, `voxelize`
losses       Dice, BCE, Lmean, Lbox (eq. 5-7) and `LossConfig`
matcher      Hungarian matching on the weighted cost
criterion    `SetCriterion`: match + losses on points for every decoder step
inference    `predict_instances`: scored (K, N) point masks
checkpoint   `save_checkpoint`, `load_checkpoint`, `load_into`
"""
