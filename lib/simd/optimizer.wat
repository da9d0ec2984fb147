;; The optimizer's per-element passes over float32 arrays in TF.js's wasm heap (lib/simd/heap.ts), four lanes
;; at a time (SIMD128), the last n mod 4 elements one at a time with the same float32 operations. Arguments are
;; byte offsets into the heap and element counts. Every lane does exactly the float32 operations of the TF.js
;; ops in lib/train/optim.ts and lib/train/step.ts, in their order (wasm's f32 +, −, ×, ÷ and √ are correctly
;; rounded, lanes included), so the results are bit-identical to those ops.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; Σ x² over n floats at $x, in float64: four f64x2 accumulators (8 floats an iteration), then the rest.
  (func (export "sumsq") (param $x i32) (param $n i32) (result f64)
    (local $end i32) (local $v v128) (local $w v128)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $s f64) (local $f f64)
    (local.set $end (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $w (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a0 (f64x2.add (local.get $a0) (f64x2.mul (local.get $w) (local.get $w))))
        (local.set $w (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
        (local.set $a1 (f64x2.add (local.get $a1) (f64x2.mul (local.get $w) (local.get $w))))
        (local.set $v (v128.load offset=16 (local.get $x)))
        (local.set $w (f64x2.promote_low_f32x4 (local.get $v)))
        (local.set $a2 (f64x2.add (local.get $a2) (f64x2.mul (local.get $w) (local.get $w))))
        (local.set $w (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
        (local.set $a3 (f64x2.add (local.get $a3) (f64x2.mul (local.get $w) (local.get $w))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (br $next)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $f (f64.promote_f32 (f32.load (local.get $x))))
        (local.set $s (f64.add (local.get $s) (f64.mul (local.get $f) (local.get $f))))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $next)))
    (local.set $a0 (f64x2.add (f64x2.add (local.get $a0) (local.get $a1)) (f64x2.add (local.get $a2) (local.get $a3))))
    (f64.add (local.get $s)
      (f64.add (f64x2.extract_lane 0 (local.get $a0)) (f64x2.extract_lane 1 (local.get $a0)))))

  ;; One Adam/RAdam update of n parameters (lib/wasm_kernels.ts adamUpdate, term for term):
  ;;   g ← g + λθ (flags & 1);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
  ;;   θ ← θ − s·m/denom (flags & 2), denom = √v/√(1−β2^t) + ε (flags & 4, Adam) or √v + ε (RAdam);
  ;;   θ ← θ − s·m without flags & 2 (RAdam before rectification).
  ;; $c1 = 1−β1 and $c2 = 1−β2 come rounded to float32, as TF.js's scalar tensors hold them.
  (func (export "adam")
    (param $p i32) (param $m i32) (param $v i32) (param $g i32)
    (param $po i32) (param $mo i32) (param $vo i32) (param $n i32)
    (param $b1 f32) (param $b2 f32) (param $c1 f32) (param $c2 f32)
    (param $wd f32) (param $eps f32) (param $step f32) (param $sb f32) (param $flags i32)
    (local $i i32) (local $end i32) (local $decay i32) (local $adaptive i32) (local $adam i32)
    (local $B1 v128) (local $B2 v128) (local $C1 v128) (local $C2 v128)
    (local $WD v128) (local $EPS v128) (local $STEP v128) (local $SB v128)
    (local $pv v128) (local $gv v128) (local $mv v128) (local $vv v128) (local $dv v128) (local $rv v128)
    (local $ps f32) (local $gs f32) (local $ms f32) (local $vs f32) (local $ds f32) (local $rs f32)
    (local.set $decay (i32.and (local.get $flags) (i32.const 1)))
    (local.set $adaptive (i32.and (local.get $flags) (i32.const 2)))
    (local.set $adam (i32.and (local.get $flags) (i32.const 4)))
    (local.set $B1 (f32x4.splat (local.get $b1)))
    (local.set $B2 (f32x4.splat (local.get $b2)))
    (local.set $C1 (f32x4.splat (local.get $c1)))
    (local.set $C2 (f32x4.splat (local.get $c2)))
    (local.set $WD (f32x4.splat (local.get $wd)))
    (local.set $EPS (f32x4.splat (local.get $eps)))
    (local.set $STEP (f32x4.splat (local.get $step)))
    (local.set $SB (f32x4.splat (local.get $sb)))
    ;; Four lanes at a time; $i is a byte offset.
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $pv (v128.load (i32.add (local.get $p) (local.get $i))))
        (local.set $gv (v128.load (i32.add (local.get $g) (local.get $i))))
        (if (local.get $decay)
          (then (local.set $gv (f32x4.add (local.get $gv) (f32x4.mul (local.get $pv) (local.get $WD))))))
        (local.set $mv (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $m) (local.get $i))) (local.get $B1))
          (f32x4.mul (local.get $gv) (local.get $C1))))
        (local.set $vv (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $v) (local.get $i))) (local.get $B2))
          (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (local.get $C2))))
        (local.set $dv (local.get $mv))
        (if (local.get $adaptive)
          (then
            (local.set $rv (f32x4.sqrt (local.get $vv)))
            (if (local.get $adam)
              (then (local.set $rv (f32x4.add (f32x4.div (local.get $rv) (local.get $SB)) (local.get $EPS))))
              (else (local.set $rv (f32x4.add (local.get $rv) (local.get $EPS)))))
            (local.set $dv (f32x4.div (local.get $mv) (local.get $rv)))))
        (v128.store (i32.add (local.get $mo) (local.get $i)) (local.get $mv))
        (v128.store (i32.add (local.get $vo) (local.get $i)) (local.get $vv))
        (v128.store (i32.add (local.get $po) (local.get $i))
          (f32x4.sub (local.get $pv) (f32x4.mul (local.get $dv) (local.get $STEP))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))
    ;; The rest, one at a time: the same operations on f32.
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $ps (f32.load (i32.add (local.get $p) (local.get $i))))
        (local.set $gs (f32.load (i32.add (local.get $g) (local.get $i))))
        (if (local.get $decay)
          (then (local.set $gs (f32.add (local.get $gs) (f32.mul (local.get $ps) (local.get $wd))))))
        (local.set $ms (f32.add
          (f32.mul (f32.load (i32.add (local.get $m) (local.get $i))) (local.get $b1))
          (f32.mul (local.get $gs) (local.get $c1))))
        (local.set $vs (f32.add
          (f32.mul (f32.load (i32.add (local.get $v) (local.get $i))) (local.get $b2))
          (f32.mul (f32.mul (local.get $gs) (local.get $gs)) (local.get $c2))))
        (local.set $ds (local.get $ms))
        (if (local.get $adaptive)
          (then
            (local.set $rs (f32.sqrt (local.get $vs)))
            (if (local.get $adam)
              (then (local.set $rs (f32.add (f32.div (local.get $rs) (local.get $sb)) (local.get $eps))))
              (else (local.set $rs (f32.add (local.get $rs) (local.get $eps)))))
            (local.set $ds (f32.div (local.get $ms) (local.get $rs)))))
        (f32.store (i32.add (local.get $mo) (local.get $i)) (local.get $ms))
        (f32.store (i32.add (local.get $vo) (local.get $i)) (local.get $vs))
        (f32.store (i32.add (local.get $po) (local.get $i))
          (f32.sub (local.get $ps) (f32.mul (local.get $ds) (local.get $step))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next))))

  ;; EMA of n parameters: out ← d·t + e·s, with d = decay and e = 1 − decay as float32 (tf.add(tf.mul(t, d),
  ;; tf.mul(s, e)) in lib/train/step.ts emaUpdate).
  (func (export "ema") (param $t i32) (param $s i32) (param $out i32) (param $n i32) (param $d f32) (param $e f32)
    (local $i i32) (local $end i32) (local $D v128) (local $E v128)
    (local.set $D (f32x4.splat (local.get $d)))
    (local.set $E (f32x4.splat (local.get $e)))
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (v128.store (i32.add (local.get $out) (local.get $i)) (f32x4.add
          (f32x4.mul (v128.load (i32.add (local.get $t) (local.get $i))) (local.get $D))
          (f32x4.mul (v128.load (i32.add (local.get $s) (local.get $i))) (local.get $E))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (f32.store (i32.add (local.get $out) (local.get $i)) (f32.add
          (f32.mul (f32.load (i32.add (local.get $t) (local.get $i))) (local.get $d))
          (f32.mul (f32.load (i32.add (local.get $s) (local.get $i))) (local.get $e))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next))))
)
