"""Roofline numbers: the machine's measured SGEMM rate and the FLOPs of an inversion iteration.

    python -m benchmarks.roofline [--size 2048]

``sgemm_gflops`` times a large float32 NumPy matmul (the BLAS NumPy uses, with its current
thread count). ``network_flops(rep, layer)`` counts the multiply-adds (×2) of every conv and
fc layer up to ``layer``, once for the forward and once for the input gradient (the weights
are constants in an inversion: no weight gradient), for one image at the network's input
size. Achieved GFLOP/s of an iteration = those FLOPs / the iteration time: everything else
the iteration does (pooling, ReLU, LRN, regularisers, the update) is counted as overhead.
"""
import argparse
import time

import numpy as np


def sgemm_gflops(n=2048, repeat=5):
    """Median GFLOP/s of an n×n float32 matmul (2n³ FLOPs), after one warm-up."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(times)) / 1e9


def network_flops(rep, layer, input_size=None):
    """(conv FLOPs, fc FLOPs) of forward + input gradient to ``layer``, one image."""
    from models.cnn import FC, Conv

    if hasattr(rep, "_steps_for"):  # an ONNX network (models.onnx_net)
        return _onnx_flops(rep, layer)
    modules = rep.modules(layer)
    shape = (3,) + tuple(input_size or rep.input_size)
    conv = fc = 0
    for m in modules:
        out = m.out_shape(shape)
        if isinstance(m, Conv):
            conv += 2 * 2 * out[0] * (m.cin // m.groups) * m.k * m.k * out[1] * out[2]
        elif isinstance(m, FC):
            fc += 2 * 2 * m.cin * m.cout
        shape = out
    return conv, fc


def _onnx_flops(rep, layer):
    conv = fc = 0
    for step in rep._steps_for((layer,)):
        out = rep.output_shape(step.output)
        op = step.node.op_type
        if op == "Conv":
            w = rep._host[step.inputs[1]]  # (O, C/groups, kh, kw)
            conv += 2 * 2 * w.size * out[1] * out[2]
        elif op in ("Gemm", "MatMul"):
            fc += 2 * 2 * rep._host[step.inputs[1]].size if step.inputs[1] in rep._host else 0
    return conv, fc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args(argv)
    print(f"SGEMM {args.size}x{args.size} float32: {sgemm_gflops(args.size):.1f} GFLOP/s")
    import models

    for name, layer in (("caffenet", "conv5"), ("alexnet", "conv5"), ("vgg16", "conv3_3"),
                        ("vgg16", "conv5_3")):
        conv, fc = network_flops(models.get(name, weights=None), layer)
        print(f"{name} {layer}: conv {conv / 1e9:.2f} GFLOP per iteration (fwd + input grad)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
