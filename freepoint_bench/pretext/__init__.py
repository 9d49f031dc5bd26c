"""pretext"""
