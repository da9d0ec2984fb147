;; Dropout masks (lib/simd/dropout.ts) on float32 arrays in TF.js's wasm heap: lib/nn/dropout.ts's
;; counter-based hash, the same terms as its JavaScript loop (hashUniformHost), eight elements at a time in
;; i16x8 lanes, then m = u ≥ rate ? scale : +0, stored to the heap; with x, x·m in the same pass (one f32
;; product, as TF.js's Mul).
;;
;; The state is two 12-bit limbs (hi, lo) of a 24-bit integer; a round is lo += kA, hi += kB (mod 2^12),
;; p = lo·a0, hi = hi·a0 + lo·a1 + floor(p / 2^12), lo = p + hi² (mod 2^12). 16-bit lanes hold it: every sum
;; and product is wanted mod 2^12 and i16 arithmetic wraps mod 2^16, a multiple of 2^12, so hi is reduced only
;; at the end; lo is reduced where the loop reduces it, since floor(p / 2^12) needs it exact. That carry, the
;; high bits of a 24-bit product, is what 16-bit lanes lack: i16x8.q15mulr_sat_s(lo, 8·a0)
;; = floor((8p + 2^14) / 2^15) = floor((p + 2^11) / 2^12) (lo < 2^12, 8·a0 < 2^15: no saturation), which is
;; the carry plus bit 11 of p, so bit 11 of p's low 16 bits is subtracted.
;;
;; The comparison: u = (hi·2^12 + lo)·2^−24 ≥ r, with r the rate rounded to float32 as TF.js's GreaterEqual
;; takes it, holds exactly when v = hi·2^12 + lo ≥ T = ceil(r·2^24) (lib/simd/dropout.ts; 0 ≤ T ≤ 2^24): with
;; T = Th·2^12 + Tl, when hi − [lo < Tl] ≥ Th, three i16 operations.
;;
;; Measured (one thread, a mask of 2^18 elements), ns an element: the hash in i32x4 lanes with u compared in
;; float32 2.8; in i16x8 lanes 1.75; with the multipliers in locals 1.63; with the integer comparison 1.3.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; out[i·d + e] = x[i·d + e]·m(i, e), or m(i, e) where $x is 0, for samples i < count and elements e < d.
  ;; keys: count × 4 i32, the limbs k0 … k3 of each sample (lib/nn/dropout.ts maskKeys). t: the threshold T
  ;; above; scale: 1/(1 − rate) rounded to float32.
  (func $run (param $x i32) (param $out i32) (param $keys i32) (param $count i32) (param $d i32)
    (param $t i32) (param $scale f32)
    (local $apply i32) (local $i i32) (local $e i32) (local $rest i32)
    (local $k0 v128) (local $k1 v128) (local $k2 v128) (local $k3 v128) (local $cl v128) (local $ch v128)
    (local $hi v128) (local $lo v128) (local $pl v128) (local $m v128) (local $m1 v128) (local $v v128)
    (local $limb v128) (local $tl v128) (local $th1 v128) (local $scaleV v128)
    ;; The rounds' multipliers a0, a1 and 8·a0, splatted once (locals, not v128.const).
    (local $a0r1 v128) (local $a1r1 v128) (local $q0r1 v128) (local $a0r2 v128) (local $a1r2 v128)
    (local $q0r2 v128) (local $a0r3 v128) (local $a1r3 v128) (local $q0r3 v128)
    (if (i32.eqz (i32.mul (local.get $count) (local.get $d))) (then (return)))
    (local.set $apply (i32.ne (local.get $x) (i32.const 0)))
    (local.set $limb (i16x8.splat (i32.const 0xfff)))
    (local.set $a0r1 (i16x8.splat (i32.const 0x1e9)))
    (local.set $a1r1 (i16x8.splat (i32.const 0x5bd)))
    (local.set $q0r1 (i16x8.splat (i32.const 0xf48)))
    (local.set $a0r2 (i16x8.splat (i32.const 0x779)))
    (local.set $a1r2 (i16x8.splat (i32.const 0x9e3)))
    (local.set $q0r2 (i16x8.splat (i32.const 0x3bc8)))
    (local.set $a0r3 (i16x8.splat (i32.const 0xb35)))
    (local.set $a1r3 (i16x8.splat (i32.const 0x2c1)))
    (local.set $q0r3 (i16x8.splat (i32.const 0x59a8)))
    (local.set $tl (i16x8.splat (i32.and (local.get $t) (i32.const 0xfff))))
    (local.set $th1 (i16x8.splat (i32.sub (i32.shr_u (local.get $t) (i32.const 12)) (i32.const 1))))
    (local.set $scaleV (f32x4.splat (local.get $scale)))
    (loop $samples
      (local.set $k0 (i16x8.splat (i32.load (local.get $keys))))
      (local.set $k1 (i16x8.splat (i32.load offset=4 (local.get $keys))))
      (local.set $k2 (i16x8.splat (i32.load offset=8 (local.get $keys))))
      (local.set $k3 (i16x8.splat (i32.load offset=12 (local.get $keys))))
      ;; The counter e … e+7 as limbs: ch = e >> 12, cl = e mod 2^12.
      (local.set $cl (v128.const i16x8 0 1 2 3 4 5 6 7))
      (local.set $ch (v128.const i16x8 0 0 0 0 0 0 0 0))
      (local.set $e (i32.const 0))
      (loop $octs
        ;; Round 1: keys k0, k1; multiplier 0x5bd·2^12 + 0x1e9.
        (local.set $lo (v128.and (i16x8.add (local.get $cl) (local.get $k0)) (local.get $limb)))
        (local.set $hi (i16x8.add (local.get $ch) (local.get $k1)))
        (local.set $pl (i16x8.mul (local.get $lo) (local.get $a0r1)))
        (local.set $hi (i16x8.add (i16x8.add
          (i16x8.mul (local.get $hi) (local.get $a0r1))
          (i16x8.mul (local.get $lo) (local.get $a1r1)))
          (i16x8.sub (i16x8.q15mulr_sat_s (local.get $lo) (local.get $q0r1))
            (i16x8.shr_u (i16x8.shl (local.get $pl) (i32.const 4)) (i32.const 15)))))
        (local.set $lo (v128.and (i16x8.add (local.get $pl) (i16x8.mul (local.get $hi) (local.get $hi)))
          (local.get $limb)))
        ;; Round 2: keys k2, k3; multiplier 0x9e3·2^12 + 0x779.
        (local.set $lo (v128.and (i16x8.add (local.get $lo) (local.get $k2)) (local.get $limb)))
        (local.set $hi (i16x8.add (local.get $hi) (local.get $k3)))
        (local.set $pl (i16x8.mul (local.get $lo) (local.get $a0r2)))
        (local.set $hi (i16x8.add (i16x8.add
          (i16x8.mul (local.get $hi) (local.get $a0r2))
          (i16x8.mul (local.get $lo) (local.get $a1r2)))
          (i16x8.sub (i16x8.q15mulr_sat_s (local.get $lo) (local.get $q0r2))
            (i16x8.shr_u (i16x8.shl (local.get $pl) (i32.const 4)) (i32.const 15)))))
        (local.set $lo (v128.and (i16x8.add (local.get $pl) (i16x8.mul (local.get $hi) (local.get $hi)))
          (local.get $limb)))
        ;; Round 3: keys k0, k1; multiplier 0x2c1·2^12 + 0xb35.
        (local.set $lo (v128.and (i16x8.add (local.get $lo) (local.get $k0)) (local.get $limb)))
        (local.set $hi (i16x8.add (local.get $hi) (local.get $k1)))
        (local.set $pl (i16x8.mul (local.get $lo) (local.get $a0r3)))
        (local.set $hi (i16x8.add (i16x8.add
          (i16x8.mul (local.get $hi) (local.get $a0r3))
          (i16x8.mul (local.get $lo) (local.get $a1r3)))
          (i16x8.sub (i16x8.q15mulr_sat_s (local.get $lo) (local.get $q0r3))
            (i16x8.shr_u (i16x8.shl (local.get $pl) (i32.const 4)) (i32.const 15)))))
        (local.set $lo (v128.and (i16x8.add (local.get $pl) (i16x8.mul (local.get $hi) (local.get $hi)))
          (local.get $limb)))
        ;; keep ⟺ (hi mod 2^12) + (lo < Tl ? −1 : 0) > Th − 1; the 16-bit mask widened to two f32x4 masks.
        (local.set $m (i16x8.gt_s (i16x8.add (v128.and (local.get $hi) (local.get $limb))
          (i16x8.lt_s (local.get $lo) (local.get $tl))) (local.get $th1)))
        (local.set $m1 (v128.and (local.get $scaleV) (i32x4.extend_high_i16x8_s (local.get $m))))
        (local.set $m (v128.and (local.get $scaleV) (i32x4.extend_low_i16x8_s (local.get $m))))
        (local.set $rest (i32.sub (local.get $d) (local.get $e)))
        (if (i32.ge_u (local.get $rest) (i32.const 8))
          (then
            (if (local.get $apply)
              (then
                (local.set $m (f32x4.mul (v128.load (local.get $x)) (local.get $m)))
                (local.set $m1 (f32x4.mul (v128.load offset=16 (local.get $x)) (local.get $m1)))
                (local.set $x (i32.add (local.get $x) (i32.const 32)))))
            (v128.store (local.get $out) (local.get $m))
            (v128.store offset=16 (local.get $out) (local.get $m1))
            (local.set $out (i32.add (local.get $out) (i32.const 32))))
          (else
            ;; The sample's last 1 … 7 elements: four at once, then one by one (nothing past them touched).
            (if (i32.ge_u (local.get $rest) (i32.const 4))
              (then
                (if (local.get $apply)
                  (then
                    (local.set $m (f32x4.mul (v128.load (local.get $x)) (local.get $m)))
                    (local.set $x (i32.add (local.get $x) (i32.const 16)))))
                (v128.store (local.get $out) (local.get $m))
                (local.set $out (i32.add (local.get $out) (i32.const 16)))
                (local.set $m (local.get $m1))
                (local.set $rest (i32.sub (local.get $rest) (i32.const 4)))))
            (if (local.get $rest)
              (then
                (if (local.get $apply)
                  (then
                    (local.set $v (v128.load32_zero (local.get $x)))
                    (if (i32.gt_u (local.get $rest) (i32.const 1))
                      (then (local.set $v (v128.load32_lane offset=4 1 (local.get $x) (local.get $v)))))
                    (if (i32.gt_u (local.get $rest) (i32.const 2))
                      (then (local.set $v (v128.load32_lane offset=8 2 (local.get $x) (local.get $v)))))
                    (local.set $m (f32x4.mul (local.get $v) (local.get $m)))
                    (local.set $x (i32.add (local.get $x) (i32.shl (local.get $rest) (i32.const 2))))))
                (v128.store32_lane 0 (local.get $out) (local.get $m))
                (if (i32.gt_u (local.get $rest) (i32.const 1))
                  (then (v128.store32_lane offset=4 1 (local.get $out) (local.get $m))))
                (if (i32.gt_u (local.get $rest) (i32.const 2))
                  (then (v128.store32_lane offset=8 2 (local.get $out) (local.get $m))))
                (local.set $out (i32.add (local.get $out) (i32.shl (local.get $rest) (i32.const 2))))))))
        ;; e += 8: cl + 8, its carry (a −1 lane where it passed 2^12 − 1) taken from ch.
        (local.set $cl (i16x8.add (local.get $cl) (v128.const i16x8 8 8 8 8 8 8 8 8)))
        (local.set $ch (i16x8.sub (local.get $ch) (i16x8.gt_s (local.get $cl) (local.get $limb))))
        (local.set $cl (v128.and (local.get $cl) (local.get $limb)))
        (local.set $e (i32.add (local.get $e) (i32.const 8)))
        (br_if $octs (i32.lt_u (local.get $e) (local.get $d))))
      (local.set $keys (i32.add (local.get $keys) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $samples (i32.lt_u (local.get $i) (local.get $count)))))

  ;; The scaled mask m of [count, d] into out.
  (func (export "mask") (param $out i32) (param $keys i32) (param $count i32) (param $d i32) (param $t i32)
    (param $scale f32)
    (call $run (i32.const 0) (local.get $out) (local.get $keys) (local.get $count) (local.get $d)
      (local.get $t) (local.get $scale)))

  ;; x·m for x [count, d] into out.
  (func (export "apply") (param $x i32) (param $out i32) (param $keys i32) (param $count i32) (param $d i32)
    (param $t i32) (param $scale f32)
    (call $run (local.get $x) (local.get $out) (local.get $keys) (local.get $count) (local.get $d)
      (local.get $t) (local.get $scale)))
)
