;; Small dense matrix products on TF.js's wasm heap (lib/simd/matmul.ts): C[M, N] = A·B, B row-major [K, N]
;; (a transposed B is transposed first), A read through strides (row-major, or transposed), C row-major.
;; SIMD128 along n: panels of eight columns (two v128 of B per row p), then one of four, then the last N mod 4
;; columns one at a time; in a panel, tiles of four rows share B's loads, then the last M mod 4 rows one at a
;; time. Every element is summed the same way wherever it falls:
;;   c[i, j] = ((0 + a[i, 0]·b[0, j]) + a[i, 1]·b[1, j]) + … + a[i, K−1]·b[K−1, j]
;; in float32, a product and a sum each correctly rounded (lanes and scalars alike, never fused), so a row's
;; result does not depend on M, nor on the other rows of its tile; XNNPACK's wasm GEMM computes the same bits.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; dst[c, r] = src[r, c] for src [rows, cols] and dst [cols, rows]: 4 × 4 blocks transposed in registers,
  ;; then the last rows mod 4 and cols mod 4 one element at a time.
  (func (export "transpose") (param $src i32) (param $dst i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $c i32) (local $r4 i32) (local $c4 i32) (local $s i32) (local $d i32)
    (local $sRow i32) (local $dRow i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $r4 (i32.and (local.get $rows) (i32.const -4)))
    (local.set $c4 (i32.and (local.get $cols) (i32.const -4)))
    (local.set $sRow (i32.shl (local.get $cols) (i32.const 2)))
    (local.set $dRow (i32.shl (local.get $rows) (i32.const 2)))
    (block $rowsDone
      (loop $rowQuads
        (br_if $rowsDone (i32.ge_u (local.get $r) (local.get $r4)))
        (local.set $c (i32.const 0))
        (block $colsDone
          (loop $colQuads
            (br_if $colsDone (i32.ge_u (local.get $c) (local.get $c4)))
            (local.set $s (i32.add (local.get $src)
              (i32.shl (i32.add (i32.mul (local.get $r) (local.get $cols)) (local.get $c)) (i32.const 2))))
            (local.set $a0 (v128.load (local.get $s)))
            (local.set $a1 (v128.load (i32.add (local.get $s) (local.get $sRow))))
            (local.set $a2 (v128.load (i32.add (local.get $s) (i32.shl (local.get $sRow) (i32.const 1)))))
            (local.set $a3 (v128.load (i32.add (local.get $s) (i32.mul (local.get $sRow) (i32.const 3)))))
            ;; [a0.0 a1.0 a0.1 a1.1], [a2.0 a3.0 a2.1 a3.1], [a0.2 a1.2 a0.3 a1.3], [a2.2 a3.2 a2.3 a3.3]
            (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a0) (local.get $a1)))
            (local.set $t1 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a2) (local.get $a3)))
            (local.set $t2 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a0) (local.get $a1)))
            (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a2) (local.get $a3)))
            (local.set $d (i32.add (local.get $dst)
              (i32.shl (i32.add (i32.mul (local.get $c) (local.get $rows)) (local.get $r)) (i32.const 2))))
            (v128.store (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t1)))
            (local.set $d (i32.add (local.get $d) (local.get $dRow)))
            (v128.store (local.get $d)
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t1)))
            (local.set $d (i32.add (local.get $d) (local.get $dRow)))
            (v128.store (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t2) (local.get $t3)))
            (local.set $d (i32.add (local.get $d) (local.get $dRow)))
            (v128.store (local.get $d)
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t2) (local.get $t3)))
            (local.set $c (i32.add (local.get $c) (i32.const 4)))
            (br $colQuads)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $rowQuads)))
    (call $transposeScalar (local.get $src) (local.get $dst) (local.get $rows) (local.get $cols)
      (i32.const 0) (local.get $r4) (local.get $c4) (local.get $cols))
    (call $transposeScalar (local.get $src) (local.get $dst) (local.get $rows) (local.get $cols)
      (local.get $r4) (local.get $rows) (i32.const 0) (local.get $cols)))

  ;; dst[c, r] = src[r, c] for r in [r0, r1), c in [c0, c1).
  (func $transposeScalar (param $src i32) (param $dst i32) (param $rows i32) (param $cols i32)
    (param $r0 i32) (param $r1 i32) (param $c0 i32) (param $c1 i32)
    (local $c i32)
    (block $rowsDone
      (loop $row
        (br_if $rowsDone (i32.ge_u (local.get $r0) (local.get $r1)))
        (local.set $c (local.get $c0))
        (block $colsDone
          (loop $col
            (br_if $colsDone (i32.ge_u (local.get $c) (local.get $c1)))
            (f32.store
              (i32.add (local.get $dst)
                (i32.shl (i32.add (i32.mul (local.get $c) (local.get $rows)) (local.get $r0)) (i32.const 2)))
              (f32.load (i32.add (local.get $src)
                (i32.shl (i32.add (i32.mul (local.get $r0) (local.get $cols)) (local.get $c)) (i32.const 2)))))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $col)))
        (local.set $r0 (i32.add (local.get $r0) (i32.const 1)))
        (br $row))))

;; C[M, N] = A·B with a[i, p] at A + 4·(i·sam + p·sak), B [K, N] and C [M, N] row-major (byte offsets).
  (func (export "matmul") (param $a i32) (param $b i32) (param $c i32) (param $m i32) (param $k i32)
    (param $n i32) (param $sam i32) (param $sak i32)
    (local $i i32) (local $j i32) (local $rowA i32) (local $rowC i32)
    (local.set $rowA (i32.shl (local.get $sam) (i32.const 2)))
    (local.set $rowC (i32.shl (local.get $n) (i32.const 2)))
    (local.set $sak (i32.shl (local.get $sak) (i32.const 2)))
    (block $panelsDone
      (loop $panel
        (br_if $panelsDone (i32.gt_u (i32.add (local.get $j) (i32.const 8)) (local.get $n)))
        (call $panel (local.get $a) (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2)))
          (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2)))
          (local.get $m) (local.get $k) (local.get $rowC) (local.get $rowA) (local.get $sak) (i32.const 8))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $panel)))
    (if (i32.le_u (i32.add (local.get $j) (i32.const 4)) (local.get $n))
      (then
        (call $panel (local.get $a) (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2)))
          (i32.add (local.get $c) (i32.shl (local.get $j) (i32.const 2)))
          (local.get $m) (local.get $k) (local.get $rowC) (local.get $rowA) (local.get $sak) (i32.const 4))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))))
    (block $colsDone
      (loop $col
        (br_if $colsDone (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $i (i32.const 0))
        (block $rowsDone
          (loop $row
            (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $m)))
            (call $dot
              (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $rowA)))
              (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2)))
              (i32.add (local.get $c) (i32.add (i32.mul (local.get $i) (local.get $rowC))
                (i32.shl (local.get $j) (i32.const 2))))
              (local.get $k) (local.get $rowC) (local.get $sak))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $row)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $col))))

  ;; One panel of $width (8 or 4) columns, all M rows: $b at b[0, j], $c at c[0, j], $a at a[0, 0]; $rowB bytes
  ;; between rows of B (and of C), $rowA between rows of A, $stepA between a[i, p] and a[i, p + 1].
  (func $panel (param $a i32) (param $b i32) (param $c i32) (param $m i32) (param $k i32) (param $rowB i32)
    (param $rowA i32) (param $stepA i32) (param $width i32)
    (local $i i32) (local $m4 i32)
    (local.set $m4 (i32.and (local.get $m) (i32.const -4)))
    (block $tilesDone
      (loop $tile
        (br_if $tilesDone (i32.ge_u (local.get $i) (local.get $m4)))
        (if (i32.eq (local.get $width) (i32.const 8))
          (then (call $rows4x8 (local.get $a) (local.get $b) (local.get $c) (local.get $k) (local.get $rowB)
            (local.get $rowA) (local.get $stepA)))
          (else (call $rows4x4 (local.get $a) (local.get $b) (local.get $c) (local.get $k) (local.get $rowB)
            (local.get $rowA) (local.get $stepA))))
        (local.set $a (i32.add (local.get $a) (i32.shl (local.get $rowA) (i32.const 2))))
        (local.set $c (i32.add (local.get $c) (i32.shl (local.get $rowB) (i32.const 2))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $tile)))
    (block $rowsDone
      (loop $row
        (br_if $rowsDone (i32.ge_u (local.get $i) (local.get $m)))
        (if (i32.eq (local.get $width) (i32.const 8))
          (then (call $row1x8 (local.get $a) (local.get $b) (local.get $c) (local.get $k) (local.get $rowB)
            (local.get $stepA)))
          (else (call $row1x4 (local.get $a) (local.get $b) (local.get $c) (local.get $k) (local.get $rowB)
            (local.get $stepA))))
        (local.set $a (i32.add (local.get $a) (local.get $rowA)))
        (local.set $c (i32.add (local.get $c) (local.get $rowB)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $row))))

  ;; Eight columns of four rows ($panel's arguments, $a at a[i, 0] and $c at c[i, j]).
  (func $rows4x8 (param $a i32) (param $b i32) (param $c i32) (param $k i32) (param $rowB i32) (param $rowA i32)
    (param $stepA i32)
    (local $end i32) (local $rowA2 i32) (local $rowA3 i32) (local $x v128) (local $b0 v128) (local $b1 v128)
    (local $s0 v128) (local $t0 v128) (local $s1 v128) (local $t1 v128)
    (local $s2 v128) (local $t2 v128) (local $s3 v128) (local $t3 v128)
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $k) (local.get $stepA))))
    (local.set $rowA2 (i32.shl (local.get $rowA) (i32.const 1)))
    (local.set $rowA3 (i32.add (local.get $rowA2) (local.get $rowA)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $b0 (v128.load (local.get $b)))
        (local.set $b1 (v128.load offset=16 (local.get $b)))
        (local.set $x (v128.load32_splat (local.get $a)))
        (local.set $s0 (f32x4.add (local.get $s0) (f32x4.mul (local.get $x) (local.get $b0))))
        (local.set $t0 (f32x4.add (local.get $t0) (f32x4.mul (local.get $x) (local.get $b1))))
        (local.set $x (v128.load32_splat (i32.add (local.get $a) (local.get $rowA))))
        (local.set $s1 (f32x4.add (local.get $s1) (f32x4.mul (local.get $x) (local.get $b0))))
        (local.set $t1 (f32x4.add (local.get $t1) (f32x4.mul (local.get $x) (local.get $b1))))
        (local.set $x (v128.load32_splat (i32.add (local.get $a) (local.get $rowA2))))
        (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (local.get $x) (local.get $b0))))
        (local.set $t2 (f32x4.add (local.get $t2) (f32x4.mul (local.get $x) (local.get $b1))))
        (local.set $x (v128.load32_splat (i32.add (local.get $a) (local.get $rowA3))))
        (local.set $s3 (f32x4.add (local.get $s3) (f32x4.mul (local.get $x) (local.get $b0))))
        (local.set $t3 (f32x4.add (local.get $t3) (f32x4.mul (local.get $x) (local.get $b1))))
        (local.set $a (i32.add (local.get $a) (local.get $stepA)))
        (local.set $b (i32.add (local.get $b) (local.get $rowB)))
        (br $next)))
    (v128.store (local.get $c) (local.get $s0))
    (v128.store offset=16 (local.get $c) (local.get $t0))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s1))
    (v128.store offset=16 (local.get $c) (local.get $t1))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s2))
    (v128.store offset=16 (local.get $c) (local.get $t2))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s3))
    (v128.store offset=16 (local.get $c) (local.get $t3)))

  ;; Four columns of four rows ($rows4x8's arguments).
  (func $rows4x4 (param $a i32) (param $b i32) (param $c i32) (param $k i32) (param $rowB i32) (param $rowA i32)
    (param $stepA i32)
    (local $end i32) (local $rowA2 i32) (local $rowA3 i32) (local $b0 v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $k) (local.get $stepA))))
    (local.set $rowA2 (i32.shl (local.get $rowA) (i32.const 1)))
    (local.set $rowA3 (i32.add (local.get $rowA2) (local.get $rowA)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $b0 (v128.load (local.get $b)))
        (local.set $s0 (f32x4.add (local.get $s0)
          (f32x4.mul (v128.load32_splat (local.get $a)) (local.get $b0))))
        (local.set $s1 (f32x4.add (local.get $s1)
          (f32x4.mul (v128.load32_splat (i32.add (local.get $a) (local.get $rowA))) (local.get $b0))))
        (local.set $s2 (f32x4.add (local.get $s2)
          (f32x4.mul (v128.load32_splat (i32.add (local.get $a) (local.get $rowA2))) (local.get $b0))))
        (local.set $s3 (f32x4.add (local.get $s3)
          (f32x4.mul (v128.load32_splat (i32.add (local.get $a) (local.get $rowA3))) (local.get $b0))))
        (local.set $a (i32.add (local.get $a) (local.get $stepA)))
        (local.set $b (i32.add (local.get $b) (local.get $rowB)))
        (br $next)))
    (v128.store (local.get $c) (local.get $s0))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s1))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s2))
    (local.set $c (i32.add (local.get $c) (local.get $rowB)))
    (v128.store (local.get $c) (local.get $s3)))

  ;; Eight columns of one row ($rows4x8's arguments less $rowA).
  (func $row1x8 (param $a i32) (param $b i32) (param $c i32) (param $k i32) (param $rowB i32) (param $stepA i32)
    (local $end i32) (local $x v128) (local $s v128) (local $t v128)
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $k) (local.get $stepA))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $x (v128.load32_splat (local.get $a)))
        (local.set $s (f32x4.add (local.get $s) (f32x4.mul (local.get $x) (v128.load (local.get $b)))))
        (local.set $t (f32x4.add (local.get $t) (f32x4.mul (local.get $x) (v128.load offset=16 (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (local.get $stepA)))
        (local.set $b (i32.add (local.get $b) (local.get $rowB)))
        (br $next)))
    (v128.store (local.get $c) (local.get $s))
    (v128.store offset=16 (local.get $c) (local.get $t)))

  ;; Four columns of one row ($row1x8's arguments).
  (func $row1x4 (param $a i32) (param $b i32) (param $c i32) (param $k i32) (param $rowB i32) (param $stepA i32)
    (local $end i32) (local $s v128)
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $k) (local.get $stepA))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $s (f32x4.add (local.get $s)
          (f32x4.mul (v128.load32_splat (local.get $a)) (v128.load (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (local.get $stepA)))
        (local.set $b (i32.add (local.get $b) (local.get $rowB)))
        (br $next)))
    (v128.store (local.get $c) (local.get $s)))

  ;; One element ($row1x8's arguments).
  (func $dot (param $a i32) (param $b i32) (param $c i32) (param $k i32) (param $rowB i32) (param $stepA i32)
    (local $end i32) (local $s f32)
    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $k) (local.get $stepA))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $a)) (f32.load (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (local.get $stepA)))
        (local.set $b (i32.add (local.get $b) (local.get $rowB)))
        (br $next)))
    (f32.store (local.get $c) (local.get $s)))
)
