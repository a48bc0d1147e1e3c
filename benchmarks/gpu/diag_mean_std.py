"""Diagnosis of the one GPU check element over tolerance: mean_std at C=2, T=2
(row 1488 of the 4097 x 2 check, abs error 1.4e-6 against 1.05e-6 allowed).

1. The fused kernel on that row alone (n=1), and inside blocks of other sizes:
   does the error depend on where the row sits?
2. A small Triton kernel computing p = exp(z - m) / s with tl.exp against
   libdevice exp, and '/' against div_rn; errors in float32 ulps against float64.
"""
import torch


def run(out: dict) -> None:
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    from autoal_fast.kernels import uncertainty as K

    res = out.setdefault("diag_mean_std", {})
    x = torch.tensor([[1.353745937347412, 1.5568952560424805], [2.5877861976623535, 2.7953286170959473]],
                     device="cuda").view(2, 1, 2)
    ref = K.reference_scores(None, x.double(), ("mean_std",), dtype=torch.float64)["mean_std"]
    res["ref"] = float(ref)
    res["alone"] = float(K.fused_scores_triton(None, x, False, True)[0]["mean_std"])
    res["alone_looped"] = float(K.fused_scores_triton(None, x, False, True, ONE_BLOCK=False)[0]["mean_std"])
    for bn, nw in ((1, 1), (2, 4), (64, 4)):
        xx = x.repeat(1, 100, 1)
        got = K.fused_scores_triton(None, xx, False, True, BLOCK_N=bn, num_warps=nw)[0]["mean_std"]
        res[f"repeated_BLOCK_N={bn},warps={nw}"] = [float(got.min()), float(got.max())]

    @triton.jit
    def _p(x_ptr, out_ptr, C: tl.constexpr):
        cols = tl.arange(0, C)
        for t in range(2):
            z = tl.load(x_ptr + t * C + cols)
            d = z - tl.max(z, 0)
            e_fast = tl.exp(d)
            e_lib = libdevice.exp(d)
            p_fast = e_fast / tl.sum(e_fast, 0)
            p_rn = tl.math.div_rn(e_lib, tl.sum(e_lib, 0))
            base = out_ptr + t * 4 * C
            tl.store(base + cols, e_fast)
            tl.store(base + C + cols, e_lib)
            tl.store(base + 2 * C + cols, p_fast)
            tl.store(base + 3 * C + cols, p_rn)

    o = torch.empty(2, 4, 2, device="cuda")
    _p[(1,)](x.view(2, 2).contiguous(), o, C=2)
    x64 = x.view(2, 2).double()
    d64 = x64 - x64.max(1, keepdim=True).values
    e64 = d64.exp()
    p64 = e64 / e64.sum(1, keepdim=True)
    ulp = lambda a, b: ((a.double() - b) / torch.finfo(torch.float32).eps / b.abs()).tolist()  # noqa: E731
    res["e_fast_ulps"] = ulp(o[:, 0], e64)
    res["e_libdevice_ulps"] = ulp(o[:, 1], e64)
    res["p_fast_ulps"] = ulp(o[:, 2], p64)
    res["p_rn_libdevice_ulps"] = ulp(o[:, 3], p64)
    for key, p in (("fast", o[:, 2]), ("rn_libdevice", o[:, 3])):
        res[f"std_from_p_{key}"] = float(p.double().std(0, correction=0).mean())
    print(res, flush=True)
