"""The time loops of the three cells compiled with numba: the fast path.

Same functions, arguments and results as ``_numpy_loops`` (the reference they are tested
against, to 1e-12 in float64). docs/derivations.md section 11 maps it; in short, where each
cell's math is (read these first, the rest is scheduling and products):

    cell  equations of one row (H units)       time loop over a block of rows   threads
    RNN   _rnn_act        / _rnn_act_grad      _rnn_fwd_rows / _rnn_bwd_rows    _rnn_fwd_par / _rnn_bwd_par
    LSTM  _lstm_cell_fwd  / _lstm_cell_bwd     _lstm_fwd_rows / _lstm_bwd_rows  _lstm_fwd_par / _lstm_bwd_par
    GRU   _gru_cell_fwd   / _gru_cell_bwd      _gru_fwd_rows / _gru_bwd_rows    _gru_fwd_par / _gru_bwd_par

(``_*_fwd_step`` / ``_*_bwd_step``: one step for all rows, when the step's product is an
``np.matmul`` from Python.) The entry points at the end of the file (``rnn_forward_loop`` ...,
``input_projection``, ``sequence_grads``, ``matmul``) plan each call (``_Plan``) and run these.
Each ``*_cell_*`` kernel is the fused loop of ``_numpy_loops`` written per element: the step
function ``rnn/lstm/gru.step_backward`` with its intermediates folded in (derivations sections
3, 4, 5). In the LSTM kernels ``zr``, ``dzr`` and ``dz`` hold the pre-activations ``a`` of
lstm.py and the doc and their gradient ``da`` (names kept here while other work on this file
lands; ``z`` means the GRU's update gate everywhere else).

Below that, the machinery:

- the batch is split into one block of rows per thread (``numba.get_num_threads()``): the rows
  of a batch never meet in the recurrence, so each thread runs the whole time loop for its rows,
  with no synchronisation per step (``*_par`` run the blocks with ``prange``); a call with
  less work than ``ONE_THREAD_WORK`` multiply-adds runs as one block, on one thread;
- each step's recurrent product for a block never leaves compiled code: in float32 a
  micro-kernel (``_uk_mm``) on W_hh packed once per sequence, in float64 one call of NumPy's
  own BLAS on one thread (``_blas``, ``_gemm``), or for small steps a hand-written product
  (``_vec_mat``);
- the element-wise gate math of a step is one fused, vectorised loop instead of a dozen NumPy
  temporaries, with ``tanh`` and ``sigmoid`` written out (``_tanh`` below) so that LLVM can
  vectorise them (calls to libm's ``tanh`` cannot be), accurate to 2 ulp;
- the input projection before the loop and the weight gradients after it are single large
  products, split into row blocks over the same threads, each block one BLAS call on one
  thread (``input_projection``, ``sequence_grads``, ``matmul``), with the bias additions and
  sums as compiled parallel passes.
- the LSTM in float32 (``lstm_forward_x``, ``lstm_backward_x``) does the input side inside the
  loops instead: each step's x_t W_ih^T before its recurrent product (the biases added in the
  gate math), and each step's dx_t = da_t W_ih and bias gradient while da_t is in cache, which
  saves passes over the (T, B, 4H) arrays and the threads' start and join of each pass; the
  weight gradients stay after the loop (``_weight_grads``), except for 4H <= WGRAD_MAX_GATES
  and H a multiple of 8: there each thread adds them up every few steps
  (``_lstm_bwdw_rows``: its last WGRAD_ROWS rows of da, x and h, by the kernel ``_tn_acc``
  while they are in cache; da's blocks of 8 columns an odd number of cache lines apart,
  ``_ap_rows``), and the threads' partial sums are added at the end, so that no
  (T, B, 4H) array of da is ever written. Its gate math (``_lstm_bwd16``) writes da in 16-float
  vectors, also in the layout ``_tn_acc`` reads; each step's rows of da are then summed for
  the bias gradient (``_add_colsum``) while they are in cache.

- variable lengths (``lengths`` (B,), any order) are handled inside the same loops: at each
  step a block's product covers its rows up to the last one still running (in a batch sorted
  by length, exactly the running rows), a row past its length is skipped (its states and
  gradients zero, its dh carried unchanged), so no step is run for a finished block; with
  ``lengths=None`` every row runs all T steps, the loops do what they did before.

All of a layer's BLAS calls thus run on our threads, one thread each, with OpenBLAS's own
threads kept out (``_blas.single_threaded``): otherwise an OpenBLAS worker left spinning after
a multi-threaded product would share the cores with ours. When NumPy's BLAS cannot be reached,
the products of the larger float64 steps are ``np.matmul`` calls from a thin Python loop and the
large products plain ``np.matmul``.

Nothing is compiled at import: each kernel is compiled, or loaded from numba's on-disk cache,
on its first call for a dtype. Dimensions: T time, B batch, H hidden, G gates.
"""

import math
import threading
from contextlib import contextmanager
from sys import getrefcount as _getrefcount

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import _blas
from ._common import input_projection as _input_projection_ref
from ._common import sequence_grads as _sequence_grads_ref

_OPTS = dict(cache=True, fastmath={"contract"}, nogil=True, error_model="numpy", boundscheck=False)
_POPTS = dict(_OPTS, parallel=True)

# Up to this many multiply-adds in one step's recurrent product for one thread's block of rows
# (rows * G*H * H) the hand-written product runs, above it BLAS. The backward's product
# (G*H -> H) is the narrower one for the hand-written loop, hence its lower switch. Set from
# measurements on a 2-core machine (BENCHMARKS.md); the results do not depend on them.
FUSED_MAX_WORK = 1 << 16
FUSED_MAX_WORK_BACKWARD = 1 << 14
# Testing hooks: the number of row blocks (None: numba's thread count), whether NumPy's BLAS
# may be called from compiled code (False: np.matmul from Python for the larger steps), and
# whether float32 uses the micro-kernel (False: like float64).
SHARDS = None
# A call with fewer multiply-adds than this runs on one thread (when SHARDS is None): starting and
# joining the threads would cost about as much as the work (a few microseconds).
ONE_THREAD_WORK = 1 << 20
USE_BLAS_POINTER = True
USE_MICROKERNEL = True  # float32 steps' products by the micro-kernel below
# The LSTM's input-side products inside the loops (``lstm_forward_x``, ``lstm_backward_x``) only
# when each thread has at least this many rows: each step then reads W_ih too, which a few rows
# do not repay (one big product before or after the loop reads it once).
FUSED_MIN_ROWS = 8

# ----------------------------------------------------------------------------- scalar math
@intrinsic
def _bits_to_float(typingctx, n):
    """Reinterpret the bits of an int32 / int64 as a float32 / float64 (for 2**k)."""
    if not isinstance(n, types.Integer) or n.bitwidth not in (32, 64):
        return None
    sig = (types.float32 if n.bitwidth == 32 else types.float64)(n)
    ftype = ir.FloatType() if n.bitwidth == 32 else ir.DoubleType()

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ftype)

    return sig, codegen


def _tanh(x):
    """tanh for float32 / float64 scalars inside compiled code (see the overload below)."""
    raise NotImplementedError("only callable from numba-compiled code")


def _like(x, v):
    """The constant v in the float type of x (keeps float32 arithmetic in float32)."""
    raise NotImplementedError("only callable from numba-compiled code")


_F32 = np.float32
_TAYLOR = [1.0 / math.factorial(k) for k in range(2, 14)]  # 1/2!, ..., 1/13!


@overload(_like, jit_options=dict(_OPTS, cache=False))
def _like_ov(x, v):
    if x == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: np.float64(v)


@overload(_tanh, jit_options=dict(_OPTS, cache=False))
def _tanh_ov(x):
    """tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x.

    expm1(y), y <= 0, by the usual reduction y = k ln2 + r, |r| <= ln2/2:
    expm1(y) = 2^k expm1(r) + (2^k - 1), expm1(r) by its Taylor series (to 1/8! in float32,
    1/13! in float64, below half an ulp), 2^k built from its bits. No branches and no calls,
    so loops over it vectorise; relative error within 2 ulp (NumPy's is within 1), NaN stays
    NaN, |x| > 30 gives +-1 exactly as tanh does.
    """
    if x == types.float32:
        log2e, ln2_hi, ln2_lo = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
        clip, half, one, two, zero = _F32(30.0), _F32(0.5), _F32(1.0), _F32(2.0), _F32(0.0)
        c2, c3, c4, c5, c6, c7, c8 = (_F32(c) for c in _TAYLOR[:7])

        def impl(x):
            ax = abs(x)
            if ax > clip:
                ax = clip
            y = -(ax + ax)
            k = np.floor(y * log2e + half)
            r = (y - k * ln2_hi) - k * ln2_lo
            q = r + r * r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * c8))))))
            s = _bits_to_float(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))
            em = s * q + (s - one)
            t = -em / (two + em)
            return t if x >= zero else -t

        return impl
    if x == types.float64:
        log2e, ln2_hi, ln2_lo = 1.4426950408889634, 6.93147180369123816490e-01, 1.90821492927058770002e-10
        c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = _TAYLOR

        def impl(x):
            ax = abs(x)
            if ax > 30.0:
                ax = 30.0
            y = -(ax + ax)
            k = np.floor(y * log2e + 0.5)
            r = (y - k * ln2_hi) - k * ln2_lo
            p = c8 + r * (c9 + r * (c10 + r * (c11 + r * (c12 + r * c13))))
            q = r + r * r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * (c7 + r * p))))))
            s = _bits_to_float((np.int64(k) + np.int64(1023)) << np.int64(52))
            em = s * q + (s - 1.0)
            t = -em / (2.0 + em)
            return t if x >= 0.0 else -t

        return impl
    return None


# The float32 forward gate math in 16-float vectors, written in LLVM IR like the micro-kernel:
# LLVM vectorises ``_tanh`` loops in 8-float vectors only (it prefers 256-bit vectors on these
# CPUs). The same operations as ``_tanh_ov``'s float32 ``impl`` and ``_sigmoid``, in 16 lanes
# (the multiply-adds that numba's "contract" may fuse are fused here), so results agree with
# the scalar code to an ulp or two.
_LANES = 16


def _ir_tanh16(builder, x):
    """IR of tanh over a <16 x float> (``_tanh_ov``'s float32 form)."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    vt, it = ir.VectorType(f32, _LANES), ir.VectorType(i32, _LANES)
    mod = builder.module

    def fn(name, n=1):
        return cgutils.get_or_insert_function(mod, ir.FunctionType(vt, [vt] * n), f"llvm.{name}.v16f32")

    c = lambda v: ir.Constant(vt, [float(np.float32(v))] * _LANES)  # noqa: E731
    fma = fn("fma", 3)
    ax = builder.call(fn("fabs"), [x])
    ax = builder.select(builder.fcmp_ordered(">", ax, c(30.0)), c(30.0), ax)
    y = builder.fneg(builder.fadd(ax, ax))
    k = builder.call(fn("floor"), [builder.call(fma, [y, c(1.4426950408889634), c(0.5)])])
    nk = builder.fneg(k)
    r = builder.call(fma, [nk, c(0.693359375), y])
    r = builder.call(fma, [nk, c(-2.12194440e-4), r])
    p = c(_TAYLOR[6])
    for q in range(5, -1, -1):  # 1/7!, ..., 1/2!
        p = builder.call(fma, [r, p, c(_TAYLOR[q])])
    q_ = builder.call(fma, [builder.fmul(r, r), p, r])
    e = builder.shl(builder.add(builder.fptosi(k, it), ir.Constant(it, [127] * _LANES)),
                    ir.Constant(it, [23] * _LANES))
    s2k = builder.bitcast(e, vt)
    em = builder.call(fma, [s2k, q_, builder.fsub(s2k, c(1.0))])
    t = builder.fdiv(builder.fneg(em), builder.fadd(c(2.0), em))
    return builder.select(builder.fcmp_ordered(">=", x, c(0.0)), t, builder.fneg(t))


def _ir_sigmoid16(builder, x):
    vt = ir.VectorType(ir.FloatType(), _LANES)
    half = ir.Constant(vt, [0.5] * _LANES)
    t = _ir_tanh16(builder, builder.fmul(half, x))
    return builder.fmul(half, builder.fadd(ir.Constant(vt, [1.0] * _LANES), t))


@intrinsic
def _lstm_fwd16(typingctx, n, xr, zr, cp, co, tco, ho, H):
    """``_lstm_cell_fwd`` on elements 0:n of a float32 row (n a multiple of 16); xr ... ho
    addresses, H the row's hidden size (the gate blocks of xr and zr lie H apart)."""
    sig = types.void(n, xr, zr, cp, co, tco, ho, H)

    def codegen(context, builder, signature, args):
        i64, f32 = ir.IntType(64), ir.FloatType()
        vt = ir.VectorType(f32, _LANES)
        vp = vt.as_pointer()
        n_, x_, z_, cp_, co_, tco_, ho_, H_ = [context.cast(builder, v, t, types.int64)
                                               for v, t in zip(args, signature.args)]
        xp, zp, cpp, cop, tcp, hp = (builder.inttoptr(v, f32.as_pointer()) for v in (x_, z_, cp_, co_, tco_, ho_))
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), "llvm.fma.v16f32")
        entry = builder.basic_block
        loop = builder.function.append_basic_block("g16_loop")
        done = builder.function.append_basic_block("g16_done")
        builder.cbranch(builder.icmp_signed(">", n_, ir.Constant(i64, 0)), loop, done)
        builder.position_at_end(loop)
        j = builder.phi(i64)
        j.add_incoming(ir.Constant(i64, 0), entry)

        def at(ptr, off):
            return builder.bitcast(builder.gep(ptr, [off]), vp)

        offs = [j, builder.add(j, H_), builder.add(j, builder.mul(H_, ir.Constant(i64, 2))),
                builder.add(j, builder.mul(H_, ir.Constant(i64, 3)))]
        pre = [builder.fadd(builder.load(at(xp, o), align=4), builder.load(at(zp, o), align=4)) for o in offs]
        i_, f_, o_ = _ir_sigmoid16(builder, pre[0]), _ir_sigmoid16(builder, pre[1]), _ir_sigmoid16(builder, pre[3])
        g_ = _ir_tanh16(builder, pre[2])
        c_ = builder.call(fma, [f_, builder.load(at(cpp, j), align=4), builder.fmul(i_, g_)])
        tc = _ir_tanh16(builder, c_)
        for v, o in zip((i_, f_, g_, o_), offs):
            builder.store(v, at(zp, o), align=4)
        builder.store(c_, at(cop, j), align=4)
        builder.store(tc, at(tcp, j), align=4)
        builder.store(builder.fmul(o_, tc), at(hp, j), align=4)
        j_next = builder.add(j, ir.Constant(i64, _LANES))
        j.add_incoming(j_next, builder.basic_block)
        builder.cbranch(builder.icmp_signed("<", j_next, n_), loop, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


def _fwd_vector(xr, zr, c_prev, c_out, tc_out, h_out, H):
    """The first elements of a row ``_lstm_cell_fwd`` leaves to ``_lstm_fwd16``: how many."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_fwd_vector, jit_options=dict(_OPTS, cache=False))
def _fwd_vector_ov(xr, zr, c_prev, c_out, tc_out, h_out, H):
    if xr.dtype == types.float32:
        def impl(xr, zr, c_prev, c_out, tc_out, h_out, H):
            n = H // _LANES * _LANES
            _lstm_fwd16(n, xr.ctypes.data, zr.ctypes.data, c_prev.ctypes.data, c_out.ctypes.data,
                        tc_out.ctypes.data, h_out.ctypes.data, H)
            return n
        return impl
    return lambda xr, zr, c_prev, c_out, tc_out, h_out, H: 0


def _make_lstm_bwd16(with_pack=False):
    """``_lstm_cell_bwd`` on elements 0:n of a float32 row (n a multiple of 16); dr ... dzr
    addresses, H the row's hidden size (the gate blocks of gr and dzr lie H apart). The same
    operations in the same order as the scalar loop, in 16-float vectors: LLVM vectorises that
    loop in 8-float vectors at best (it reads seven rows and writes two), which left the
    backward's gate math about a third slower, most of it waiting for memory. with_pack (H a
    multiple of 8): also da in the layout of ``_tn_acc``'s A: da[k] for k = 8 q + i at
    ap + q * kstride + i (ap: the address of this row's first 8 floats, kstride floats between
    one 8 and the next)."""

    @intrinsic
    def kernel(typingctx, n, dr, dhn, dcn, cp, gr, tcr, dzr, ap, kstride, H):
        sig = types.void(n, dr, dhn, dcn, cp, gr, tcr, dzr, ap, kstride, H)

        def codegen(context, builder, signature, args):
            i64, f32 = ir.IntType(64), ir.FloatType()
            vt = ir.VectorType(f32, _LANES)
            vp = vt.as_pointer()
            n_, dr_, dhn_, dcn_, cp_, gr_, tc_, dz_, ap_, ks_, H_ = [
                context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args)]
            app = builder.inttoptr(ap_, f32.as_pointer())
            i32 = ir.IntType(32)
            halves = [ir.Constant(ir.VectorType(i32, 8), list(range(h, h + 8))) for h in (0, 8)]
            v8p = ir.VectorType(f32, 8).as_pointer()
            drp, dhp, dcp, cpp, grp, tcp, dzp = (builder.inttoptr(v, f32.as_pointer())
                                                 for v in (dr_, dhn_, dcn_, cp_, gr_, tc_, dz_))
            one = ir.Constant(vt, [1.0] * _LANES)
            entry = builder.basic_block
            loop = builder.function.append_basic_block("b16_loop")
            done = builder.function.append_basic_block("b16_done")
            builder.cbranch(builder.icmp_signed(">", n_, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            j = builder.phi(i64)
            j.add_incoming(ir.Constant(i64, 0), entry)

            def at(ptr, off, t=vp):
                return builder.bitcast(builder.gep(ptr, [off]), t)

            def load(ptr, off):
                return builder.load(at(ptr, off), align=4)

            mul, add, sub = builder.fmul, builder.fadd, builder.fsub
            offs = [j, builder.add(j, H_), builder.add(j, builder.mul(H_, ir.Constant(i64, 2))),
                    builder.add(j, builder.mul(H_, ir.Constant(i64, 3)))]
            i_, f_, g_, o_ = (load(grp, o) for o in offs)
            tc = load(tcp, j)
            dh = add(load(drp, j), load(dhp, j))
            dc = add(load(dcp, j), mul(mul(dh, o_), sub(one, mul(tc, tc))))
            da = (mul(mul(mul(dc, g_), i_), sub(one, i_)),
                  mul(mul(mul(dc, load(cpp, j)), f_), sub(one, f_)),
                  mul(mul(dc, i_), sub(one, mul(g_, g_))),
                  mul(mul(mul(dh, tc), o_), sub(one, o_)))
            for v, o in zip(da, offs):
                builder.store(v, at(dzp, o), align=4)
                if with_pack:
                    q = builder.mul(builder.lshr(o, ir.Constant(i64, 3)), ks_)
                    for h, mask in enumerate(halves):
                        off = builder.add(q, ks_) if h else q
                        half = builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)
                        builder.store(half, at(app, off, v8p), align=4)
            builder.store(mul(dc, f_), at(dcp, j), align=4)
            j_next = builder.add(j, ir.Constant(i64, _LANES))
            j.add_incoming(j_next, builder.basic_block)
            builder.cbranch(builder.icmp_signed("<", j_next, n_), loop, done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_lstm_bwd16, _lstm_bwd16_pack = _make_lstm_bwd16(), _make_lstm_bwd16(with_pack=True)


def _bwd_vector(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, kstride, H):
    """The first elements of a row ``_lstm_cell_bwd`` leaves to ``_lstm_bwd16``: how many. ap:
    None, or (H a multiple of 8) the address where ``_lstm_bwd16``'s with_pack stores this row's
    da for ``_tn_acc``."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_bwd_vector, jit_options=dict(_OPTS, cache=False))
def _bwd_vector_ov(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, kstride, H):
    rows = (dr, dh_next, dc_next, c_prev, gr, tcr, dzr)
    if not (dr.dtype == types.float32 and all(r.layout == "C" for r in rows)):
        return lambda dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, kstride, H: 0
    if isinstance(ap, types.NoneType):
        def impl(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, kstride, H):
            n = H // _LANES * _LANES
            _lstm_bwd16(n, dr.ctypes.data, dh_next.ctypes.data, dc_next.ctypes.data, c_prev.ctypes.data,
                        gr.ctypes.data, tcr.ctypes.data, dzr.ctypes.data, 0, 0, H)
            return n
        return impl

    def impl_pack(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, kstride, H):
        n = H // _LANES * _LANES
        _lstm_bwd16_pack(n, dr.ctypes.data, dh_next.ctypes.data, dc_next.ctypes.data, c_prev.ctypes.data,
                         gr.ctypes.data, tcr.ctypes.data, dzr.ctypes.data, ap, kstride, H)
        return n
    return impl_pack


@njit(**_OPTS)
def _sigmoid(x):
    """The reference's overflow-free form 1/(1+e^-x) = (1 + tanh(x/2)) / 2."""
    half = _like(x, 0.5)
    return half * (_like(x, 1.0) + _tanh(half * x))


@njit(**_OPTS)
def _tanh_array(x, out):
    """Element-wise ``_tanh`` over flat arrays (for tests of the scalar function)."""
    for i in range(x.size):
        out[i] = _tanh(x[i])


# ----------------------------------------------------------------------------- products
@intrinsic
def _gemm(typingctx, addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) through the
    function's address addr; a, b, c are addresses, the integers 64-bit (ILP64)."""
    if not isinstance(alpha, types.Float) or beta != alpha:
        return None
    args = (addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    sig = types.void(*args)

    def codegen(context, builder, signature, llargs):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fl = context.get_value_type(alpha)
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, fl, ptr, i64, ptr, i64, fl, ptr, i64])

        def val(i, kind):
            v = context.cast(builder, llargs[i], signature.args[i], types.int64)
            if kind == "ptr":
                return builder.inttoptr(v, ptr)
            return builder.trunc(v, i32) if kind == "i32" else v

        fn = builder.inttoptr(val(0, "i64"), fnty.as_pointer())
        builder.call(fn, [ir.Constant(i32, 101), val(1, "i32"), val(2, "i32"), val(3, "i64"), val(4, "i64"),
                          val(5, "i64"), llargs[6], val(7, "ptr"), val(8, "i64"), val(9, "ptr"), val(10, "i64"),
                          llargs[11], val(12, "ptr"), val(13, "i64")])
        return context.get_dummy_value()

    return sig, codegen


@njit(**_OPTS)
def _mm(gemm, ta, A, tb, Bm, beta, C):
    """C = op(A) @ op(Bm) + beta * C by the BLAS at address gemm, op(X) = X.T if t else X.

    2-D arrays with contiguous rows (any row stride), as the row blocks of the loops are."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        for i in range(M):
            for j in range(N):
                C[i, j] = beta * C[i, j]
        return
    one = _like(beta, 1.0)
    _gemm(gemm, 112 if ta else 111, 112 if tb else 111, M, N, K, one,
          A.ctypes.data, _ld(A), Bm.ctypes.data, _ld(Bm), beta, C.ctypes.data, _ld(C))


@njit(**_OPTS)
def _ld(X):
    """BLAS's leading dimension of a 2-D array with contiguous rows: its row stride, or for a
    single row (whose stride NumPy leaves arbitrary) its length."""
    if X.shape[0] == 1:
        return max(X.shape[1], 1)
    return max(X.strides[0] // X.itemsize, 1)


# A float32 micro-kernel for the steps' products, with the weights packed once per sequence.
# C[i, :] (+)= A[i, :] @ Wt for a block of MR rows and one panel of NR = 16 columns of Wt, the
# panel stored as Bp[k, 0:16] (contiguous, so each k reads two 8-float vectors): 2*MR vector
# accumulators live in registers through the whole k loop (AVX2 has 16; MR = 6 uses 12), one
# fused multiply-add per accumulator and k. Written in LLVM IR through numba's ``intrinsic``
# because LLVM does not vectorise the same thing written as scalar loops. OpenBLAS packs the
# weight matrix again on every call; here it is packed once per sequence (``_pack``), which is
# what makes the small per-step products fast. Sums run over k in order: the same rounding as a
# plain loop with fused multiply-adds.
_NR = 16
_MR = 6


def _fma_rows(builder, fma, a_ptr, a_offs, bs, accs, splat_mask):
    """LLVM IR shared by the product kernels, one k of the tile: for each row i, the float of A at
    a_offs[i], broadcast, times each B vector of ``bs``, added to its accumulator (row-major in
    ``accs``). -> the new accumulators."""
    vt = bs[0].type
    undef = ir.Constant(vt, ir.Undefined)
    new = []
    for i, off in enumerate(a_offs):
        ai = builder.load(builder.gep(a_ptr, [off]), align=4)
        av = builder.shuffle_vector(builder.insert_element(undef, ai, ir.Constant(ir.IntType(32), 0)),
                                    undef, splat_mask)
        for h, b in enumerate(bs):
            new.append(builder.call(fma, [av, b, accs[len(bs) * i + h]]))
    return new


def _open_k_loop(builder, K_, n_acc, zero, name):
    """LLVM IR shared by the product kernels: the loop over k = 0..K-1 (skipped when K = 0) with
    ``n_acc`` vector accumulators starting at ``zero``. -> (entry, loop, done, k, accs)."""
    i64 = ir.IntType(64)
    entry = builder.basic_block
    loop = builder.function.append_basic_block(f"{name}_loop")
    done = builder.function.append_basic_block(f"{name}_done")
    builder.cbranch(builder.icmp_signed(">", K_, ir.Constant(i64, 0)), loop, done)
    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(ir.Constant(i64, 0), entry)
    accs = []
    for _ in range(n_acc):
        phi = builder.phi(zero.type)
        phi.add_incoming(zero, entry)
        accs.append(phi)
    return entry, loop, done, k, accs


def _close_k_loop_and_store(builder, k, K_, accs, new, loop, done, entry, zero, acc_, c_ptr, ldc_, mr,
                            nvec, lanes):
    """LLVM IR shared by the product kernels: close the loop over k (its accumulators ``accs``
    take this iteration's ``new``), then store the mr x nvec tile of ``lanes``-float vectors
    to C (row stride ldc), adding to what C holds when ``acc_`` != 0 (K = 0: zeros)."""
    i64 = ir.IntType(64)
    vt = ir.VectorType(ir.FloatType(), lanes)
    vp = vt.as_pointer()
    k_next = builder.add(k, ir.Constant(i64, 1))
    latch = builder.basic_block
    k.add_incoming(k_next, latch)
    for phi, v in zip(accs, new):
        phi.add_incoming(v, latch)
    builder.cbranch(builder.icmp_signed("<", k_next, K_), loop, done)
    builder.position_at_end(done)
    results = []  # the phis first: they must head the block
    for v in new:
        res = builder.phi(vt)
        res.add_incoming(zero, entry)
        res.add_incoming(v, latch)
        results.append(res)
    add = builder.icmp_signed("!=", acc_, ir.Constant(i64, 0))
    for i in range(mr):
        for h in range(nvec):
            res = results[nvec * i + h]
            off = builder.add(builder.mul(ir.Constant(i64, i), ldc_), ir.Constant(i64, lanes * h))
            p = builder.bitcast(builder.gep(c_ptr, [off]), vp)
            with builder.if_else(add) as (then, otherwise):
                with then:
                    builder.store(builder.fadd(builder.load(p, align=4), res), p, align=4)
                with otherwise:
                    builder.store(res, p, align=4)


def _make_microkernel(mr, panels=1, lanes=8):
    """The kernel for mr rows and ``panels`` consecutive panels (16 * panels columns of C; the
    panels of a ``_pack`` result lie one after the other, K * 16 floats apart), in vectors of
    ``lanes`` floats: 16 / lanes * panels accumulators per row."""
    per = _NR // lanes * panels  # accumulators (vectors) per row

    @intrinsic
    def kernel(typingctx, K, a, lda, bp, c, ldc, accumulate):
        """C[0:mr, 0:16*panels] (+)= A[0:mr, 0:K] @ [Bp[0:K, 0:16] | Bp'[0:K, 0:16] ...]; a, bp,
        c addresses (float32), lda, ldc row strides in elements, accumulate 0 (store) or 1 (add)."""
        sig = types.void(K, a, lda, bp, c, ldc, accumulate)

        def codegen(context, builder, signature, args):
            i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
            vt = ir.VectorType(f32, lanes)
            fp, vp = f32.as_pointer(), vt.as_pointer()
            K_, a_, lda_, bp_, c_, ldc_, acc_ = [
                context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args)]
            a_ptr, b_ptr, c_ptr = (builder.inttoptr(v, fp) for v in (a_, bp_, c_))
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fma.v{lanes}f32")
            zero = ir.Constant(vt, None)
            splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
            panel = builder.mul(K_, ir.Constant(i64, _NR))  # floats from one panel to the next
            entry, loop, done, k, accs = _open_k_loop(builder, K_, per * mr, zero, "uk")
            row = builder.mul(k, ir.Constant(i64, _NR))
            bs = []
            for q in range(panels):
                base = builder.add(row, builder.mul(panel, ir.Constant(i64, q))) if q else row
                for v in range(_NR // lanes):
                    off = builder.add(base, ir.Constant(i64, v * lanes)) if v else base
                    bs.append(builder.load(builder.bitcast(builder.gep(b_ptr, [off]), vp), align=4))
            a_offs = [builder.add(builder.mul(ir.Constant(i64, i), lda_), k) for i in range(mr)]
            new = _fma_rows(builder, fma, a_ptr, a_offs, bs, accs, splat_mask)
            _close_k_loop_and_store(builder, k, K_, accs, new, loop, done, entry, zero, acc_, c_ptr, ldc_,
                                    mr, per, lanes)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_uk1, _uk2, _uk3, _uk4, _uk5, _uk6 = (_make_microkernel(mr) for mr in range(1, _MR + 1))
# Two panels at once in 16-float vectors, blocks of up to 8 rows (AVX-512: 32 registers of 16
# floats; 16 accumulators for 8 rows, twice the work per instruction of the kernels above, and
# batches of 8, 16, 32, ... rows split into whole blocks). Each element's sum is the same sequence
# of fused multiply-adds over k, so the results are bit for bit those of the others.
_MRW = 8
_uw1, _uw2, _uw3, _uw4, _uw5, _uw6, _uw7, _uw8 = (_make_microkernel(mr, 2, 16) for mr in range(1, _MRW + 1))



def _make_tn_kernel(mr, nvec):
    """The weight gradients' kernel: C[0:mr, 0:16*nvec] (+)= sum over k of A[k, 0:mr]^T B[k, :],
    A and B rows k of two arrays with contiguous rows (the rows of dz and of x or h), in
    16-float vectors: per k, mr broadcasts of A's row k and nvec loads of B's row k, mr * nvec
    fused multiply-adds into accumulators held in registers through the k loop (the wide kernel
    above with A read along its columns and B unpacked)."""
    lanes = 16

    @intrinsic
    def kernel(typingctx, K, a, lda, b, ldb, c, ldc, accumulate):
        """a, b, c addresses (float32), lda, ldb, ldc row strides in elements, accumulate 0 or 1."""
        sig = types.void(K, a, lda, b, ldb, c, ldc, accumulate)

        def codegen(context, builder, signature, args):
            i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
            vt = ir.VectorType(f32, lanes)
            fp, vp = f32.as_pointer(), vt.as_pointer()
            K_, a_, lda_, b_, ldb_, c_, ldc_, acc_ = [
                context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args)]
            a_ptr, b_ptr, c_ptr = (builder.inttoptr(v, fp) for v in (a_, b_, c_))
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fma.v{lanes}f32")
            zero = ir.Constant(vt, None)
            splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
            entry, loop, done, k, accs = _open_k_loop(builder, K_, nvec * mr, zero, "tn")
            brow, arow = builder.mul(k, ldb_), builder.mul(k, lda_)
            bs = []
            for v in range(nvec):
                off = builder.add(brow, ir.Constant(i64, v * lanes)) if v else brow
                bs.append(builder.load(builder.bitcast(builder.gep(b_ptr, [off]), vp), align=4))
            a_offs = [builder.add(arow, ir.Constant(i64, i)) if i else arow for i in range(mr)]
            new = _fma_rows(builder, fma, a_ptr, a_offs, bs, accs, splat_mask)
            _close_k_loop_and_store(builder, k, K_, accs, new, loop, done, entry, zero, acc_, c_ptr, ldc_,
                                    mr, nvec, lanes)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_tw1, _tw2, _tw3, _tw4, _tw5, _tw6, _tw7, _tw8 = (_make_tn_kernel(mr, 2) for mr in range(1, _MRW + 1))
_tv1, _tv2, _tv3, _tv4, _tv5, _tv6, _tv7, _tv8 = (_make_tn_kernel(mr, 1) for mr in range(1, _MRW + 1))

def _target_has_avx512():
    """Whether numba compiles for AVX-512: the features it is told to compile for
    (NUMBA_CPU_FEATURES, e.g. a host's list with the avx512 ones turned off, to build for another
    machine or to try the AVX2 kernels here), else the host's."""
    try:
        from numba.core import config

        if config.CPU_FEATURES is not None:
            return "+avx512f" in config.CPU_FEATURES.split(",")
        from llvmlite import binding

        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except Exception:
        return False


WIDE_MICROKERNEL = _target_has_avx512()  # two panels per call in 16-float vectors
# The weight gradients' kernel 32 columns wide (2 x 8 rows of 16-float vectors: 16 of AVX-512's 32
# registers) on AVX-512, else 16 (8 rows of two 8-float vectors: AVX2 has 16 registers, and the
# 32-column tile spilled its accumulators to memory).
TN_WIDE = WIDE_MICROKERNEL
# ... and without AVX-512, each block of 8 rows as _MR (6) rows, then the rest: the 8-row tile's
# 16 accumulators and its loads do not fit in AVX2's 16 registers, the 6-row tile's 12 do
# (measured on an AVX2 EPYC, with the 16-float gate math below: the LSTM's training step 10-15 %
# faster at H = 128 and 192). The LSTM's float32 gate math runs in 16-float vectors
# (``_lstm_fwd16``, ``_lstm_bwd16``) on every CPU: LLVM lowers them to what the CPU has (two
# 8-float halves on AVX2); the loops they replace vectorise in 8 floats at best and write da
# for ``_tn_acc`` one float at a time.
TN_SPLIT = not TN_WIDE


@njit(**_OPTS)
def _aligned_empty(n):
    """n float32 (uninitialised) starting on a 64-byte boundary. Each k of a panel is one 16-float
    vector load in the micro-kernels; from an address 32 bytes off a cache line every such load
    spans two lines, which made the products up to a quarter slower (NumPy's and numba's arrays
    are only 16- or 32-byte aligned)."""
    buf = np.empty(n + _NR, np.float32)
    s = ((64 - buf.ctypes.data % 64) % 64) // 4
    return buf[s : s + n]


@njit(**_OPTS)
def _pack_panels(Wt, Bp, p0, p1):
    """Panels p0:p1 of ``_pack``: Bp[p, k, j] = Wt[k, 16 p + j], zeros past the last column (only
    there: the rest is written once, not zeroed first). Wt is read along its contiguous axis
    (the transpose of a C array, W^T, column by column)."""
    K, N = Wt.shape
    zero = np.float32(0.0)
    by_columns = Wt.strides[0] < Wt.strides[1]
    for p in range(p0, p1):
        ncols = min(_NR, N - p * _NR)
        if by_columns:
            for j in range(ncols):
                for k in range(K):
                    Bp[p, k, j] = Wt[k, p * _NR + j]
        else:
            for k in range(K):
                for j in range(ncols):
                    Bp[p, k, j] = Wt[k, p * _NR + j]
        for k in range(K):
            for j in range(ncols, _NR):
                Bp[p, k, j] = zero


@njit(**_OPTS)
def _pack(Wt):
    """Wt (K, N) float32 -> Bp (ceil(N/16), K, 16): panels of 16 columns, zero-padded, starting
    on a 64-byte boundary (``_aligned_empty``)."""
    K, N = Wt.shape
    P = (N + _NR - 1) // _NR
    Bp = _aligned_empty(P * K * _NR).reshape((P, K, _NR))
    _pack_panels(Wt, Bp, 0, P)
    return Bp


@njit(**_OPTS)
def _uk_mm(A, Bp, C, accumulate, scratch):
    """C (+)= A @ Wt for float32 A (m, K), C (m, N) with contiguous rows, Wt packed by ``_pack``.
    scratch (MR, 16): the last, partial panel goes through it. Pairs of full panels go through
    the wide kernels where the CPU has them (``WIDE_MICROKERNEL``)."""
    m, K = A.shape
    N = C.shape[1]
    lda, ldc = A.strides[0] // 4, C.strides[0] // 4
    P = Bp.shape[0]
    p = 0
    while p < P:
        if WIDE_MICROKERNEL and N - p * _NR >= 2 * _NR:
            bptr = Bp[p].ctypes.data
            for i0 in range(0, m, _MRW):
                mr = min(_MRW, m - i0)
                aptr = A.ctypes.data + i0 * lda * 4
                cptr = C.ctypes.data + (i0 * ldc + p * _NR) * 4
                if mr == 8:
                    _uw8(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 7:
                    _uw7(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 6:
                    _uw6(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 5:
                    _uw5(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 4:
                    _uw4(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 3:
                    _uw3(K, aptr, lda, bptr, cptr, ldc, accumulate)
                elif mr == 2:
                    _uw2(K, aptr, lda, bptr, cptr, ldc, accumulate)
                else:
                    _uw1(K, aptr, lda, bptr, cptr, ldc, accumulate)
            p += 2
            continue
        _uk_panel(A, Bp, C, accumulate, scratch, p, lda, ldc)
        p += 1


@njit(**_OPTS)
def _uk_panel(A, Bp, C, accumulate, scratch, p, lda, ldc):
    """``_uk_mm`` for panel p alone (16 columns, or fewer through scratch)."""
    m, K = A.shape
    N = C.shape[1]
    ncols = min(_NR, N - p * _NR)
    bptr = Bp[p].ctypes.data
    for i0 in range(0, m, _MR):
        mr = min(_MR, m - i0)
        aptr = A.ctypes.data + i0 * lda * 4
        if ncols == _NR:
            cptr, cl = C.ctypes.data + (i0 * ldc + p * _NR) * 4, ldc
        else:
            for i in range(mr):
                for j in range(ncols):
                    scratch[i, j] = C[i0 + i, p * _NR + j]
            cptr, cl = scratch.ctypes.data, _NR
        if mr == 6:
            _uk6(K, aptr, lda, bptr, cptr, cl, accumulate)
        elif mr == 5:
            _uk5(K, aptr, lda, bptr, cptr, cl, accumulate)
        elif mr == 4:
            _uk4(K, aptr, lda, bptr, cptr, cl, accumulate)
        elif mr == 3:
            _uk3(K, aptr, lda, bptr, cptr, cl, accumulate)
        elif mr == 2:
            _uk2(K, aptr, lda, bptr, cptr, cl, accumulate)
        else:
            _uk1(K, aptr, lda, bptr, cptr, cl, accumulate)
        if ncols < _NR:
            for i in range(mr):
                for j in range(ncols):
                    C[i0 + i, p * _NR + j] = scratch[i, j]



@njit(**_OPTS)
def _tn_call(wide, mr, K, a, lda, b, ldb, c, ldc, accumulate):
    """The ``_make_tn_kernel`` kernel for mr rows (1..8) and 32 columns (wide) or 16."""
    if wide:
        if mr == 8:
            _tw8(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 7:
            _tw7(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 6:
            _tw6(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 5:
            _tw5(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 4:
            _tw4(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 3:
            _tw3(K, a, lda, b, ldb, c, ldc, accumulate)
        elif mr == 2:
            _tw2(K, a, lda, b, ldb, c, ldc, accumulate)
        else:
            _tw1(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 8:
        _tv8(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 7:
        _tv7(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 6:
        _tv6(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 5:
        _tv5(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 4:
        _tv4(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 3:
        _tv3(K, a, lda, b, ldb, c, ldc, accumulate)
    elif mr == 2:
        _tv2(K, a, lda, b, ldb, c, ldc, accumulate)
    else:
        _tv1(K, a, lda, b, ldb, c, ldc, accumulate)


@njit(**_OPTS)
def _tn_acc(ap, K, k, M, X, C, accumulate, sb, sc):
    """C (+)= A^T @ X for float32 A (k, M) stored in ap as blocks of 8 columns, A[r, 8 q + i] at
    ap[q * K * 8 + r * 8 + i] (K >= k rows allocated per block; each k of the kernel then reads
    its 8 values from one place, and a block's rows lie together, not a page or more apart as
    A's columns would), X (k, N) and C (M, N) with contiguous rows (any row stride): blocks of 8
    rows of C by 32 columns (then 16) by ``_make_tn_kernel``'s kernels, the last < 16 columns
    through scratch: sb (>= k, 16), sc (8, 16). Each element's sum runs over the rows in order
    and is then added to C (accumulate 1) or stored (0)."""
    N = X.shape[1]
    if k == 0:
        return
    ldb, ldc = _ld(X), _ld(C)
    a0, b0, c0 = ap.ctypes.data, X.ctypes.data, C.ctypes.data
    j0 = 0
    while N - j0 >= 16:
        wide = TN_WIDE and N - j0 >= 32
        for i0 in range(0, M, _MRW):
            mr = min(_MRW, M - i0)
            if TN_SPLIT and mr > _MR:  # rows _MR: of the block: its columns _MR: in ap
                _tn_call(False, _MR, k, a0 + i0 * K * 4, _MRW, b0 + j0 * 4, ldb,
                         c0 + (i0 * ldc + j0) * 4, ldc, accumulate)
                _tn_call(False, mr - _MR, k, a0 + (i0 * K + _MR) * 4, _MRW, b0 + j0 * 4, ldb,
                         c0 + ((i0 + _MR) * ldc + j0) * 4, ldc, accumulate)
                continue
            _tn_call(wide, mr, k, a0 + i0 * K * 4, _MRW, b0 + j0 * 4, ldb,
                     c0 + (i0 * ldc + j0) * 4, ldc, accumulate)
        j0 += 32 if wide else 16
    r = N - j0
    if r == 0:
        return
    for kk in range(k):
        for j in range(16):
            sb[kk, j] = X[kk, j0 + j] if j < r else np.float32(0.0)
    for i0 in range(0, M, _MRW):
        mr = min(_MRW, M - i0)
        for i in range(mr):
            for j in range(r):
                sc[i, j] = C[i0 + i, j0 + j]
        _tn_call(False, mr, k, a0 + i0 * K * 4, _MRW, sb.ctypes.data, 16, sc.ctypes.data, 16, accumulate)
        for i in range(mr):
            for j in range(r):
                C[i0 + i, j0 + j] = sc[i, j]

@njit(**_OPTS)
def _vec_mat(v, M, out):
    """out[:] = v @ M for v (K,), M (K, N) C-contiguous: rows of M scaled and summed, four at a
    time (a quarter of the loads and stores of out), the inner loop running along N
    (contiguous, vectorised)."""
    K, N = M.shape
    k0 = K % 4
    if k0 == 0:
        for n in range(N):
            out[n] = ((v[0] * M[0, n] + v[1] * M[1, n]) + v[2] * M[2, n]) + v[3] * M[3, n]
        k0 = 4
    else:
        for n in range(N):
            out[n] = v[0] * M[0, n]
        for k in range(1, k0):
            vk = v[k]
            for n in range(N):
                out[n] += vk * M[k, n]
    for k in range(k0, K, 4):
        a0, a1, a2, a3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        for n in range(N):
            out[n] += ((a0 * M[k, n] + a1 * M[k + 1, n]) + a2 * M[k + 2, n]) + a3 * M[k + 3, n]


@njit(**_OPTS)
def _block(s, n, M):
    """Rows [m0, m1) of block s out of n of M rows."""
    return s * M // n, (s + 1) * M // n


@njit(**_OPTS)
def _running_end(lengths, t, b0, b1):
    """1 + the last row of b0:b1 still running at step t (t < lengths[row]), or b0 if none: the
    rows b0:end are the ones whose step product is computed (in a batch sorted by length,
    exactly the running ones; otherwise they include some that have ended, whose results are
    not used)."""
    e = b1
    while e > b0 and lengths[e - 1] <= t:
        e -= 1
    return e


@njit(**_OPTS)
def _fill(r, v):
    """r[:] = v for one row."""
    for j in range(r.shape[0]):
        r[j] = v


@njit(**_OPTS)
def _clear_running(dh, lengths, t, b0, e):
    """dh[b] = 0 on the running rows of b0:e (before a product adds into them, so that the rows
    that have ended keep theirs)."""
    zero = dh.dtype.type(0.0)
    for b in range(b0, e):
        if t < lengths[b]:
            _fill(dh[b], zero)


@njit(**_OPTS)
def _take_running(src, dst, lengths, t):
    """dst[b] = src[b] on the rows running at step t (the per-step path's products)."""
    for b in range(dst.shape[0]):
        if t < lengths[b]:
            for j in range(dst.shape[1]):
                dst[b, j] = src[b, j]


@njit(**_POPTS)
def _mm_par(gemm, ta, A, tb, Bm, C, n):
    """C = op(A) @ op(Bm), the rows of C in n blocks over the threads (each block reads the
    matching rows of op(A) and all of op(Bm))."""
    M = C.shape[0]
    if n == 1:  # one block: no threads to start
        _mm(gemm, ta, A, tb, Bm, C.dtype.type(0.0), C)
        return
    for s in prange(n):
        m0, m1 = _block(s, n, M)
        if ta:
            _mm(gemm, True, A[:, m0:m1], tb, Bm, C.dtype.type(0.0), C[m0:m1])
        else:
            _mm(gemm, False, A[m0:m1], tb, Bm, C.dtype.type(0.0), C[m0:m1])


@njit(**_POPTS)
def _mm2_par(gemm, A, X1, C1, X2, C2, n):
    """C1 = A^T @ X1 and C2 = A^T @ X2 in one parallel region: the rows of both in n blocks
    (the LSTM's two weight gradients from the same da)."""
    M = C1.shape[0]
    zero = C1.dtype.type(0.0)
    if n == 1:  # one block: no threads to start
        _mm(gemm, True, A, False, X1, zero, C1)
        _mm(gemm, True, A, False, X2, zero, C2)
        return
    for s in prange(n):
        m0, m1 = _block(s, n, M)
        _mm(gemm, True, A[:, m0:m1], False, X1, zero, C1[m0:m1])
        _mm(gemm, True, A[:, m0:m1], False, X2, zero, C2[m0:m1])


@njit(**_POPTS)
def _add_rows_par(C, b1, b2, two, n):
    """C[i] = (C[i] + b1) + b2 (b2 only if two) for every row, in n blocks (the reference's
    order of additions)."""
    M = C.shape[0]
    if n == 1:  # one block: no threads to start
        _add_rows(C, b1, b2, two, 0, M)
        return
    for s in prange(n):
        m0, m1 = _block(s, n, M)
        _add_rows(C, b1, b2, two, m0, m1)


@njit(**_OPTS)
def _add_rows(C, b1, b2, two, m0, m1):
    """``_add_rows_par`` on rows m0:m1."""
    N = C.shape[1]
    for i in range(m0, m1):
        if two:
            for j in range(N):
                C[i, j] = (C[i, j] + b1[j]) + b2[j]
        else:
            for j in range(N):
                C[i, j] = C[i, j] + b1[j]


@njit(**_OPTS)
def _colsum_block(A, m0, m1, part):
    """part += the sum of rows m0:m1 of A, in chunks of 64 rows."""
    N = A.shape[1]
    chunk = np.empty(N, A.dtype)
    for c0 in range(m0, m1, 64):
        for j in range(N):
            chunk[j] = A[c0, j]
        for i in range(c0 + 1, min(c0 + 64, m1)):
            for j in range(N):
                chunk[j] += A[i, j]
        for j in range(N):
            part[j] += chunk[j]


@njit(**_POPTS)
def _colsum_par(A, n):
    """A.sum(axis=0) for A (M, N): n blocks of rows summed in parallel, each in chunks of 64
    rows (error growing like 64 + M/64 roundings, not M), then the n partial sums. The zeros
    are filled by plain loops: in a parallel function each np.zeros is a parallel loop of its
    own, which starts and joins the threads (twice per call, even with n = 1)."""
    M, N = A.shape
    zero = A.dtype.type(0.0)
    part = np.empty((n, N), A.dtype)
    for s in range(n):
        _fill(part[s], zero)
    if n == 1:  # one block: no threads to start
        _colsum_block(A, 0, M, part[0])
    else:
        for s in prange(n):
            m0, m1 = _block(s, n, M)
            _colsum_block(A, m0, m1, part[s])
    out = np.empty(N, A.dtype)
    _fill(out, zero)
    for s in range(n):
        for j in range(N):
            out[j] += part[s, j]
    return out


# ----------------------------------------------------------------------------- RNN
@njit(**_OPTS)
def _rnn_act(xr, ar, hr, relu, H):
    """hr = act(xr + ar) for one row (ar holds the recurrent product)."""
    zero = _like(xr[0], 0.0)
    if relu:
        for j in range(H):
            a = xr[j] + ar[j]
            hr[j] = zero if a < zero else a
    else:
        for j in range(H):
            hr[j] = _tanh(xr[j] + ar[j])


@njit(**_OPTS)
def _rnn_act_grad(dr, g, hr, ar, relu, H):
    """ar = (dr + g) * act'(a), act' from the output hr: relu [h > 0], tanh 1 - h^2.

    The RNN's backward line: ``rnn.step_backward`` (dh = dout + dh_next; da = dh * phi'(a)),
    docs/derivations.md section 3. The product da @ W_hh follows in ``_rnn_bwd_rows``."""
    one = _like(dr[0], 1.0)
    zero = _like(dr[0], 0.0)
    if relu:
        for j in range(H):
            ar[j] = (dr[j] + g[j]) * (one if hr[j] > zero else zero)
    else:
        for j in range(H):
            h = hr[j]
            ar[j] = (dr[j] + g[j]) * (one - h * h)


@njit(**_OPTS)
def _rnn_fwd_rows(gemm, Wp, xw, W_hhT, relu, hs, lengths, b0, b1):
    """Batch rows b0:b1 through their steps: hs[t+1] = act(xw[t] + hs[t] @ W_hh^T) while
    t < lengths[b], zero after. The step's product: by the micro-kernel if Wp (W_hh^T packed)
    is not empty, else by BLAS at address gemm if not 0, else hand-written, row by row."""
    T, _, H = xw.shape
    zero = xw.dtype.type(0.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    acc = np.empty((b1 - b0, H), xw.dtype)  # the recurrent product of the block
    for t in range(T):
        e = _running_end(lengths, t, b0, b1)
        if micro:
            _uk_mm(hs[t, b0:e], Wp, acc[: e - b0], 0, scratch)
        elif gemm:
            _mm(gemm, False, hs[t, b0:e], False, W_hhT, zero, acc[: e - b0])
        for b in range(b0, b1):
            if t >= lengths[b]:
                _fill(hs[t + 1, b], zero)
                continue
            if not (micro or gemm):
                _vec_mat(hs[t, b], W_hhT, acc[b - b0])
            _rnn_act(xw[t, b], acc[b - b0], hs[t + 1, b], relu, H)


@njit(**_OPTS)
def _rnn_bwd_rows(gemm, Wp, dout, hs, W_hh, relu, da, dh, lengths, b0, b1):
    """Rows b0:b1 back through their steps; dh holds dh_T on entry and dh0 on exit, and passes
    unchanged through the steps past a row's length. Wp: W_hh packed for the micro-kernel, or
    empty."""
    T, _, H = dout.shape
    zero, one = dout.dtype.type(0.0), dout.dtype.type(1.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    for t in range(T - 1, -1, -1):
        e = _running_end(lengths, t, b0, b1)
        gap = False  # a row in b0:e has ended: the product adds into dh instead of replacing it
        for b in range(b0, b1):
            if t >= lengths[b]:
                _fill(da[t, b], zero)
                gap = gap or b < e
                continue
            _rnn_act_grad(dout[t, b], dh[b], hs[t + 1, b], da[t, b], relu, H)
            if not (micro or gemm):
                _vec_mat(da[t, b], W_hh, dh[b])
        if gap and (micro or gemm):
            _clear_running(dh, lengths, t, b0, e)
        if micro:
            _uk_mm(da[t, b0:e], Wp, dh[b0:e], 1 if gap else 0, scratch)
        elif gemm:
            _mm(gemm, False, da[t, b0:e], False, W_hh, one if gap else zero, dh[b0:e])


@njit(**_POPTS)
def _rnn_fwd_par(gemm, Wp, xw, W_hhT, relu, hs, lengths, n):
    B = xw.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _rnn_fwd_rows(gemm, Wp, xw, W_hhT, relu, hs, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _rnn_fwd_rows(gemm, Wp, xw, W_hhT, relu, hs, lengths, b0, b1)


@njit(**_POPTS)
def _rnn_bwd_par(gemm, Wp, dout, hs, W_hh, relu, da, dh, lengths, n):
    B = dout.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _rnn_bwd_rows(gemm, Wp, dout, hs, W_hh, relu, da, dh, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _rnn_bwd_rows(gemm, Wp, dout, hs, W_hh, relu, da, dh, lengths, b0, b1)


@njit(**_OPTS)
def _rnn_fwd_step(xw, ah, hs, t, relu, lengths):
    """(No BLAS address: np.matmul from Python.) ah holds hs[t] @ W_hh^T -> hs[t+1]."""
    _, B, H = xw.shape
    zero = xw.dtype.type(0.0)
    for b in range(B):
        if t < lengths[b]:
            _rnn_act(xw[t, b], ah[b], hs[t + 1, b], relu, H)
        else:
            _fill(hs[t + 1, b], zero)


@njit(**_OPTS)
def _rnn_bwd_step(dout, hs, t, relu, dh, da, lengths):
    """da[t] = (dout[t] + dh) * act'(h_t) on the running rows, 0 on the others."""
    _, B, H = dout.shape
    zero = dout.dtype.type(0.0)
    for b in range(B):
        if t < lengths[b]:
            _rnn_act_grad(dout[t, b], dh[b], hs[t + 1, b], da[t, b], relu, H)
        else:
            _fill(da[t, b], zero)


# ----------------------------------------------------------------------------- LSTM
@njit(**_OPTS)
def _lstm_cell_fwd(xr, zr, c_prev, c_out, tc_out, h_out, H):
    """One row: zr (4H) holds the recurrent product -> activated gates i, f, g, o in zr, c,
    tanh(c), h. In float32 the first H // 16 * 16 elements go through
    ``_lstm_fwd16`` (the same math in 16-float vectors), the rest through this loop."""
    for j in range(_fwd_vector(xr, zr, c_prev, c_out, tc_out, h_out, H), H):
        i = _sigmoid(xr[j] + zr[j])
        f = _sigmoid(xr[H + j] + zr[H + j])
        g = _tanh(xr[2 * H + j] + zr[2 * H + j])
        o = _sigmoid(xr[3 * H + j] + zr[3 * H + j])
        c = f * c_prev[j] + i * g
        tc = _tanh(c)
        zr[j] = i
        zr[H + j] = f
        zr[2 * H + j] = g
        zr[3 * H + j] = o
        c_out[j] = c
        tc_out[j] = tc
        h_out[j] = o * tc


@njit(**_OPTS)
def _lstm_cell_bwd(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, H):
    """One row: reads dh_next, replaces dc_next by dc * f, fills dzr (4H) = da, the gradient on
    the pre-activations [a_i | a_f | a_g | a_o].

    ``lstm.step_backward`` with di, df, dg, do folded into the four blocks of da, as in
    ``_numpy_loops.lstm_backward_loop``: docs/derivations.md section 4 (the table of backward
    lines and the worked example). The product da @ W_hh follows in ``_lstm_bwd_rows``. In
    float32 the first H // 16 * 16 elements go through ``_lstm_bwd16`` (the same
    operations in 16-float vectors), the rest through ``_lstm_cell_bwd_tail``."""
    j0 = _bwd_vector(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, None, 0, H)
    _lstm_cell_bwd_tail(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, H, j0)


@njit(**_OPTS)
def _lstm_cell_bwd_pack(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap, K, k, H):
    """``_lstm_cell_bwd``, and the row's da also into ap (float32, 4H // 8 blocks of K rows of 8,
    H a multiple of 8) as row k of ``_tn_acc``'s A."""
    j0 = _bwd_vector(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, ap.ctypes.data + k * 32, K * 8, H)
    _lstm_cell_bwd_tail(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, H, j0)
    for q in range(4):
        for j in range(q * H + j0, (q + 1) * H):
            ap[(j >> 3) * K * 8 + k * 8 + (j & 7)] = dzr[j]


@njit(**_OPTS)
def _add_colsum(A, m0, m1, acc, db):
    """db (N,) float64 += the sum of rows m0:m1 of A (columns 0:N; A C-contiguous, so that the
    loops vectorise), added up in float32 in row order in acc (N,) first: a step's share of the
    bias gradient from its rows of da (rows past their length hold zeros). One pass over rows
    still in cache instead of a float64 addition per element inside the gate math."""
    N = db.shape[0]
    if m1 <= m0:
        return
    for j in range(N):
        acc[j] = A[m0, j]
    for r in range(m0 + 1, m1):
        for j in range(N):
            acc[j] += A[r, j]
    for j in range(N):
        db[j] += acc[j]


@njit(**_OPTS)
def _lstm_cell_bwd_tail(dr, dh_next, dc_next, c_prev, gr, tcr, dzr, H, j0):
    """The equations of ``_lstm_cell_bwd`` for the elements j0:H of the row."""
    one = _like(dr[0], 1.0)
    for j in range(j0, H):
        i = gr[j]
        f = gr[H + j]
        g = gr[2 * H + j]
        o = gr[3 * H + j]
        tc = tcr[j]
        dh = dr[j] + dh_next[j]
        dc = dc_next[j] + dh * o * (one - tc * tc)
        dzr[j] = dc * g * i * (one - i)
        dzr[H + j] = dc * c_prev[j] * f * (one - f)
        dzr[2 * H + j] = dc * i * (one - g * g)
        dzr[3 * H + j] = dh * tc * o * (one - o)
        dc_next[j] = dc * f


@njit(**_OPTS)
def _lstm_ended(gates, cs, tcs, hs, t, b):
    """Row b past its length at step t: its gates and states are zero."""
    zero = gates.dtype.type(0.0)
    _fill(gates[t, b], zero)
    _fill(cs[t + 1, b], zero)
    _fill(tcs[t, b], zero)
    _fill(hs[t + 1, b], zero)


@njit(**_OPTS)
def _lstm_fwd_rows(gemm, Wp, xw, W_hhT, hs, cs, gates, tcs, lengths, b0, b1):
    T, _, H4 = xw.shape
    H = H4 // 4
    zero = xw.dtype.type(0.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    for t in range(T):
        e = _running_end(lengths, t, b0, b1)
        if micro:
            _uk_mm(hs[t, b0:e], Wp, gates[t, b0:e], 0, scratch)
        elif gemm:
            _mm(gemm, False, hs[t, b0:e], False, W_hhT, zero, gates[t, b0:e])
        for b in range(b0, b1):
            if t >= lengths[b]:
                _lstm_ended(gates, cs, tcs, hs, t, b)
                continue
            zr = gates[t, b]
            if not (micro or gemm):
                _vec_mat(hs[t, b], W_hhT, zr)
            _lstm_cell_fwd(xw[t, b], zr, cs[t, b], cs[t + 1, b], tcs[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _lstm_bwd_rows(gemm, Wp, dout, cs, gates, tcs, W_hh, dz, dh, dc, lengths, b0, b1):
    """dh, dc hold dh_T, dc_T on entry and dh0, dc0 on exit (unchanged past a row's length)."""
    T, _, H = dout.shape
    zero, one = dout.dtype.type(0.0), dout.dtype.type(1.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    for t in range(T - 1, -1, -1):
        e = _running_end(lengths, t, b0, b1)
        gap = False  # a row in b0:e has ended: the product adds into dh instead of replacing it
        for b in range(b0, b1):
            if t >= lengths[b]:
                _fill(dz[t, b], zero)
                gap = gap or b < e
                continue
            _lstm_cell_bwd(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)
            if not (micro or gemm):
                _vec_mat(dz[t, b], W_hh, dh[b])
        if gap and (micro or gemm):
            _clear_running(dh, lengths, t, b0, e)
        if micro:
            _uk_mm(dz[t, b0:e], Wp, dh[b0:e], 1 if gap else 0, scratch)
        elif gemm:
            _mm(gemm, False, dz[t, b0:e], False, W_hh, one if gap else zero, dh[b0:e])


@njit(**_POPTS)
def _lstm_fwd_par(gemm, Wp, xw, W_hhT, hs, cs, gates, tcs, lengths, n):
    B = xw.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _lstm_fwd_rows(gemm, Wp, xw, W_hhT, hs, cs, gates, tcs, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _lstm_fwd_rows(gemm, Wp, xw, W_hhT, hs, cs, gates, tcs, lengths, b0, b1)


@njit(**_OPTS)
def _lstm_fwdx_rows(Wxp, Wp, x, bsum, hs, cs, gates, tcs, lengths, b0, b1):
    """``_lstm_fwd_rows`` with the input projection inside the loop (float32, micro-kernel):
    gates[t] = x_t W_ih^T, += h_t W_hh^T, then the gate math with bsum = b_ih + b_hh in the place
    of a row of xw. xw (T, B, 4H) is never written nor read back: a pass over memory less."""
    T = x.shape[0]
    H = cs.shape[2]
    scratch = np.empty((_MR, _NR), np.float32)
    for t in range(T):
        e = _running_end(lengths, t, b0, b1)
        _uk_mm(x[t, b0:e], Wxp, gates[t, b0:e], 0, scratch)
        _uk_mm(hs[t, b0:e], Wp, gates[t, b0:e], 1, scratch)
        for b in range(b0, b1):
            if t >= lengths[b]:
                _lstm_ended(gates, cs, tcs, hs, t, b)
                continue
            _lstm_cell_fwd(bsum, gates[t, b], cs[t, b], cs[t + 1, b], tcs[t, b], hs[t + 1, b], H)


@njit(**_POPTS)
def _lstm_fwdx_par(Wxp, Wp, x, bsum, hs, cs, gates, tcs, lengths, n):
    B = x.shape[1]
    if n == 1:  # one block: no threads to start
        _lstm_fwdx_rows(Wxp, Wp, x, bsum, hs, cs, gates, tcs, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _lstm_fwdx_rows(Wxp, Wp, x, bsum, hs, cs, gates, tcs, lengths, b0, b1)


@njit(**_OPTS)
def _lstm_bwdx_rows(Wp, Wxp, dout, cs, gates, tcs, dz, dh, dc, dx, want_dx, db, lengths, b0, b1):
    """``_lstm_bwd_rows`` (float32, micro-kernel) with, while each step's da is in cache, the
    input gradient dx_t = da W_ih (Wxp: W_ih packed; only if want_dx, dx untouched otherwise)
    and the bias gradient: db (4H,) float64 += the rows' da (``_add_colsum``)."""
    T, _, H = dout.shape
    zero = dout.dtype.type(0.0)
    scratch = np.empty((_MR, _NR), np.float32)
    colsum = np.empty(4 * H, np.float32)
    for t in range(T - 1, -1, -1):
        e = _running_end(lengths, t, b0, b1)
        gap = False  # a row in b0:e has ended: the product adds into dh instead of replacing it
        for b in range(b0, b1):
            if t >= lengths[b]:
                _fill(dz[t, b], zero)
                if want_dx:
                    _fill(dx[t, b], zero)
                gap = gap or b < e
                continue
            _lstm_cell_bwd(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)
        _add_colsum(dz[t], b0, b1, colsum, db)
        if gap:
            _clear_running(dh, lengths, t, b0, e)
        _uk_mm(dz[t, b0:e], Wp, dh[b0:e], 1 if gap else 0, scratch)
        if want_dx:
            _uk_mm(dz[t, b0:e], Wxp, dx[t, b0:e], 0, scratch)


@njit(**_POPTS)
def _lstm_bwdx_par(Wp, Wxp, dout, cs, gates, tcs, dz, dh, dc, dx, want_dx, db, lengths, n):
    """db (n, 4H) float64: one partial sum per block."""
    B = dout.shape[1]
    if n == 1:  # one block: no threads to start
        _lstm_bwdx_rows(Wp, Wxp, dout, cs, gates, tcs, dz, dh, dc, dx, want_dx, db[0], lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _lstm_bwdx_rows(Wp, Wxp, dout, cs, gates, tcs, dz, dh, dc, dx, want_dx, db[s], lengths, b0, b1)



@njit(**_OPTS)
def _lstm_bwdw_rows(Wp, Wxp, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db, dWx, dWh, dzb, ap, xb, hb,
                    sb, lengths, b0, b1):
    """``_lstm_bwdx_rows`` with the weight gradients inside the loop too (float32, H a multiple
    of 8): the block's da rows of S steps in a row go into ap (``_tn_acc``'s layout, written by
    the gate math as it computes them; K = S * R rows, R = b1 - b0), their x_t and h_{t-1} rows
    into xb and hb; once S steps are in, dWx (4H, D) (+)= da^T xb and dWh (4H, H) (+)= da^T hb
    (``_tn_acc``) while these rows are still in cache. The step's da rows, for its products,
    are in dzb (R rows): no (T, B, 4H) array of da is written nor read back; dx only if want_dx
    (an input that needs no gradient: one product of three less per step). dWx, dWh: this
    block's share of the sums over all rows, assigned at the first update; sb scratch (K, 16).
    ap holds 4H // 8 blocks of Ka >= K rows of 8 (``_ap_rows``)."""
    T, _, H = dout.shape
    D = x.shape[2]
    R = b1 - b0
    K = xb.shape[0]
    S = K // R
    H4 = 4 * H
    Ka = ap.shape[0] // H4  # rows allocated per block of 8 columns of da
    zero = dout.dtype.type(0.0)
    scratch = np.empty((_MR, _NR), np.float32)
    sc = np.empty((_MRW, 16), np.float32)
    colsum = np.empty(H4, np.float32)
    k = 0  # rows of the blocks filled
    first = True
    for t in range(T - 1, -1, -1):
        e = _running_end(lengths, t, b0, b1)
        gap = False  # a row in b0:e has ended: the product adds into dh instead of replacing it
        for b in range(b0, b1):
            r = k + b - b0
            xr, hr, xs, hsr = xb[r], hb[r], x[t, b], hs[t, b]
            for j in range(D):
                xr[j] = xs[j]
            for j in range(H):
                hr[j] = hsr[j]
            if t >= lengths[b]:
                _fill(dzb[b - b0], zero)
                for j in range(H4):
                    ap[(j >> 3) * Ka * 8 + r * 8 + (j & 7)] = zero
                if want_dx:
                    _fill(dx[t, b], zero)
                gap = gap or b < e
                continue
            _lstm_cell_bwd_pack(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dzb[b - b0],
                                ap, Ka, r, H)
        _add_colsum(dzb, 0, R, colsum, db)
        if gap:
            _clear_running(dh, lengths, t, b0, e)
        dzt = dzb[: e - b0, :H4]
        _uk_mm(dzt, Wp, dh[b0:e], 1 if gap else 0, scratch)
        if want_dx:
            _uk_mm(dzt, Wxp, dx[t, b0:e], 0, scratch)
        k += R
        if k == S * R or t == 0:
            acc = 0 if first else 1
            _tn_acc(ap, Ka, k, H4, xb[:k, :D], dWx, acc, sb, sc)
            _tn_acc(ap, Ka, k, H4, hb[:k, :H], dWh, acc, sb, sc)
            first = False
            k = 0


@njit(**_POPTS)
def _lstm_bwdw_par(Wp, Wxp, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db, dWx, dWh, dzb, ap, xb, hb,
                   sb, lengths, n):
    """db (n, 4H) float64, dWx (n, 4H, D), dWh (n, 4H, H), dzb, ap, xb, hb, sb: one per block; the
    weight gradients summed over the blocks in dWx[0], dWh[0]."""
    B = dout.shape[1]
    if n == 1:  # one block: no threads to start
        _lstm_bwdw_rows(Wp, Wxp, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db[0], dWx[0], dWh[0],
                        dzb[0], ap[0], xb[0], hb[0], sb[0], lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _lstm_bwdw_rows(Wp, Wxp, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db[s], dWx[s], dWh[s],
                        dzb[s], ap[s], xb[s], hb[s], sb[s], lengths, b0, b1)
    M = dWx.shape[1]
    for s in prange(n):  # the blocks' partial sums into the first, its rows split over the threads
        m0, m1 = _block(s, n, M)
        for q in range(1, n):
            for i in range(m0, m1):
                for j in range(dWx.shape[2]):
                    dWx[0, i, j] += dWx[q, i, j]
                for j in range(dWh.shape[2]):
                    dWh[0, i, j] += dWh[q, i, j]

@njit(**_POPTS)
def _lstm_bwd_par(gemm, Wp, dout, cs, gates, tcs, W_hh, dz, dh, dc, lengths, n):
    B = dout.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _lstm_bwd_rows(gemm, Wp, dout, cs, gates, tcs, W_hh, dz, dh, dc, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _lstm_bwd_rows(gemm, Wp, dout, cs, gates, tcs, W_hh, dz, dh, dc, lengths, b0, b1)


@njit(**_OPTS)
def _lstm_fwd_step(xw, hs, cs, gates, tcs, t, lengths):
    """(No BLAS address.) gates[t] holds hs[t] @ W_hh^T on entry."""
    _, B, H = hs.shape
    for b in range(B):
        if t < lengths[b]:
            _lstm_cell_fwd(xw[t, b], gates[t, b], cs[t, b], cs[t + 1, b], tcs[t, b], hs[t + 1, b], H)
        else:
            _lstm_ended(gates, cs, tcs, hs, t, b)


@njit(**_OPTS)
def _lstm_bwd_step(dout, cs, gates, tcs, t, dh, dc, dz, lengths):
    _, B, H = dout.shape
    zero = dout.dtype.type(0.0)
    for b in range(B):
        if t < lengths[b]:
            _lstm_cell_bwd(dout[t, b], dh[b], dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)
        else:
            _fill(dz[t, b], zero)


@njit(**_OPTS)
def _lstmp_bwd_step(dm, dhsum, cs, gates, tcs, t, dc, dz, dhs, zeros, lengths):
    """The LSTM with projections, step t of the backward for all rows: dm (B, H) = dhsum @ W_hr
    is the gradient on m = o * tanh(c) (``_lstm_cell_bwd`` with it as dh and no dh_next);
    dhs[t] = dhsum, the total gradient on h_t (for dW_hr); rows past their length: zeros, dc
    unchanged."""
    _, B, H = cs.shape
    zero = dz.dtype.type(0.0)
    for b in range(B):
        if t < lengths[b]:
            _lstm_cell_bwd(dm[b], zeros, dc[b], cs[t, b], gates[t, b], tcs[t, b], dz[t, b], H)
            dhs[t, b] = dhsum[b]
        else:
            _fill(dz[t, b], zero)
            _fill(dhs[t, b], zero)


# ----------------------------------------------------------------------------- GRU
@njit(**_OPTS)
def _gru_cell_fwd(xr, ghr, b_hh, h_prev, gr, ghn_out, h_out, H):
    """One row: ghr (3H) holds h_prev @ W_hh^T -> r, z, n in gr (3H), ghn, h."""
    one = _like(xr[0], 1.0)
    for j in range(H):
        r = _sigmoid(xr[j] + (ghr[j] + b_hh[j]))
        z = _sigmoid(xr[H + j] + (ghr[H + j] + b_hh[H + j]))
        gn = ghr[2 * H + j] + b_hh[2 * H + j]
        n = _tanh(xr[2 * H + j] + r * gn)
        gr[j] = r
        gr[H + j] = z
        gr[2 * H + j] = n
        ghn_out[j] = gn
        h_out[j] = (one - z) * n + z * h_prev[j]


@njit(**_OPTS)
def _gru_cell_bwd(dr, dh_next, h_prev, gr, gn, dgxr, dghr, dghnr, dhz, H):
    """One row: dh = dr + dh_next -> dgx, dgh (3H; a scratch row for the step's product), its
    n part dghn (H), and dhz = dh * z (dhz may be dh_next).

    ``gru.step_backward`` with dn, dz folded into dan, daz, as in
    ``_numpy_loops.gru_backward_loop``: docs/derivations.md section 5 (its table). dh_prev =
    dh * z + dgh @ W_hh is completed by the product in ``_gru_bwd_rows``."""
    one = _like(dr[0], 1.0)
    for j in range(H):
        r = gr[j]
        z = gr[H + j]
        n = gr[2 * H + j]
        dh = dr[j] + dh_next[j]
        dan = dh * (one - z) * (one - n * n)
        dar = dan * gn[j] * r * (one - r)
        daz = dh * (h_prev[j] - n) * z * (one - z)
        dgxr[j] = dar
        dgxr[H + j] = daz
        dgxr[2 * H + j] = dan
        dghr[j] = dar
        dghr[H + j] = daz
        dghr[2 * H + j] = dan * r
        dghnr[j] = dan * r
        dhz[j] = dh * z


@njit(**_OPTS)
def _gru_ended(gates, ghn, hs, t, b):
    """Row b past its length at step t: its gates and state are zero."""
    zero = gates.dtype.type(0.0)
    _fill(gates[t, b], zero)
    _fill(ghn[t, b], zero)
    _fill(hs[t + 1, b], zero)


@njit(**_OPTS)
def _gru_fwd_rows(gemm, Wp, xw, W_hhT, b_hh, hs, gates, ghn, lengths, b0, b1):
    T, _, H3 = xw.shape
    H = H3 // 3
    zero = xw.dtype.type(0.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    acc = np.empty((b1 - b0, H3), xw.dtype)
    for t in range(T):
        e = _running_end(lengths, t, b0, b1)
        if micro:
            _uk_mm(hs[t, b0:e], Wp, acc[: e - b0], 0, scratch)
        elif gemm:
            _mm(gemm, False, hs[t, b0:e], False, W_hhT, zero, acc[: e - b0])
        for b in range(b0, b1):
            if t >= lengths[b]:
                _gru_ended(gates, ghn, hs, t, b)
                continue
            if not (micro or gemm):
                _vec_mat(hs[t, b], W_hhT, acc[b - b0])
            _gru_cell_fwd(xw[t, b], acc[b - b0], b_hh, hs[t, b], gates[t, b], ghn[t, b], hs[t + 1, b], H)


@njit(**_OPTS)
def _gru_bwd_rows(gemm, Wp, dout, hs, gates, ghn, W_hh, dgx, dghn, dh, lengths, b0, b1):
    """dh holds dh_T on entry and dh0 on exit: dh_{t-1} = dh * z + dgh @ W_hh (unchanged past a
    row's length, where its dgh row is zero)."""
    T, _, H = dout.shape
    zero, one = dout.dtype.type(0.0), dout.dtype.type(1.0)
    micro = Wp.shape[0] > 0
    scratch = np.empty((_MR, _NR), np.float32)
    acc = np.empty(H, dout.dtype)
    dgh = np.empty((b1 - b0, 3 * H), dout.dtype)  # this step's dgh rows of the block
    for t in range(T - 1, -1, -1):
        e = _running_end(lengths, t, b0, b1)
        for b in range(b0, b1):
            g = dh[b]
            if t >= lengths[b]:
                _fill(dgx[t, b], zero)
                _fill(dghn[t, b], zero)
                _fill(dgh[b - b0], zero)
                continue
            _gru_cell_bwd(dout[t, b], g, hs[t, b], gates[t, b], ghn[t, b], dgx[t, b], dgh[b - b0],
                          dghn[t, b], g, H)
            if not (micro or gemm):
                _vec_mat(dgh[b - b0], W_hh, acc)
                for j in range(H):
                    g[j] = g[j] + acc[j]
        if micro:
            _uk_mm(dgh[: e - b0], Wp, dh[b0:e], 1, scratch)
        elif gemm:
            _mm(gemm, False, dgh[: e - b0], False, W_hh, one, dh[b0:e])


@njit(**_POPTS)
def _gru_fwd_par(gemm, Wp, xw, W_hhT, b_hh, hs, gates, ghn, lengths, n):
    B = xw.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _gru_fwd_rows(gemm, Wp, xw, W_hhT, b_hh, hs, gates, ghn, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _gru_fwd_rows(gemm, Wp, xw, W_hhT, b_hh, hs, gates, ghn, lengths, b0, b1)


@njit(**_POPTS)
def _gru_bwd_par(gemm, Wp, dout, hs, gates, ghn, W_hh, dgx, dghn, dh, lengths, n):
    B = dout.shape[1]
    if n == 1:  # one block: no threads to start (a parallel loop would wake them all)
        _gru_bwd_rows(gemm, Wp, dout, hs, gates, ghn, W_hh, dgx, dghn, dh, lengths, 0, B)
        return
    for s in prange(n):
        b0, b1 = _block(s, n, B)
        _gru_bwd_rows(gemm, Wp, dout, hs, gates, ghn, W_hh, dgx, dghn, dh, lengths, b0, b1)


@njit(**_OPTS)
def _gru_fwd_step(xw, gh, b_hh, hs, gates, ghn, t, lengths):
    """(No BLAS address.) gh holds hs[t] @ W_hh^T on entry."""
    _, B, H = hs.shape
    for b in range(B):
        if t < lengths[b]:
            _gru_cell_fwd(xw[t, b], gh[b], b_hh, hs[t, b], gates[t, b], ghn[t, b], hs[t + 1, b], H)
        else:
            _gru_ended(gates, ghn, hs, t, b)


@njit(**_OPTS)
def _gru_bwd_step(dout, hs, gates, ghn, t, dhz, m, dgx, dgh, dghn, lengths):
    """dh_next = dhz + m (the step after's dh * z and dgh @ W_hh), kept in m; dhz <- dh * z;
    dgh (B, 3H) this step's recurrent-side gradient. A row past its length keeps its whole
    dh_next in dhz, with a zero dgh row (so m becomes 0 for it)."""
    _, B, H = dout.shape
    zero = dout.dtype.type(0.0)
    for b in range(B):
        g = m[b]
        d = dhz[b]
        for j in range(H):
            g[j] = d[j] + g[j]
        if t >= lengths[b]:
            for j in range(H):
                d[j] = g[j]
            _fill(dgx[t, b], zero)
            _fill(dghn[t, b], zero)
            _fill(dgh[b], zero)
            continue
        _gru_cell_bwd(dout[t, b], g, hs[t, b], gates[t, b], ghn[t, b], dgx[t, b], dgh[b], dghn[t, b], d, H)


# ----------------------------------------------------------------------------- planning
class _Plan:
    """How one call runs: ``n`` row blocks (threads), and how each step's product is done:
    float32 by the micro-kernel on weights packed once (``micro``); float64 by BLAS at address
    ``gemm`` or, for small steps, hand-written (``gemm`` 0); ``per_step_matmul`` when neither
    the micro-kernel nor a BLAS address can be had and the step is large: then a Python loop
    calls np.matmul for each step, on one thread."""

    def __init__(self, dtype, B, GH, H, backward=False, T=None):
        self.n = _threads(B, None if T is None else T * B * GH * H)
        rows = -(-B // self.n)  # the largest block
        limit = FUSED_MAX_WORK_BACKWARD if backward and rows > 2 else FUSED_MAX_WORK
        blas = _blas.find() if USE_BLAS_POINTER else None
        small = rows * GH * H <= limit
        self.micro = USE_MICROKERNEL and np.dtype(dtype) == np.float32
        self.blas = blas
        self.gemm = 0 if self.micro or small or blas is None else blas.gemm(dtype)
        self.per_step_matmul = not (self.micro or small) and blas is None

    def packed(self, Wt):
        """Wt (K, N) packed for the micro-kernel, or an empty array: not used."""
        return _pack(Wt) if self.micro else _NO_PACK  # packs from a strided view: no copy first

    def forward_weights(self, W_hh):
        """(W_hh^T packed, W_hh^T contiguous) for a forward loop: each made only if this plan's
        products read it (the other is a placeholder of the same type)."""
        if self.micro:
            return _pack(W_hh.T), W_hh  # W_hh stands in for the contiguous transpose, unread
        return _NO_PACK, _c(W_hh.T)

    def threads(self):
        """The context the blocks run in: OpenBLAS on one thread while ours call it."""
        if self.blas is None or not self.gemm:
            return _nothing()
        return _single_threaded(self.blas)


_NO_PACK = np.zeros((0, 1, _NR), np.float32)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _threads(M, work=None):
    """Row blocks for M rows: SHARDS if set, else one per thread, or one when the call's
    multiply-adds (work) are fewer than ONE_THREAD_WORK."""
    import numba

    if SHARDS is None and work is not None and work < ONE_THREAD_WORK:
        return 1
    return max(1, min(SHARDS or numba.get_num_threads(), M))


# OpenBLAS (0.3.31, as NumPy 2.4's wheels ship it) was measured on an AVX2 EPYC to run its
# single-threaded sgemm about three times slower, for the rest of a thread's life, in a thread
# whose first sgemm was a small product (256 x 256 x 256 or less) than in one whose first was
# 512 x 512 x 512 or more: an RNN's weight gradients at (T, B, D, H) = (100, 64, 256, 256) took
# 81 ms instead of 26 (np.matmul's own threads: 28), and which state a process got depended on
# which layer it had run first. So before the compiled loops first call it, every thread that
# may (numba's and the caller's) runs one 512^3 product (about 8 ms each, once per process and
# thread count; ``_warm_blas``).
WARM_SIZE = 512
_warmed = [0]  # the numba thread count the threads were warmed for


@njit(**_POPTS)
def _warm_par(gemm, A, C, n):
    for s in prange(n):
        _mm(gemm, False, A[s], False, A[s], np.float32(0.0), C[s])


def _warm_blas(blas):
    import numba

    n = numba.get_num_threads()
    if _warmed[0] >= n:
        return
    _warmed[0] = n
    A = np.full((n, WARM_SIZE, WARM_SIZE), 1e-3, np.float32)
    C = np.empty_like(A)
    _mm(blas.sgemm, False, A[0], False, A[0], np.float32(0.0), C[0])  # the calling thread
    _warm_par(blas.sgemm, A, C, n)  # numba's threads


@contextmanager
def _single_threaded(blas):
    """``_blas.single_threaded``, the threads warmed first (``_warm_blas``)."""
    with _blas.single_threaded(blas):
        _warm_blas(blas)
        yield


def _bigplan(dtype, M, work=None):
    """(n blocks, BLAS) for a large product of M output rows and work multiply-adds, or None:
    np.matmul instead."""
    blas = _blas.find() if USE_BLAS_POINTER else None
    if blas is None:
        return None
    return _threads(M, work), blas


# ----------------------------------------------------------------------------- entry points
def _dtype_of(*arrays):
    """The common float32/float64 dtype of the arrays (None entries skipped), or None: then
    the NumPy loops run, with their own type promotion."""
    if not isinstance(arrays[0], np.ndarray):
        return None
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64):
        return None
    for a in arrays[1:]:
        if a is not None and (not isinstance(a, np.ndarray) or a.dtype != dt):
            return None
    return dt


def _c(a):
    return np.ascontiguousarray(a)


def _empty64(shape, dtype):
    """np.empty(shape, dtype); from POOL_MIN_BYTES up, from ``_pool`` and starting on a 64-byte
    boundary: with rows of a multiple of 16 floats, every row then starts on a cache line, and the
    loops' 16-float loads and stores of a row never span two (NumPy aligns to 16 bytes only)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # (math.prod: np.prod costs ~3 us a call)
    if nbytes < POOL_MIN_BYTES:  # small: malloc keeps and reuses such blocks itself, and the
        return np.empty(shape, dtype)  # ~2 us of aligning would cost the smallest steps ~5 %
    buf = _pool_take(nbytes + 64)
    s = -buf.ctypes.data % 64
    return buf[s : s + nbytes].view(dtype).reshape(shape)


# Buffers of the large arrays of the LSTM and GRU loops (states, gates, their gradients, the
# input projection and dx of ``input_projection`` / ``sequence_grads``), kept between steps. Each
# training step allocates and frees the same few arrays of megabytes; glibc hands such blocks
# back to the kernel when they are freed, and the next step's allocation of the same size then
# faults every page in again, zeroed by the kernel: at (T, B, D, H) = (100, 32, 64, 128) about
# 14 MB and 3500 page faults per step, 10-15 % of the step's time. A buffer here is reused only
# when nothing refers to it any more (no array, view or cache of a previous step: its reference
# count says so), so a result a caller keeps is never overwritten. One pool per Python thread;
# at most POOL_FREE free buffers are kept (the oldest dropped); ``release_buffers`` empties it.
# Arrays under POOL_MIN_BYTES are plain allocations (glibc reuses small blocks without faults).
POOL_FREE = 12
POOL_MIN_BYTES = 1 << 20  # smaller arrays are not pooled
_pools = threading.local()


def _pool():
    if not hasattr(_pools, "bufs"):
        _pools.bufs = []
    return _pools.bufs


def _is_free(bufs, i):
    """Nothing but the pool refers to bufs[i] (the count: the pool's list and the argument)."""
    return _getrefcount(bufs[i]) <= 2


def _pool_take(nbytes):
    """A uint8 buffer of nbytes: a free one of that size from the pool, else a new one."""
    bufs = _pool()
    for i in range(len(bufs)):
        if bufs[i].nbytes == nbytes and _is_free(bufs, i):
            bufs.append(bufs.pop(i))  # most recently used last
            return bufs[-1]
    free = [i for i in range(len(bufs)) if _is_free(bufs, i)]
    for i in reversed(free[: max(0, len(free) - POOL_FREE + 1)]):
        del bufs[i]  # the oldest free buffers beyond the limit
    bufs.append(np.empty(nbytes, np.uint8))
    return bufs[-1]


def release_buffers():
    """Drop this thread's pool of reusable buffers (arrays still in use keep their memory)
    -> the bytes of the free ones, which go back to the system."""
    bufs = _pool()
    freed = sum(bufs[i].nbytes for i in range(len(bufs)) if _is_free(bufs, i))
    bufs.clear()
    return freed


def _lengths(lengths, T, B):
    """lengths (B,) as a contiguous int64 array, or every row T steps when None."""
    if lengths is None:
        return np.full(B, T, np.int64)
    return np.ascontiguousarray(lengths, dtype=np.int64)


def _state_grad(ds_T, dout):
    """A writable C-ordered copy of a final-state gradient (B, H), or zeros for None."""
    return np.zeros(dout.shape[1:], dout.dtype) if ds_T is None else np.array(ds_T, order="C")


def _reference():
    from . import _numpy_loops

    return _numpy_loops


@njit(**_POPTS)
def _uk_par(A, Bp, C, n):
    """C = A @ Wt (float32, Wt packed in Bp) with the rows in n blocks over the threads, each
    block in chunks of 96 rows (a chunk of A stays in cache while all of Wt's panels pass)."""
    M = C.shape[0]
    if n == 1:  # one block: no threads to start
        _uk_rows(A, Bp, C, 0, M)
        return
    for s in prange(n):
        m0, m1 = _block(s, n, M)
        _uk_rows(A, Bp, C, m0, m1)


@njit(**_OPTS)
def _uk_rows(A, Bp, C, m0, m1):
    """``_uk_par`` on rows m0:m1, in chunks of 96 rows."""
    scratch = np.empty((_MR, _NR), np.float32)
    for r0 in range(m0, m1, 96):
        r1 = min(r0 + 96, m1)
        _uk_mm(A[r0:r1], Bp, C[r0:r1], 0, scratch)


def _rows_product(A, Bop, out, n, blas):
    """out = A @ Bop for A (M, K) with contiguous rows, the rows of out in n blocks over the
    threads: float32 by the micro-kernel on Bop packed once, else one BLAS call per block."""
    if USE_MICROKERNEL and out.dtype == np.float32:
        _uk_par(A, _pack(Bop), out, n)
        return
    Bm, tb = _operand(Bop)
    with _single_threaded(blas):
        _mm_par(blas.gemm(out.dtype), False, A, tb, Bm, out, n)


def _operand(X):
    """(array with contiguous rows, transposed?) for BLAS: X itself, or the array X is the
    transpose of, or a contiguous copy."""
    if X.flags.c_contiguous:
        return X, False
    if X.T.flags.c_contiguous:
        return X.T, True
    return np.ascontiguousarray(X), False


def matmul(a, b):
    """a @ b for 2-D arrays (either may be a transposed view), on bptt's threads: the rows of
    the result in blocks, one BLAS call per thread."""
    dt = _dtype_of(a, b) if a.ndim == 2 and b.ndim == 2 else None
    plan = _bigplan(dt, a.shape[0], a.shape[0] * a.shape[1] * b.shape[1]) if dt is not None else None
    if plan is None or a.shape[1] != b.shape[0]:
        return np.matmul(a, b)
    n, blas = plan
    (A, ta), (Bm, tb) = _operand(a), _operand(b)
    out = np.empty((a.shape[0], b.shape[1]), dt)
    if not ta:
        _rows_product(A, b, out, n, blas)
        return out
    with _single_threaded(blas):
        _mm_par(blas.gemm(dt), ta, A, tb, Bm, out, n)
    return out


def input_projection(x, params, with_hh_bias):
    """x @ W_ih^T + b_ih (+ b_hh) for all T steps at once: (T, B, D) -> (T, B, G*H)."""
    W = params["weight_ih"]
    b1, b2 = params.get("bias_ih"), params.get("bias_hh") if with_hh_bias else None
    dt = _dtype_of(x, W, b1, b2)
    plan = _bigplan(dt, x.shape[0] * x.shape[1], x.size * W.shape[0]) if dt is not None else None
    if plan is None:
        return _input_projection_ref(x, params, with_hh_bias)
    n, blas = plan
    T, B, D = x.shape
    xw = _empty64((T * B, W.shape[0]), dt)
    _rows_product(_c(x.reshape(T * B, D)), W.T, xw, n, blas)
    if b1 is not None:
        _add_rows_par(xw, b1, b1 if b2 is None else b2, b2 is not None, n)
    return xw.reshape(T, B, -1)


def sequence_grads(x, h_prev, dgx, dgh, params, input_grad=True):
    """The weight gradients of a whole sequence and dx: as ``_common.sequence_grads``."""
    W = params["weight_ih"]
    dt = _dtype_of(x, h_prev, dgx, dgh, W)
    T, B, D = x.shape
    plan = _bigplan(dt, T * B, T * B * W.shape[0] * (D + h_prev.shape[-1])) if dt is not None else None
    if plan is None:
        return _sequence_grads_ref(x, h_prev, dgx, dgh, params, input_grad)
    n, blas = plan
    GH, H, K = dgx.shape[-1], h_prev.shape[-1], dgh.shape[-1]  # K < GH: GRU's dghn
    x2, h2 = _c(x.reshape(T * B, D)), _c(h_prev.reshape(T * B, H))
    dgx2 = _c(dgx.reshape(T * B, GH))
    dgh2 = dgx2 if dgh is dgx else _c(dgh.reshape(T * B, K))
    dx = None
    if input_grad:
        dx = _empty64((T * B, D), dt)
        _rows_product(dgx2, W, dx, n, blas)  # (T*B, D); first: its packed W is freed before the dW's exist
        dx = dx.reshape(T, B, D)
    dparams = _weight_grads(x2, h2, dgx2, dgh2, n, blas)
    if "bias_ih" in params:
        db = _colsum_par(dgx2, n)
        dparams["bias_ih"] = db
        if dgh is dgx:
            dparams["bias_hh"] = db  # the same gradient; callers only read it
        elif K == GH:
            dparams["bias_hh"] = _colsum_par(dgh2, n)
        else:
            dparams["bias_hh"] = np.concatenate([db[: GH - K], _colsum_par(dgh2, n)])
    return dx, dparams


def _weight_grads(x2, h2, dgx2, dgh2, n, blas):
    """{"weight_ih": dgx2^T x2 (G*H, D), "weight_hh": dgh2^T h2 (G*H, H)} (GRU's narrower dgh2:
    dgx2's leading gates for the first rows), each by one BLAS call per block of rows."""
    dt = x2.dtype
    gemm = blas.gemm(dt)
    GH, D, H, K = dgx2.shape[1], x2.shape[1], h2.shape[1], dgh2.shape[1]
    dparams = {"weight_ih": np.empty((GH, D), dt), "weight_hh": np.empty((GH, H), dt)}
    dW_hh = dparams["weight_hh"]
    ng = max(1, min(n, GH))
    with _single_threaded(blas):
        if dgh2 is dgx2:  # RNN, LSTM: both from the same array, in one parallel region
            _mm2_par(gemm, dgx2, x2, dparams["weight_ih"], h2, dW_hh, ng)
            return dparams
        _mm_par(gemm, True, dgx2, False, x2, dparams["weight_ih"], ng)  # (G*H, D)
        if K == GH:
            _mm_par(gemm, True, dgh2, False, h2, dW_hh, ng)  # (G*H, H)
        else:  # the rows of dgx's leading gates, then dghn's
            _mm_par(gemm, True, dgx2[:, : GH - K], False, h2, dW_hh[: GH - K], ng)
            _mm_par(gemm, True, dgh2, False, h2, dW_hh[GH - K :], max(1, min(n, K)))
    return dparams


def _step_product(a, W, dh, lengths, full, tmp):
    """dh = a @ W on the rows running at step t (all rows when full), from Python (the path
    without a BLAS address); tmp (B, H) scratch."""
    if full:
        np.matmul(a, W, out=dh)
        return
    np.matmul(a, W, out=tmp)
    _take_running(tmp, dh, lengths[0], lengths[1])


def rnn_forward_loop(xw, h0, W_hh, relu, lengths=None):
    """xw (T, B, H) input projection with both biases, h0 (B, H) -> hs (T+1, B, H)."""
    if _dtype_of(xw, h0, W_hh) is None:
        return _reference().rnn_forward_loop(xw, h0, W_hh, relu, lengths)
    xw, W_hh, relu = _c(xw), _c(W_hh), bool(relu)
    T, B, H = xw.shape
    lens = _lengths(lengths, T, B)
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    hs[0] = h0
    plan = _Plan(xw.dtype, B, H, H, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            Wp, W_hhT = plan.forward_weights(W_hh)
            _rnn_fwd_par(plan.gemm, Wp, xw, W_hhT, relu, hs, lens, plan.n)
        return hs
    WT = W_hh.T  # BLAS reads the transpose in place, faster than a transposed copy
    ah = np.empty((B, H), xw.dtype)
    for t in range(T):
        np.matmul(hs[t], WT, out=ah)
        _rnn_fwd_step(xw, ah, hs, t, relu, lens)
    return hs


def rnn_backward_loop(dout, dh_T, hs, W_hh, relu, lengths=None):
    """-> da (T, B, H) gradient on the pre-activations, dh0 (B, H)."""
    if _dtype_of(dout, dh_T, hs, W_hh) is None:
        return _reference().rnn_backward_loop(dout, dh_T, hs, W_hh, relu, lengths)
    dout, hs, W_hh, relu = _c(dout), _c(hs), _c(W_hh), bool(relu)
    T, B, H = dout.shape
    lens = _lengths(lengths, T, B)
    da = _empty64(dout.shape, dout.dtype)  # from the pool: the forward's freed input projection
    dh = _state_grad(dh_T, dout)  # a copy: updated in place, step by step
    plan = _Plan(dout.dtype, B, H, H, backward=True, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            _rnn_bwd_par(plan.gemm, plan.packed(W_hh), dout, hs, W_hh, relu, da, dh, lens, plan.n)
        return da, dh
    tmp = np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        _rnn_bwd_step(dout, hs, t, relu, dh, da, lens)
        _step_product(da[t], W_hh, dh, (lens, t), lengths is None, tmp)
    return da, dh


def lstm_forward_loop(xw, h0, c0, W_hh, lengths=None):
    """xw (T, B, 4H) -> hs, cs (T+1, B, H), gates (T, B, 4H) activated i, f, g, o, tcs (T, B, H)."""
    if _dtype_of(xw, h0, c0, W_hh) is None:
        return _reference().lstm_forward_loop(xw, h0, c0, W_hh, lengths)
    xw, W_hh = _c(xw), _c(W_hh)
    T, B, H4 = xw.shape
    lens = _lengths(lengths, T, B)
    H = H4 // 4
    hs = np.empty((T + 1, B, H), dtype=xw.dtype)
    cs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty((T, B, H4), dtype=xw.dtype)
    tcs = np.empty((T, B, H), dtype=xw.dtype)
    hs[0], cs[0] = h0, c0
    plan = _Plan(xw.dtype, B, H4, H, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            Wp, W_hhT = plan.forward_weights(W_hh)
            _lstm_fwd_par(plan.gemm, Wp, xw, W_hhT, hs, cs, gates, tcs, lens, plan.n)
        return hs, cs, gates, tcs
    WT = W_hh.T
    for t in range(T):
        np.matmul(hs[t], WT, out=gates[t])
        _lstm_fwd_step(xw, hs, cs, gates, tcs, t, lens)
    return hs, cs, gates, tcs


def lstm_forward_x(x, h0, c0, params, lengths=None):
    """x (T, B, D) -> as ``lstm_forward_loop``: in float32 with the micro-kernel, the input
    projection step by step inside the loop (``_lstm_fwdx_par``); otherwise the projection and
    then the loop."""
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    b1, b2 = params.get("bias_ih"), params.get("bias_hh")
    dt = _dtype_of(x, h0, c0, W_ih, W_hh, b1, b2)
    T, B, D = x.shape
    H4 = W_hh.shape[0]
    H = H4 // 4
    plan = _Plan(dt, B, H4, H + D, T=T) if dt is not None else None
    if plan is None or not plan.micro or -(-B // plan.n) < FUSED_MIN_ROWS:
        return lstm_forward_loop(input_projection(x, params, with_hh_bias=True), h0, c0, W_hh, lengths)
    x = _c(x)
    lens = _lengths(lengths, T, B)
    # a = (b_ih + b_hh) + (x W_ih^T + h W_hh^T): the reference's terms, summed in another order
    bsum = np.zeros(H4, dt) if b1 is None else b1 + b2
    hs = _empty64((T + 1, B, H), dt)
    cs = _empty64((T + 1, B, H), dt)
    gates = _empty64((T, B, H4), dt)
    tcs = _empty64((T, B, H), dt)
    hs[0], cs[0] = h0, c0
    _lstm_fwdx_par(_pack(W_ih.T), _pack(W_hh.T), x, bsum, hs, cs, gates, tcs, lens, plan.n)
    return hs, cs, gates, tcs


def lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths=None):
    """-> dz (T, B, 4H) gradient on the pre-activations, dh0, dc0 (B, H)."""
    if _dtype_of(dout, dh_T, dc_T, cs, gates, tcs, W_hh) is None:
        return _reference().lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths)
    dout, cs, gates, tcs, W_hh = _c(dout), _c(cs), _c(gates), _c(tcs), _c(W_hh)
    T, B, H = dout.shape
    lens = _lengths(lengths, T, B)
    dz = np.empty_like(gates)
    dh = _state_grad(dh_T, dout)
    dc = _state_grad(dc_T, dout)
    plan = _Plan(dout.dtype, B, 4 * H, H, backward=True, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            _lstm_bwd_par(plan.gemm, plan.packed(W_hh), dout, cs, gates, tcs, W_hh, dz, dh, dc, lens, plan.n)
        return dz, dh, dc
    tmp = np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        _lstm_bwd_step(dout, cs, gates, tcs, t, dh, dc, dz, lens)
        _step_product(dz[t], W_hh, dh, (lens, t), lengths is None, tmp)
    return dz, dh, dc


def lstm_backward_x(dout, dh_T, dc_T, x, hs, cs, gates, tcs, params, lengths=None, input_grad=True):
    """The backward loop and the products after it in one: -> dx (T, B, D) (None without
    ``input_grad``: its product skipped), dh0, dc0 (B, H), dparams. In float32 with the micro-kernel each step's dx_t = da_t W_ih and the bias gradient
    are taken inside the loop while da_t is in cache (``_lstm_bwdx_par``), then the weight
    gradients as in ``sequence_grads``; up to WGRAD_MAX_GATES gate units and for H a multiple
    of 8, the weight gradients too, every few steps (``_lstm_bwdw_par``: bptt's own kernel,
    which on an AVX2 EPYC also avoided OpenBLAS's single-threaded sgemm of these shapes, three
    times slower there than its rate on a square product, as it was called from the threads);
    otherwise the loop, then ``sequence_grads``."""
    W_ih, W_hh = params["weight_ih"], params["weight_hh"]
    dt = _dtype_of(dout, dh_T, dc_T, x, hs, cs, gates, tcs, W_ih, W_hh)
    T, B, H = dout.shape
    D = x.shape[2]
    plan = _Plan(dt, B, 4 * H, H, backward=True, T=T) if dt is not None else None
    big = _bigplan(dt, T * B, T * B * 4 * H * (D + H)) if dt is not None else None
    if plan is None or not plan.micro or big is None or -(-B // plan.n) < FUSED_MIN_ROWS:
        da, dh0, dc0 = lstm_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, lengths)
        dx, dparams = sequence_grads(x, hs[:-1], da, da, params, input_grad)
        return dx, dh0, dc0, dparams
    dout, hs, cs, gates, tcs, x = _c(dout), _c(hs), _c(cs), _c(gates), _c(tcs), _c(x)
    lens = _lengths(lengths, T, B)
    dx = _empty64((T, B, D), dt) if input_grad else np.empty((1, 1, D), dt)  # untouched without
    dh = _empty64((B, H), dt)
    dh[...] = 0.0 if dh_T is None else dh_T
    dc = _empty64((B, H), dt)
    dc[...] = 0.0 if dc_T is None else dc_T
    db = np.zeros((plan.n, 4 * H), np.float64)  # one partial sum per block, in float64
    if 4 * H <= WGRAD_MAX_GATES and H % 8 == 0:
        dparams = _lstm_backward_w(W_ih, W_hh, dout, x, hs, cs, gates, tcs, dh, dc, dx, input_grad, db, lens,
                                   plan.n)
    else:
        dz = _empty64(gates.shape, dt)
        Wp = _pack(W_hh)
        Wxp = _pack(W_ih) if input_grad else Wp  # not read without input_grad
        _lstm_bwdx_par(Wp, Wxp, dout, cs, gates, tcs, dz, dh, dc, dx, input_grad, db, lens, plan.n)
        dz2 = dz.reshape(T * B, 4 * H)
        dparams = _weight_grads(x.reshape(T * B, D), _c(hs[:-1]).reshape(T * B, H), dz2, dz2, big[0], big[1])
    if "bias_ih" in params:
        dparams["bias_ih"] = db.sum(axis=0).astype(dt)
        dparams["bias_hh"] = dparams["bias_ih"]  # the same gradient; callers only read it
    return (dx if input_grad else None), dh, dc, dparams


# Rows of da per update of the weight gradients inside the LSTM's backward loop (S steps of a
# thread's R rows, S = WGRAD_ROWS // R, at least 1): enough for the products to run near the
# micro-kernel's rate, few enough that the rows stay in the core's cache.
WGRAD_ROWS = 128
# ... for up to this many gate units (4H): with more, a block of da rows and the packed weights
# no longer fit in the core's cache together, and the products after the loop are faster
# (measured: at H = 512 the weight gradients inside the loop took 27 % longer).
WGRAD_MAX_GATES = 1024


def _row_stride(n):
    """A row length of at least n floats for the weight gradients' blocks: a multiple of 16 floats
    (rows start on cache lines) and an odd number of cache lines, so that the k-th rows of a
    block do not all fall into the same few sets of the L1 cache (a stride of 4 KiB would)."""
    m = -(-n // 16)
    return 16 * (m + 1 - m % 2)


def _ap_rows(K):
    """Rows allocated per block of 8 columns of ``_tn_acc``'s A (ap) for K rows of da: K rounded
    up to 2 mod 4, so that the blocks lie an odd number of cache lines apart (32 * rows bytes).
    The gate math writes each row of da into all 4H // 8 blocks at once; blocks 4 KiB apart
    (K = 128) put all of a row's 96 stores in one set of the L1 cache, whose 12 ways then
    thrash (measured: the backward's gate math 25 % slower)."""
    return K + (2 - K % 4) % 4


def _lstm_backward_w(W_ih, W_hh, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db, lens, n):
    """``_lstm_bwdw_par`` on n blocks of rows -> {"weight_ih", "weight_hh"} (summed over the
    blocks)."""
    T, B, H = dout.shape
    D = x.shape[2]
    R = -(-B // n)
    K = min(T, max(1, WGRAD_ROWS // R)) * R  # rows per update
    dzb = _empty64((n, R, _row_stride(4 * H)), np.float32)
    ap = _empty64((n, 4 * H * _ap_rows(K)), np.float32)
    xb = _empty64((n, K, _row_stride(D)), np.float32)
    hb = _empty64((n, K, _row_stride(H)), np.float32)
    sb = np.empty((n, K, 16), np.float32)
    dWx = _empty64((n, 4 * H, D), np.float32)
    dWh = _empty64((n, 4 * H, H), np.float32)
    Wp = _pack(W_hh)
    Wxp = _pack(W_ih) if want_dx else Wp  # not read without dx
    _lstm_bwdw_par(Wp, Wxp, dout, x, hs, cs, gates, tcs, dh, dc, dx, want_dx, db, dWx, dWh, dzb, ap,
                   xb, hb, sb, lens, n)
    return {"weight_ih": dWx[0], "weight_hh": dWh[0]}


def lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lengths=None):
    """LSTM with projections: xw (T, B, 4H), h0 (B, P), c0 (B, H), W_hh (4H, P), W_hr (P, H)
    -> hs (T+1, B, P), cs (T+1, B, H), gates (T, B, 4H), tcs (T, B, H). The gate math of each
    step is the LSTM's compiled step (``_lstm_fwd_step``, its h being m = o * tanh(c)); the two
    products of a step (W_hh, then the projection W_hr) are np.matmul calls from this loop."""
    if _dtype_of(xw, h0, c0, W_hh, W_hr) is None:
        return _reference().lstmp_forward_loop(xw, h0, c0, W_hh, W_hr, lengths)
    xw = _c(xw)
    T, B, H4 = xw.shape
    H, P = H4 // 4, W_hr.shape[0]
    lens = _lengths(lengths, T, B)
    hs = np.empty((T + 1, B, P), dtype=xw.dtype)
    ms = np.zeros((T + 1, B, H), dtype=xw.dtype)  # m_t = o * tanh(c_t), [0] unused
    cs = np.empty((T + 1, B, H), dtype=xw.dtype)
    gates = np.empty((T, B, H4), dtype=xw.dtype)
    tcs = np.empty((T, B, H), dtype=xw.dtype)
    hs[0], cs[0] = h0, c0
    W_hhT, W_hrT = W_hh.T, W_hr.T
    for t in range(T):
        np.matmul(hs[t], W_hhT, out=gates[t])
        _lstm_fwd_step(xw, ms, cs, gates, tcs, t, lens)  # zero past each length
        np.matmul(ms[t + 1], W_hrT, out=hs[t + 1])  # (B, P)
    return hs, cs, gates, tcs


def lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lengths=None):
    """-> da (T, B, 4H), dhs (T, B, P) the total gradient reaching each h_t, dh0 (B, P), dc0 (B, H)."""
    if _dtype_of(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr) is None:
        return _reference().lstmp_backward_loop(dout, dh_T, dc_T, cs, gates, tcs, W_hh, W_hr, lengths)
    dout, cs, gates, tcs = _c(dout), _c(cs), _c(gates), _c(tcs)
    T, B, P = dout.shape
    H = cs.shape[2]
    lens = _lengths(lengths, T, B)
    da = np.empty_like(gates)
    dhs = np.empty_like(dout)
    dh = _state_grad(dh_T, dout)  # (B, P)
    dc = np.zeros((B, H), dout.dtype) if dc_T is None else np.array(dc_T, order="C")
    zeros = np.zeros(H, dout.dtype)
    dm, tmp = np.empty((B, H), dout.dtype), np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        dhsum = dout[t] + dh  # (B, P)
        np.matmul(dhsum, W_hr, out=dm)  # (B, H)
        _lstmp_bwd_step(dm, dhsum, cs, gates, tcs, t, dc, da, dhs, zeros, lens)
        _step_product(da[t], W_hh, dh, (lens, t), lengths is None, tmp)
    return da, dhs, dh, dc


def gru_forward_loop(xw, h0, W_hh, b_hh, lengths=None):
    """xw (T, B, 3H) = x W_ih^T + b_ih; b_hh (3H,) or None
    -> hs (T+1, B, H), gates (T, B, 3H) activated r, z, n, ghn (T, B, H) = W_hn h + b_hn."""
    if _dtype_of(xw, h0, W_hh, b_hh) is None:
        return _reference().gru_forward_loop(xw, h0, W_hh, b_hh, lengths)
    xw, W_hh = _c(xw), _c(W_hh)
    T, B, H3 = xw.shape
    lens = _lengths(lengths, T, B)
    H = H3 // 3
    b = np.zeros(H3, xw.dtype) if b_hh is None else _c(b_hh)  # x + 0 is x: the same results
    hs = _empty64((T + 1, B, H), xw.dtype)
    gates = _empty64((T, B, H3), xw.dtype)
    ghn = _empty64((T, B, H), xw.dtype)
    hs[0] = h0
    plan = _Plan(xw.dtype, B, H3, H, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            Wp, W_hhT = plan.forward_weights(W_hh)
            _gru_fwd_par(plan.gemm, Wp, xw, W_hhT, b, hs, gates, ghn, lens, plan.n)
        return hs, gates, ghn
    WT = W_hh.T
    gh = np.empty((B, H3), xw.dtype)
    for t in range(T):
        np.matmul(hs[t], WT, out=gh)
        _gru_fwd_step(xw, gh, b, hs, gates, ghn, t, lens)
    return hs, gates, ghn


def gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh, lengths=None):
    """-> dgx (T, B, 3H) on the input-side pre-activations, dghn (T, B, H) on ghn, dh0 (B, H)."""
    if _dtype_of(dout, dh_T, hs, gates, ghn, W_hh) is None:
        return _reference().gru_backward_loop(dout, dh_T, hs, gates, ghn, W_hh, lengths)
    dout, hs, gates, ghn, W_hh = _c(dout), _c(hs), _c(gates), _c(ghn), _c(W_hh)
    T, B, H = dout.shape
    lens = _lengths(lengths, T, B)
    dgx = _empty64(gates.shape, gates.dtype)
    dghn = _empty64(ghn.shape, ghn.dtype)
    dh = _state_grad(dh_T, dout)
    plan = _Plan(dout.dtype, B, 3 * H, H, backward=True, T=T)
    if not plan.per_step_matmul:
        with plan.threads():
            _gru_bwd_par(plan.gemm, plan.packed(W_hh), dout, hs, gates, ghn, W_hh, dgx, dghn, dh, lens, plan.n)
        return dgx, dghn, dh
    dhz, m = dh, np.zeros_like(dh)  # dh_next = dhz + m: dh_T + 0 on the first step
    dgh = np.empty((B, 3 * H), dout.dtype)
    for t in range(T - 1, -1, -1):
        _gru_bwd_step(dout, hs, gates, ghn, t, dhz, m, dgx, dgh, dghn, lens)
        np.matmul(dgh, W_hh, out=m)
    m += dhz
    return dgx, dghn, m
