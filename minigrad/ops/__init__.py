"""Primitive ops: each a Function subclass with forward and backward on raw arrays.

Nothing here imports NumPy or CuPy: array code asks ``backend.get_array_module`` (a test
enforces it).
"""
