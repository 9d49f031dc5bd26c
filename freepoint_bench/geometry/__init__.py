"""Geometry: plane removal (RANSAC), farthest point sampling, kNN graphs, normals."""
