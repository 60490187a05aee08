//! int8 linear layers for the embedding encoder.
//!
//! A query is a couple of dozen tokens, so its forward pass is a chain of small matrix
//! products (22 × 384 · 384 × 1152 and the like) where f32 gemm reaches only ~45 GFLOP/s on
//! two cores: 20 ms per e5-small query. With AVX-512 VNNI one instruction does 64 u8 × i8
//! multiply-adds, so the same products in int8 take a fraction of that.
//!
//! Quantisation, chosen for accuracy over raw speed:
//! - weights: symmetric int8 per block of 32 input values of each output row (the block size
//!   of the Q4_0 file the default model comes from), scale = max |w| / 127;
//! - activations: quantised on the fly, symmetric int8 per block of 32 values of each row,
//!   so an outlier channel (BERT has a few) only coarsens its own block, never the row.
//!
//! A block's integer dot product is exact (i32); it is scaled by both scales and summed in
//! f32. VNNI multiplies *unsigned* by signed bytes, so activations are stored as q + 128 and
//! 128 · Σ w of each block is subtracted (precomputed).
//!
//! Weights are laid out for the kernel: for each tile of 16 output columns, for each group
//! of 4 input values, the 16 × 4 bytes one `vpdpbusd` consumes. [`QLinear::forward`] uses the
//! AVX-512 VNNI kernel when the CPU has it and a portable kernel (same integer arithmetic)
//! otherwise; a test checks that the two agree.

use rayon::prelude::*;

/// Input values sharing one scale.
const BLOCK: usize = 32;
/// Output columns per tile (one 512-bit register of i32/f32).
const TILE: usize = 16;
/// Input values per VNNI lane.
const GROUP: usize = 4;

/// True when this CPU runs the fast int8 kernel.
pub fn fast_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A linear layer `y = x · wᵀ + b` with int8 weights.
pub struct QLinear {
    out: usize,
    inp: usize,
    /// [out/16][inp/4][16][4] weight bytes.
    packed: Vec<i8>,
    /// [out/16][inp/32][16] weight scales.
    scales: Vec<f32>,
    /// [out/16][inp/32][16]: −128 · Σ of the block's weight bytes.
    corr: Vec<i32>,
    bias: Vec<f32>,
}

/// Activations of `rows` rows quantised per block of 32: bytes q + 128 and one scale a block.
struct QActs {
    rows: usize,
    data: Vec<u8>,
    /// [rows][inp/32]
    scales: Vec<f32>,
}

impl QLinear {
    /// Whether a layer of these dimensions can be quantised (multiples of the tile and block).
    pub fn fits(out: usize, inp: usize) -> bool {
        out > 0 && inp > 0 && out.is_multiple_of(TILE) && inp.is_multiple_of(BLOCK)
    }

    /// Quantise `w` ([out][inp], row-major, as stored in checkpoints) and keep `bias`.
    ///
    /// # Panics
    /// When the dimensions do not [`fit`](Self::fits) or the slices have the wrong length.
    pub fn quantize(w: &[f32], out: usize, inp: usize, bias: Vec<f32>) -> Self {
        assert!(Self::fits(out, inp), "QLinear {out}x{inp} does not fit");
        assert_eq!(w.len(), out * inp);
        assert_eq!(bias.len(), out);
        let nb = inp / BLOCK;
        let groups = inp / GROUP;
        let mut packed = vec![0i8; out * inp];
        let mut scales = vec![0f32; out * nb];
        let mut corr = vec![0i32; out * nb];
        for n in 0..out {
            let (tile, col) = (n / TILE, n % TILE);
            for b in 0..nb {
                let vals = &w[n * inp + b * BLOCK..][..BLOCK];
                let max = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = max / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let mut sum = 0i32;
                for (i, v) in vals.iter().enumerate() {
                    let q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
                    sum += i32::from(q);
                    let k = b * BLOCK + i;
                    let at = ((tile * groups + k / GROUP) * TILE + col) * GROUP + k % GROUP;
                    packed[at] = q;
                }
                scales[(tile * nb + b) * TILE + col] = scale;
                corr[(tile * nb + b) * TILE + col] = -128 * sum;
            }
        }
        Self {
            out,
            inp,
            packed,
            scales,
            corr,
            bias,
        }
    }

    pub fn out_features(&self) -> usize {
        self.out
    }

    /// `x · wᵀ + b` for the `rows` rows of `x` ([rows][inp]); returns [rows][out].
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        self.forward_with(x, rows, fast_kernel_available())
    }

    fn forward_with(&self, x: &[f32], rows: usize, fast: bool) -> Vec<f32> {
        assert_eq!(
            x.len(),
            rows * self.inp,
            "input is not [rows][{}]",
            self.inp
        );
        let mut y = vec![0f32; rows * self.out];
        if rows == 0 {
            return y;
        }
        let acts = quantize_acts(x, rows, self.inp, fast);
        let tiles = self.out / TILE;
        let out = OutPtr(y.as_mut_ptr());
        let run = |range: std::ops::Range<usize>| {
            let out = &out;
            #[cfg(target_arch = "x86_64")]
            if fast {
                // SAFETY: `fast` is only true when the CPU has AVX-512 F/BW/VNNI; each call
                // writes the columns of its own tiles only, inside `y`.
                unsafe { avx512::tiles(self, &acts, range, out.0) };
                return;
            }
            let _ = fast;
            // SAFETY: as above; the ranges handed out are disjoint.
            unsafe { portable_tiles(self, &acts, range, out.0) };
        };
        // A query's products (≤ 13 M multiply-adds) measured no faster on two threads than on
        // one, and slower when the other core is busy; batches of passages gain from threads.
        let work = rows * self.out * self.inp;
        let threads = rayon::current_num_threads().min(tiles);
        if threads > 1 && work >= 1 << 25 {
            let per = tiles.div_ceil(threads);
            (0..threads)
                .into_par_iter()
                .for_each(|i| run(i * per..((i + 1) * per).min(tiles)));
        } else {
            run(0..tiles);
        }
        y
    }
}

/// The output buffer shared by the threads of one product; each writes disjoint columns.
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint elements of the buffer, which outlives the parallel loop.
unsafe impl Sync for OutPtr {}

fn quantize_acts(x: &[f32], rows: usize, inp: usize, fast: bool) -> QActs {
    let nb = inp / BLOCK;
    let mut data = vec![0u8; rows * inp];
    let mut scales = vec![0f32; rows * nb];
    #[cfg(target_arch = "x86_64")]
    if fast {
        for ((src, dst), scale) in x
            .chunks_exact(BLOCK)
            .zip(data.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            // SAFETY: `fast` means AVX-512 F/BW; both blocks hold exactly BLOCK values.
            *scale = unsafe { avx512::quantize_block(src.as_ptr(), dst.as_mut_ptr()) };
        }
        return QActs { rows, data, scales };
    }
    let _ = fast;
    for ((src, dst), scale) in x
        .chunks_exact(BLOCK)
        .zip(data.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let max = src.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = max / 127.0;
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        for (d, v) in dst.iter_mut().zip(src) {
            *d = ((v * inv).round_ties_even().clamp(-127.0, 127.0) + 128.0) as u8;
        }
        *scale = s;
    }
    QActs { rows, data, scales }
}

/// The same arithmetic as the VNNI kernel, one output at a time.
///
/// # Safety
/// `y` points at a [rows][w.out] buffer; no other thread writes the columns of `tiles`.
unsafe fn portable_tiles(w: &QLinear, a: &QActs, tiles: std::ops::Range<usize>, y: *mut f32) {
    let nb = w.inp / BLOCK;
    let groups = w.inp / GROUP;
    for t in tiles {
        for r in 0..a.rows {
            let row = &a.data[r * w.inp..][..w.inp];
            for col in 0..TILE {
                let mut acc = 0f32;
                for b in 0..nb {
                    let at = (t * nb + b) * TILE + col;
                    let mut isum = w.corr[at];
                    for (k, &av) in row.iter().enumerate().skip(b * BLOCK).take(BLOCK) {
                        let wi =
                            w.packed[((t * groups + k / GROUP) * TILE + col) * GROUP + k % GROUP];
                        isum += i32::from(av) * i32::from(wi);
                    }
                    acc += isum as f32 * (w.scales[at] * a.scales[r * nb + b]);
                }
                let n = t * TILE + col;
                // SAFETY: r < rows and n < out, inside the buffer; the column is ours.
                unsafe { *y.add(r * w.out + n) = acc + w.bias[n] };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{BLOCK, GROUP, QActs, QLinear, TILE};

    /// Rows and tiles per micro-kernel call: 3 × 4 keeps 12 i32 and 12 f32 accumulators
    /// plus 4 weight registers in the 32 vector registers.
    const MR: usize = 3;
    const NT: usize = 4;

    /// Quantise the 32 values at `src` to `dst` (q + 128); returns the scale. Rounds half to
    /// even like the portable code.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW; `src` holds 32 readable values, `dst` 32 writable bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_block(src: *const f32, dst: *mut u8) -> f32 {
        // SAFETY: the caller's contract.
        unsafe {
            let a = _mm512_loadu_ps(src);
            let b = _mm512_loadu_ps(src.add(16));
            let max = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
            let scale = max / 127.0;
            let inv = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
            let off = _mm512_set1_epi32(128);
            // Round to nearest even (the default rounding mode), then |q| ≤ 127.
            let qa = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(a, inv)), off);
            let qb = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(b, inv)), off);
            _mm_storeu_si128(dst as *mut __m128i, _mm512_cvtepi32_epi8(qa));
            _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(qb));
            scale
        }
    }

    /// # Safety
    /// The CPU has AVX-512 F/BW/VNNI; `y` points at a [rows][w.out] buffer and no other
    /// thread writes the columns of `tiles`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tiles(w: &QLinear, a: &QActs, tiles: std::ops::Range<usize>, y: *mut f32) {
        let mut t = tiles.start;
        while t < tiles.end {
            let nt = (tiles.end - t).min(NT);
            let mut r = 0;
            while r < a.rows {
                let mr = (a.rows - r).min(MR);
                // SAFETY: forwarded from the caller; r + mr ≤ a.rows, t + nt ≤ tiles.end.
                unsafe {
                    match (mr, nt) {
                        (3, 4) => micro::<3, 4>(w, a, t, r, y),
                        (2, 4) => micro::<2, 4>(w, a, t, r, y),
                        (1, 4) => micro::<1, 4>(w, a, t, r, y),
                        (3, 3) => micro::<3, 3>(w, a, t, r, y),
                        (2, 3) => micro::<2, 3>(w, a, t, r, y),
                        (1, 3) => micro::<1, 3>(w, a, t, r, y),
                        (3, 2) => micro::<3, 2>(w, a, t, r, y),
                        (2, 2) => micro::<2, 2>(w, a, t, r, y),
                        (1, 2) => micro::<1, 2>(w, a, t, r, y),
                        (3, _) => micro::<3, 1>(w, a, t, r, y),
                        (2, _) => micro::<2, 1>(w, a, t, r, y),
                        _ => micro::<1, 1>(w, a, t, r, y),
                    }
                }
                r += mr;
            }
            t += nt;
        }
    }

    /// Rows `r0..r0 + R` × tiles `t..t + T`, all of K. Accumulators: R·T i32 for the
    /// current block and R·T f32 for the sum over blocks, all in registers.
    #[inline(always)]
    unsafe fn micro<const R: usize, const T: usize>(
        w: &QLinear,
        a: &QActs,
        t: usize,
        r0: usize,
        y: *mut f32,
    ) {
        let nb = w.inp / BLOCK;
        let groups = w.inp / GROUP;
        let wp = w.packed.as_ptr();
        let ap = a.data.as_ptr();
        // SAFETY: every offset below stays inside the packed weights, the activations, the
        // scales and `y` for r0 + R ≤ rows and t + T ≤ out / 16 (the caller's contract).
        unsafe {
            let mut facc = [[_mm512_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut iacc = [[_mm512_setzero_si512(); T]; R];
                for j in 0..T {
                    let c = _mm512_loadu_si512(
                        w.corr.as_ptr().add(((t + j) * nb + b) * TILE) as *const __m512i
                    );
                    for acc in iacc.iter_mut() {
                        acc[j] = c;
                    }
                }
                for g in 0..BLOCK / GROUP {
                    let kg = b * (BLOCK / GROUP) + g;
                    let mut wv = [_mm512_setzero_si512(); T];
                    for (j, v) in wv.iter_mut().enumerate() {
                        *v = _mm512_loadu_si512(
                            wp.add(((t + j) * groups + kg) * TILE * GROUP) as *const __m512i
                        );
                    }
                    for (r, acc) in iacc.iter_mut().enumerate() {
                        let four =
                            (ap.add((r0 + r) * w.inp + kg * GROUP) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(four);
                        for j in 0..T {
                            acc[j] = _mm512_dpbusd_epi32(acc[j], av, wv[j]);
                        }
                    }
                }
                for j in 0..T {
                    let ws = _mm512_loadu_ps(w.scales.as_ptr().add(((t + j) * nb + b) * TILE));
                    for r in 0..R {
                        let s = _mm512_mul_ps(ws, _mm512_set1_ps(a.scales[(r0 + r) * nb + b]));
                        facc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r][j]), s, facc[r][j]);
                    }
                }
            }
            for j in 0..T {
                let bias = _mm512_loadu_ps(w.bias.as_ptr().add((t + j) * TILE));
                for (r, acc) in facc.iter().enumerate() {
                    _mm512_storeu_ps(
                        y.add((r0 + r) * w.out + (t + j) * TILE),
                        _mm512_add_ps(acc[j], bias),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], rows: usize, w: &[f32], out: usize, b: &[f32]) -> Vec<f32> {
        let inp = x.len() / rows;
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for n in 0..out {
                let dot: f64 = (0..inp)
                    .map(|k| f64::from(x[r * inp + k]) * f64::from(w[n * inp + k]))
                    .sum();
                y[r * out + n] = dot as f32 + b[n];
            }
        }
        y
    }

    fn rel_err(got: &[f32], want: &[f32]) -> f32 {
        let num: f32 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
        let den: f32 = want.iter().map(|b| b * b).sum();
        (num / den).sqrt()
    }

    #[test]
    fn dimensions_that_fit() {
        assert!(QLinear::fits(384, 384));
        assert!(QLinear::fits(1536, 384));
        assert!(!QLinear::fits(100, 384));
        assert!(!QLinear::fits(384, 100));
        assert!(!QLinear::fits(0, 32));
    }

    #[test]
    fn int8_product_is_close_to_f32() {
        for &(rows, out, inp) in &[(1, 16, 32), (5, 48, 96), (22, 384, 384), (9, 1536, 384)] {
            let w = values(out * inp, 1);
            let mut x = values(rows * inp, 2);
            // An outlier channel, as BERT activations have.
            x.iter_mut().step_by(inp).for_each(|v| *v *= 40.0);
            let b = values(out, 3);
            let q = QLinear::quantize(&w, out, inp, b.clone());
            let want = reference(&x, rows, &w, out, &b);
            let got = q.forward_with(&x, rows, false);
            let err = rel_err(&got, &want);
            assert!(err < 0.02, "{rows}x{out}x{inp}: relative error {err}");
        }
    }

    #[test]
    fn zero_input_and_zero_weights_give_the_bias() {
        let q = QLinear::quantize(
            &vec![0.0; 16 * 32],
            16,
            32,
            (0..16).map(|i| i as f32).collect(),
        );
        let y = q.forward(&[0.0; 2 * 32], 2);
        assert_eq!(
            &y[..16],
            (0..16).map(|i| i as f32).collect::<Vec<_>>().as_slice()
        );
        assert_eq!(&y[16..], &y[..16]);
    }

    #[test]
    fn fast_quantisation_matches_portable() {
        if !fast_kernel_available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let mut x = values(7 * 64, 7);
        x[3] = 0.0;
        x[40..72].iter_mut().for_each(|v| *v = 0.0); // an all-zero block
        x[100] = 50.0;
        let a = quantize_acts(&x, 7, 64, false);
        let b = quantize_acts(&x, 7, 64, true);
        assert_eq!(a.data, b.data);
        assert_eq!(a.scales, b.scales);
    }

    #[test]
    fn fast_kernel_agrees_with_portable_kernel() {
        if !fast_kernel_available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // Odd tile counts and row counts exercise every micro-kernel shape; the large case
        // runs on several threads.
        for &(rows, out, inp) in &[
            (1, 16, 32),
            (3, 48, 64),
            (7, 80, 96),
            (22, 1152, 384),
            (37, 1536, 384),
        ] {
            let w = values(out * inp, 4);
            let x = values(rows * inp, 5);
            let b = values(out, 6);
            let q = QLinear::quantize(&w, out, inp, b);
            let slow = q.forward_with(&x, rows, false);
            let fast = q.forward_with(&x, rows, true);
            for (i, (s, f)) in slow.iter().zip(&fast).enumerate() {
                assert!(
                    (s - f).abs() <= 1e-4 * s.abs().max(1.0),
                    "{rows}x{out}x{inp} [{i}]: {s} vs {f}"
                );
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    /// Timing, not a check: `cargo test --release --lib int8::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn query_shapes() {
        let shapes = [(1152, 384), (384, 384), (1536, 384), (384, 1536)];
        let rows = 22;
        let layers: Vec<QLinear> = shapes
            .iter()
            .map(|&(o, i)| QLinear::quantize(&vec![0.01; o * i], o, i, vec![0.0; o]))
            .collect();
        let xs: Vec<Vec<f32>> = shapes.iter().map(|&(_, i)| vec![0.5; rows * i]).collect();
        for (label, threads) in [("2 threads", 0), ("1 thread", 1)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for _ in 0..20 {
                    for (l, x) in layers.iter().zip(&xs) {
                        std::hint::black_box(l.forward(x, rows));
                    }
                }
                let n = 200;
                let t = Instant::now();
                for _ in 0..n {
                    for (l, x) in layers.iter().zip(&xs) {
                        std::hint::black_box(l.forward(x, rows));
                    }
                }
                let per_layer = t.elapsed().as_secs_f64() * 1e3 / n as f64;
                let macs: usize = shapes.iter().map(|&(o, i)| rows * o * i).sum();
                eprintln!(
                    "{label}: one encoder layer's products {per_layer:.3} ms, x12 = {:.2} ms, {:.0} GMAC/s",
                    per_layer * 12.0,
                    macs as f64 / per_layer / 1e6
                );
                let t = Instant::now();
                for _ in 0..n {
                    std::hint::black_box(quantize_acts(&xs[2], rows, 1536, fast_kernel_available()));
                }
                eprintln!("  quantising 22x1536 activations: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
            });
        }
    }
}
