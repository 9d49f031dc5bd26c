"""Competing pretext methods, each implementing freepoint_bench.pretext.PretextMethod."""
