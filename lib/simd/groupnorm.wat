;; GroupNorm (+ SiLU) over NHWC float32 in TF.js's wasm heap (lib/simd/heap.ts), the arithmetic of
;; groupNormForward and groupNormBackward in lib/wasm_kernels.ts: groups of C/G consecutive channels, four
;; channels a lane group (C mod 4 = 0), pixel after pixel. Per-channel sums are float64 (f64x2), kept in a
;; work area between pixels; per-group statistics are scalar float64. Arguments are heap byte offsets, counts
;; and flags: SILU (1) applies SiLU after the affine map, SHIFT (2) adds shift[b, c] to x first (rounded to
;; float32, as TF.js's broadcast Add would).
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; e^(−v) in four lanes, for σ(v) = 1/(1 + e^(−v)): with u = −v, u = n·ln2 + t with n = round(u/ln2) (by
  ;; adding 1.5·2²³, whose float32 has no fraction bits left) and |t| ≤ ln2/2 (ln2 in two parts, Cody–Waite,
  ;; so n·ln2_hi is exact); e^t by Cephes' expf polynomial (within ~1 ulp); 2ⁿ as 2^h·2^(n−h), h = floor(n/2),
  ;; each a normal float built in the exponent bits, so the product overflows to +inf above ln(FLT_MAX) ≈ 88.72
  ;; and rounds to 0 (through the subnormals) below ≈ −103.3. u is first clamped to [−105, 89], where e^u is
  ;; already 0 and +inf; NaN stays NaN. The constants are read from the table at $c ($constants): V8 builds a
  ;; v128.const from immediates, several instructions each, every time it is used (SiLU 10% slower so).
  (func $expNeg (param $v v128) (param $c i32) (result v128)
    (local $z v128) (local $n v128) (local $t v128) (local $t2 v128) (local $p v128) (local $k v128) (local $h v128)
    (local.set $v (f32x4.pmin (f32x4.pmax (local.get $v) (v128.load offset=16 (local.get $c)))
      (v128.load offset=32 (local.get $c))))
    (local.set $z (f32x4.add (f32x4.mul (local.get $v) (v128.load offset=48 (local.get $c)))
      (v128.load offset=64 (local.get $c))))
    (local.set $n (f32x4.sub (local.get $z) (v128.load offset=64 (local.get $c))))
    (local.set $k (i32x4.sub (local.get $z) (v128.load offset=64 (local.get $c))))
    (local.set $t (f32x4.sub
      (f32x4.sub (f32x4.mul (local.get $n) (v128.load offset=80 (local.get $c))) (local.get $v))
      (f32x4.mul (local.get $n) (v128.load offset=96 (local.get $c)))))
    ;; p(t) = (1 + t) + t²·q(t), q(t) = (c₂ + c₃t) + t²·((c₄ + c₅t) + t²·(c₆ + c₇t)) (Estrin's scheme: a
    ;; shorter chain of dependent operations than Horner's, so more lanes are in flight).
    (local.set $t2 (f32x4.mul (local.get $t) (local.get $t)))
    (local.set $p (f32x4.add
      (f32x4.add (v128.load (local.get $c)) (local.get $t))
      (f32x4.mul (local.get $t2) (f32x4.add
        (f32x4.add (v128.load offset=192 (local.get $c)) (f32x4.mul (v128.load offset=176 (local.get $c)) (local.get $t)))
        (f32x4.mul (local.get $t2) (f32x4.add
          (f32x4.add (v128.load offset=160 (local.get $c)) (f32x4.mul (v128.load offset=144 (local.get $c)) (local.get $t)))
          (f32x4.mul (local.get $t2) (f32x4.add (v128.load offset=128 (local.get $c))
            (f32x4.mul (v128.load offset=112 (local.get $c)) (local.get $t))))))))))
    ;; 2^h has the bits h·2²³ + bits(1.0).
    (local.set $h (i32x4.shr_s (local.get $k) (i32.const 1)))
    (f32x4.mul
      (f32x4.mul (local.get $p) (i32x4.add (i32x4.shl (local.get $h) (i32.const 23)) (v128.load (local.get $c))))
      (i32x4.add (i32x4.shl (i32x4.sub (local.get $k) (local.get $h)) (i32.const 23)) (v128.load (local.get $c)))))

  ;; $expNeg's table at $c, 208 bytes: 1, the clamp of v, −log2(e), 1.5·2²³, −ln2_hi, ln2_lo, c₇ … c₂.
  (func $constants (param $c i32)
    (v128.store (local.get $c) (v128.const f32x4 1 1 1 1))
    (v128.store offset=16 (local.get $c) (v128.const f32x4 -89 -89 -89 -89))
    (v128.store offset=32 (local.get $c) (v128.const f32x4 105 105 105 105))
    (v128.store offset=48 (local.get $c) (v128.const f32x4 -1.44269504 -1.44269504 -1.44269504 -1.44269504))
    (v128.store offset=64 (local.get $c) (v128.const f32x4 12582912 12582912 12582912 12582912))
    (v128.store offset=80 (local.get $c)
      (v128.const f32x4 -0.693359375 -0.693359375 -0.693359375 -0.693359375))
    (v128.store offset=96 (local.get $c)
      (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))
    (v128.store offset=112 (local.get $c)
      (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (v128.store offset=128 (local.get $c)
      (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3))
    (v128.store offset=144 (local.get $c)
      (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3))
    (v128.store offset=160 (local.get $c)
      (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2))
    (v128.store offset=176 (local.get $c)
      (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1))
    (v128.store offset=192 (local.get $c)
      (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))

  ;; Σ and Σ² of four pixels' values of two channels (float64) added to the sums at $a (+32 for Σ²); the last
  ;; pixels, fewer than four, come one at a time with zeros.
  (func $sums4 (param $a i32) (param $w0 v128) (param $w1 v128) (param $w2 v128) (param $w3 v128)
    (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a))
      (f64x2.add (f64x2.add (local.get $w0) (local.get $w1)) (f64x2.add (local.get $w2) (local.get $w3)))))
    (v128.store offset=32 (local.get $a) (f64x2.add (v128.load offset=32 (local.get $a)) (f64x2.add
      (f64x2.add (f64x2.mul (local.get $w0) (local.get $w0)) (f64x2.mul (local.get $w1) (local.get $w1)))
      (f64x2.add (f64x2.mul (local.get $w2) (local.get $w2)) (f64x2.mul (local.get $w3) (local.get $w3)))))))

  ;; Forward, for each of $batch images of $pixels pixels × $c channels:
  ;;   Σx, Σx² per channel (float64); per group μ = Σx/n, σ² = max(Σx²/n − μ², 0), r = 1/√(σ² + ε), n =
  ;;   pixels·C/G; mean, rstd [B, G] ← μ, r (float32);
  ;;   y = act((x − μ₃₂)·s + b) with s = γ·r and b = β − (μ − μ₃₂)·s, per channel in float32: μ₃₂ is μ
  ;;   rounded, so x − μ₃₂ is exact for x near μ and an input with a large mean keeps its small spread (the
  ;;   JavaScript kernel's x·s + (β − μ·s) loses it to rounding); act is SiLU, v/(1 + e^(−v)), or identity.
  ;; $work: 208 + 28·C bytes, 16-byte aligned: $expNeg's table, then per four channels 64 bytes of sums (Σx of
  ;; channels 0–1, 2–3, then Σx² likewise), then 16·C bytes on, 48 bytes of parameters per four channels (μ₃₂,
  ;; s, b).
  (func (export "forward")
    (param $x i32) (param $shift i32) (param $gamma i32) (param $beta i32)
    (param $y i32) (param $mean i32) (param $rstd i32)
    (param $batch i32) (param $pixels i32) (param $c i32) (param $groups i32) (param $eps f64)
    (param $flags i32) (param $work i32)
    (local $silu i32) (local $shifted i32) (local $cb i32) (local $par i32) (local $yo i32)
    (local $px i32) (local $end i32) (local $k i32) (local $a i32)
    (local $cg i32) (local $gi i32) (local $j i32) (local $jend i32)
    (local $n f64) (local $m f64) (local $q f64) (local $r f64) (local $s f64) (local $mh f32)
    (local $tab i32) (local $end4 i32) (local $o i32) (local $v v128) (local $w v128)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (local.set $tab (local.get $work))
    (call $constants (local.get $tab))
    (local.set $work (i32.add (local.get $work) (i32.const 208)))
    (local.set $silu (i32.and (local.get $flags) (i32.const 1)))
    (local.set $shifted (i32.and (local.get $flags) (i32.const 2)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $par (i32.add (local.get $work) (i32.shl (local.get $cb) (i32.const 2))))
    (local.set $yo (i32.sub (local.get $y) (local.get $x)))
    (local.set $cg (i32.div_u (local.get $c) (local.get $groups)))
    (local.set $n (f64.convert_i32_u (i32.mul (local.get $pixels) (local.get $cg))))
    (block $images
      (loop $image
        (br_if $images (i32.eqz (local.get $batch)))
        (local.set $end (i32.add (local.get $x) (i32.mul (local.get $pixels) (local.get $cb))))
        ;; Σx, Σx² per channel: four pixels at a time, then the rest one by one.
        (memory.fill (local.get $work) (i32.const 0) (i32.shl (local.get $cb) (i32.const 2)))
        (local.set $px (local.get $x))
        (local.set $end4 (i32.sub (local.get $end)
          (i32.mul (i32.and (local.get $pixels) (i32.const 3)) (local.get $cb))))
        (block $done
          (loop $pixel
            (br_if $done (i32.ge_u (local.get $px) (local.get $end4)))
            (local.set $k (i32.const 0))
            (loop $lanes
              (local.set $o (i32.add (local.get $px) (local.get $k)))
              (local.set $v0 (v128.load (local.get $o)))
              (local.set $v1 (v128.load (i32.add (local.get $o) (local.get $cb))))
              (local.set $v2 (v128.load (i32.add (local.get $o) (i32.shl (local.get $cb) (i32.const 1)))))
              (local.set $v3 (v128.load (i32.add (local.get $o) (i32.mul (local.get $cb) (i32.const 3)))))
              (if (local.get $shifted)
                (then
                  (local.set $w (v128.load (i32.add (local.get $shift) (local.get $k))))
                  (local.set $v0 (f32x4.add (local.get $v0) (local.get $w)))
                  (local.set $v1 (f32x4.add (local.get $v1) (local.get $w)))
                  (local.set $v2 (f32x4.add (local.get $v2) (local.get $w)))
                  (local.set $v3 (f32x4.add (local.get $v3) (local.get $w)))))
              (local.set $a (i32.add (local.get $work) (i32.shl (local.get $k) (i32.const 2))))
              (call $sums4 (local.get $a)
                (f64x2.promote_low_f32x4 (local.get $v0)) (f64x2.promote_low_f32x4 (local.get $v1))
                (f64x2.promote_low_f32x4 (local.get $v2)) (f64x2.promote_low_f32x4 (local.get $v3)))
              (call $sums4 (i32.add (local.get $a) (i32.const 16))
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v0) (local.get $v0)))
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v1) (local.get $v1)))
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v2) (local.get $v2)))
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v3) (local.get $v3))))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $k) (local.get $cb))))
            (local.set $px (i32.add (local.get $px) (i32.shl (local.get $cb) (i32.const 2))))
            (br $pixel)))
        (block $done
          (loop $pixel
            (br_if $done (i32.ge_u (local.get $px) (local.get $end)))
            (local.set $k (i32.const 0))
            (loop $lanes
              (local.set $v (v128.load (i32.add (local.get $px) (local.get $k))))
              (if (local.get $shifted)
                (then (local.set $v (f32x4.add (local.get $v) (v128.load (i32.add (local.get $shift) (local.get $k)))))))
              (local.set $a (i32.add (local.get $work) (i32.shl (local.get $k) (i32.const 2))))
              (call $sums4 (local.get $a) (f64x2.promote_low_f32x4 (local.get $v))
                (v128.const i64x2 0 0) (v128.const i64x2 0 0) (v128.const i64x2 0 0))
              (call $sums4 (i32.add (local.get $a) (i32.const 16))
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))
                (v128.const i64x2 0 0) (v128.const i64x2 0 0) (v128.const i64x2 0 0))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $k) (local.get $cb))))
            (local.set $px (i32.add (local.get $px) (local.get $cb)))
            (br $pixel)))
        ;; Per group: μ, r; per channel: μ₃₂, s, b.
        (local.set $gi (i32.const 0))
        (local.set $j (i32.const 0))
        (loop $group
          (local.set $jend (i32.add (local.get $j) (local.get $cg)))
          (local.set $m (f64.const 0))
          (local.set $q (f64.const 0))
          (loop $sum
            (local.set $a (i32.add (local.get $work) (i32.add
              (i32.shl (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 6))
              (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 3)))))
            (local.set $m (f64.add (local.get $m) (f64.load (local.get $a))))
            (local.set $q (f64.add (local.get $q) (f64.load offset=32 (local.get $a))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $sum (i32.lt_u (local.get $j) (local.get $jend))))
          (local.set $m (f64.div (local.get $m) (local.get $n)))
          (local.set $q (f64.div (local.get $q) (local.get $n)))
          (local.set $r (f64.div (f64.const 1) (f64.sqrt (f64.add
            (f64.max (f64.sub (local.get $q) (f64.mul (local.get $m) (local.get $m))) (f64.const 0))
            (local.get $eps)))))
          (local.set $mh (f32.demote_f64 (local.get $m)))
          (f32.store (local.get $mean) (local.get $mh))
          (f32.store (local.get $rstd) (f32.demote_f64 (local.get $r)))
          (local.set $mean (i32.add (local.get $mean) (i32.const 4)))
          (local.set $rstd (i32.add (local.get $rstd) (i32.const 4)))
          (local.set $j (i32.sub (local.get $jend) (local.get $cg)))
          (loop $channel
            (local.set $a (i32.add (local.get $par) (i32.add
              (i32.mul (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 48))
              (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 2)))))
            (local.set $s (f64.mul (f64.promote_f32 (f32.load (i32.add (local.get $gamma)
              (i32.shl (local.get $j) (i32.const 2))))) (local.get $r)))
            (f32.store (local.get $a) (local.get $mh))
            (f32.store offset=16 (local.get $a) (f32.demote_f64 (local.get $s)))
            (f32.store offset=32 (local.get $a) (f32.demote_f64 (f64.sub
              (f64.promote_f32 (f32.load (i32.add (local.get $beta) (i32.shl (local.get $j) (i32.const 2)))))
              (f64.mul (f64.sub (local.get $m) (f64.promote_f32 (local.get $mh))) (local.get $s)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $channel (i32.lt_u (local.get $j) (local.get $jend))))
          (local.set $gi (i32.add (local.get $gi) (i32.const 1)))
          (br_if $group (i32.lt_u (local.get $gi) (local.get $groups))))
        ;; y.
        (local.set $px (local.get $x))
        (block $done
          (loop $pixel
            (br_if $done (i32.ge_u (local.get $px) (local.get $end)))
            (local.set $k (i32.const 0))
            (loop $lanes
              (local.set $v (v128.load (i32.add (local.get $px) (local.get $k))))
              (if (local.get $shifted)
                (then (local.set $v (f32x4.add (local.get $v) (v128.load (i32.add (local.get $shift) (local.get $k)))))))
              (local.set $a (i32.add (local.get $par) (i32.mul (local.get $k) (i32.const 3))))
              (local.set $v (f32x4.add
                (f32x4.mul (f32x4.sub (local.get $v) (v128.load (local.get $a))) (v128.load offset=16 (local.get $a)))
                (v128.load offset=32 (local.get $a))))
              (v128.store (i32.add (i32.add (local.get $px) (local.get $k)) (local.get $yo)) (local.get $v))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $k) (local.get $cb))))
            (local.set $px (i32.add (local.get $px) (local.get $cb)))
            (br $pixel)))
        ;; SiLU, in place: a pass of its own (a branch on $silu in the loop above slowed it by ~15%).
        (if (local.get $silu)
          (then
            (local.set $px (i32.add (local.get $x) (local.get $yo)))
            (local.set $o (i32.add (local.get $end) (local.get $yo)))
            (loop $lanes
              (local.set $v (v128.load (local.get $px)))
              (v128.store (local.get $px) (f32x4.div (local.get $v)
                (f32x4.add (v128.load (local.get $tab)) (call $expNeg (local.get $v) (local.get $tab)))))
              (local.set $px (i32.add (local.get $px) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $px) (local.get $o))))))
        (local.set $x (local.get $end))
        (local.set $shift (i32.add (local.get $shift) (local.get $cb)))
        (local.set $batch (i32.sub (local.get $batch) (i32.const 1)))
        (br $image))))

  ;; Backward, with x̂ = (x − μ)·r from the forward's mean and rstd, and n = γ·x̂ + β:
  ;;   pass 1: dn = dy·σ(n)·(1 + n·(1 − σ(n))) after SiLU (dy without), kept in dx; Σdn, Σdn·x̂ per channel
  ;;   (float64), summed over the batch into dβ, dγ;
  ;;   per group: m₁ = Σ_c γ_c·Σdn_c / n, m₂ = Σ_c γ_c·Σ(dn·x̂)_c / n (float64, then float32);
  ;;   pass 2: dx = r·(γ·dn − m₁ − x̂·m₂); with SHIFT, dshift[b, c] = Σ_pixels dx (float64).
  ;; $work: 208 + 56·C bytes, 16-byte aligned: $expNeg's table, then per four channels 64 bytes of this image's
  ;; sums (Σdn of channels 0–1, 2–3, then Σdn·x̂), 16·C bytes on the same summed over the batch, 32·C bytes
  ;; on Σdx (8 bytes a channel), 40·C bytes on 64 bytes of parameters per four channels (μ, r, m₁, m₂).
  (func (export "backward")
    (param $dy i32) (param $x i32) (param $shift i32) (param $gamma i32) (param $beta i32)
    (param $mean i32) (param $rstd i32) (param $dx i32) (param $dgamma i32) (param $dbeta i32)
    (param $dshift i32) (param $batch i32) (param $pixels i32) (param $c i32) (param $groups i32)
    (param $flags i32) (param $work i32)
    (local $silu i32) (local $shifted i32) (local $cb i32) (local $tot i32) (local $ds i32) (local $par i32)
    (local $dyo i32) (local $dxo i32) (local $px i32) (local $end i32) (local $k i32) (local $a i32) (local $o i32)
    (local $cg i32) (local $gi i32) (local $j i32) (local $jend i32)
    (local $n f64) (local $t1 f64) (local $t2 f64) (local $gm f64) (local $mu f32) (local $r f32)
    (local $tab i32) (local $v v128) (local $xh v128) (local $d v128) (local $e v128) (local $w v128) (local $one v128)
    (local.set $tab (local.get $work))
    (call $constants (local.get $tab))
    (local.set $work (i32.add (local.get $work) (i32.const 208)))
    (local.set $silu (i32.and (local.get $flags) (i32.const 1)))
    (local.set $shifted (i32.and (local.get $flags) (i32.const 2)))
    (local.set $cb (i32.shl (local.get $c) (i32.const 2)))
    (local.set $tot (i32.add (local.get $work) (i32.shl (local.get $cb) (i32.const 2))))
    (local.set $ds (i32.add (local.get $tot) (i32.shl (local.get $cb) (i32.const 2))))
    (local.set $par (i32.add (local.get $ds) (i32.shl (local.get $cb) (i32.const 1))))
    (local.set $dyo (i32.sub (local.get $dy) (local.get $x)))
    (local.set $dxo (i32.sub (local.get $dx) (local.get $x)))
    (local.set $cg (i32.div_u (local.get $c) (local.get $groups)))
    (local.set $n (f64.convert_i32_u (i32.mul (local.get $pixels) (local.get $cg))))
    (memory.fill (local.get $tot) (i32.const 0) (i32.shl (local.get $cb) (i32.const 2)))
    (block $images
      (loop $image
        (br_if $images (i32.eqz (local.get $batch)))
        (local.set $end (i32.add (local.get $x) (i32.mul (local.get $pixels) (local.get $cb))))
        (memory.fill (local.get $work) (i32.const 0) (i32.shl (local.get $cb) (i32.const 2)))
        (memory.fill (local.get $ds) (i32.const 0) (i32.shl (local.get $cb) (i32.const 1)))
        ;; μ, r per channel.
        (local.set $gi (i32.const 0))
        (local.set $j (i32.const 0))
        (loop $group
          (local.set $jend (i32.add (local.get $j) (local.get $cg)))
          (local.set $mu (f32.load (local.get $mean)))
          (local.set $r (f32.load (local.get $rstd)))
          (loop $channel
            (local.set $a (i32.add (local.get $par) (i32.add
              (i32.shl (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 6))
              (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 2)))))
            (f32.store (local.get $a) (local.get $mu))
            (f32.store offset=16 (local.get $a) (local.get $r))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $channel (i32.lt_u (local.get $j) (local.get $jend))))
          (local.set $mean (i32.add (local.get $mean) (i32.const 4)))
          (local.set $rstd (i32.add (local.get $rstd) (i32.const 4)))
          (local.set $gi (i32.add (local.get $gi) (i32.const 1)))
          (br_if $group (i32.lt_u (local.get $gi) (local.get $groups))))
        ;; Pass 1: dn, Σdn, Σdn·x̂.
        (local.set $px (local.get $x))
        (block $done
          (loop $pixel
            (br_if $done (i32.ge_u (local.get $px) (local.get $end)))
            (local.set $k (i32.const 0))
            (loop $lanes
              (local.set $o (i32.add (local.get $px) (local.get $k)))
              (local.set $v (v128.load (local.get $o)))
              (if (local.get $shifted)
                (then (local.set $v (f32x4.add (local.get $v) (v128.load (i32.add (local.get $shift) (local.get $k)))))))
              (local.set $a (i32.add (local.get $par) (i32.shl (local.get $k) (i32.const 2))))
              (local.set $xh (f32x4.mul (f32x4.sub (local.get $v) (v128.load (local.get $a)))
                (v128.load offset=16 (local.get $a))))
              (local.set $d (v128.load (i32.add (local.get $o) (local.get $dyo))))
              (if (local.get $silu)
                (then
                  (local.set $v (f32x4.add
                    (f32x4.mul (v128.load (i32.add (local.get $gamma) (local.get $k))) (local.get $xh))
                    (v128.load (i32.add (local.get $beta) (local.get $k)))))
                  (local.set $one (v128.load (local.get $tab)))
                  (local.set $e (f32x4.div (local.get $one)
                    (f32x4.add (local.get $one) (call $expNeg (local.get $v) (local.get $tab)))))
                  (local.set $d (f32x4.mul (local.get $d) (f32x4.mul (local.get $e) (f32x4.add (local.get $one)
                    (f32x4.mul (local.get $v) (f32x4.sub (local.get $one) (local.get $e)))))))))
              (v128.store (i32.add (local.get $o) (local.get $dxo)) (local.get $d))
              (local.set $a (i32.add (local.get $work) (i32.shl (local.get $k) (i32.const 2))))
              (local.set $w (f32x4.mul (local.get $d) (local.get $xh)))
              (v128.store (local.get $a)
                (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $d))))
              (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
                (f64x2.promote_low_f32x4
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d)))))
              (v128.store offset=32 (local.get $a)
                (f64x2.add (v128.load offset=32 (local.get $a)) (f64x2.promote_low_f32x4 (local.get $w))))
              (v128.store offset=48 (local.get $a) (f64x2.add (v128.load offset=48 (local.get $a))
                (f64x2.promote_low_f32x4
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $w) (local.get $w)))))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $k) (local.get $cb))))
            (local.set $px (i32.add (local.get $px) (local.get $cb)))
            (br $pixel)))
        ;; Per group: m₁, m₂; the sums into the batch's.
        (local.set $gi (i32.const 0))
        (local.set $j (i32.const 0))
        (loop $group
          (local.set $jend (i32.add (local.get $j) (local.get $cg)))
          (local.set $t1 (f64.const 0))
          (local.set $t2 (f64.const 0))
          (loop $sum
            (local.set $a (i32.add
              (i32.shl (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 6))
              (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 3))))
            (local.set $gm (f64.promote_f32 (f32.load (i32.add (local.get $gamma) (i32.shl (local.get $j) (i32.const 2))))))
            (local.set $t1 (f64.add (local.get $t1)
              (f64.mul (local.get $gm) (f64.load (i32.add (local.get $work) (local.get $a))))))
            (local.set $t2 (f64.add (local.get $t2)
              (f64.mul (local.get $gm) (f64.load offset=32 (i32.add (local.get $work) (local.get $a))))))
            (f64.store (i32.add (local.get $tot) (local.get $a)) (f64.add
              (f64.load (i32.add (local.get $tot) (local.get $a))) (f64.load (i32.add (local.get $work) (local.get $a)))))
            (f64.store offset=32 (i32.add (local.get $tot) (local.get $a)) (f64.add
              (f64.load offset=32 (i32.add (local.get $tot) (local.get $a)))
              (f64.load offset=32 (i32.add (local.get $work) (local.get $a)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $sum (i32.lt_u (local.get $j) (local.get $jend))))
          (local.set $j (i32.sub (local.get $jend) (local.get $cg)))
          (loop $channel
            (local.set $a (i32.add (local.get $par) (i32.add
              (i32.shl (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 6))
              (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 2)))))
            (f32.store offset=32 (local.get $a) (f32.demote_f64 (f64.div (local.get $t1) (local.get $n))))
            (f32.store offset=48 (local.get $a) (f32.demote_f64 (f64.div (local.get $t2) (local.get $n))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $channel (i32.lt_u (local.get $j) (local.get $jend))))
          (local.set $gi (i32.add (local.get $gi) (i32.const 1)))
          (br_if $group (i32.lt_u (local.get $gi) (local.get $groups))))
        ;; Pass 2: dx, Σdx.
        (local.set $px (local.get $x))
        (block $done
          (loop $pixel
            (br_if $done (i32.ge_u (local.get $px) (local.get $end)))
            (local.set $k (i32.const 0))
            (loop $lanes
              (local.set $o (i32.add (local.get $px) (local.get $k)))
              (local.set $v (v128.load (local.get $o)))
              (if (local.get $shifted)
                (then (local.set $v (f32x4.add (local.get $v) (v128.load (i32.add (local.get $shift) (local.get $k)))))))
              (local.set $a (i32.add (local.get $par) (i32.shl (local.get $k) (i32.const 2))))
              (local.set $xh (f32x4.mul (f32x4.sub (local.get $v) (v128.load (local.get $a)))
                (v128.load offset=16 (local.get $a))))
              (local.set $d (f32x4.mul (v128.load offset=16 (local.get $a)) (f32x4.sub (f32x4.sub
                (f32x4.mul (v128.load (i32.add (local.get $gamma) (local.get $k)))
                  (v128.load (i32.add (local.get $o) (local.get $dxo))))
                (v128.load offset=32 (local.get $a)))
                (f32x4.mul (local.get $xh) (v128.load offset=48 (local.get $a))))))
              (v128.store (i32.add (local.get $o) (local.get $dxo)) (local.get $d))
              (if (local.get $shifted)
                (then
                  (local.set $a (i32.add (local.get $ds) (i32.shl (local.get $k) (i32.const 1))))
                  (v128.store (local.get $a)
                    (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $d))))
                  (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
                    (f64x2.promote_low_f32x4
                      (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d)))))))
              (local.set $k (i32.add (local.get $k) (i32.const 16)))
              (br_if $lanes (i32.lt_u (local.get $k) (local.get $cb))))
            (local.set $px (i32.add (local.get $px) (local.get $cb)))
            (br $pixel)))
        ;; dshift[b] ← Σdx.
        (if (local.get $shifted)
          (then
            (local.set $j (i32.const 0))
            (loop $channel
              (f32.store (local.get $dshift)
                (f32.demote_f64 (f64.load (i32.add (local.get $ds) (i32.shl (local.get $j) (i32.const 3))))))
              (local.set $dshift (i32.add (local.get $dshift) (i32.const 4)))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $channel (i32.lt_u (local.get $j) (local.get $c))))))
        (local.set $x (local.get $end))
        (local.set $shift (i32.add (local.get $shift) (local.get $cb)))
        (local.set $batch (i32.sub (local.get $batch) (i32.const 1)))
        (br $image)))
    ;; dγ, dβ ← the batch's sums.
    (local.set $j (i32.const 0))
    (loop $channel
      (local.set $a (i32.add (local.get $tot) (i32.add
        (i32.shl (i32.shr_u (local.get $j) (i32.const 2)) (i32.const 6))
        (i32.shl (i32.and (local.get $j) (i32.const 3)) (i32.const 3)))))
      (f32.store (local.get $dbeta) (f32.demote_f64 (f64.load (local.get $a))))
      (f32.store (local.get $dgamma) (f32.demote_f64 (f64.load offset=32 (local.get $a))))
      (local.set $dbeta (i32.add (local.get $dbeta) (i32.const 4)))
      (local.set $dgamma (i32.add (local.get $dgamma) (i32.const 4)))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br_if $channel (i32.lt_u (local.get $j) (local.get $c)))))
)
