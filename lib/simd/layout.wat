;; The conv gradients' data-layout kernels (lib/wasm_kernels.ts im2colTransposed and flipFilterInto) on float32
;; arrays in TF.js's wasm heap (lib/simd/heap.ts). Both are transposes, per filter tap, of a stack of rows into
;; columns, so both run on one routine, $gather_transpose, which reads its rows through a table of addresses:
;; im2col's rows are x's channel rows at each output position (a zero row where the window is in the padding),
;; the flip's are the filter's input-channel rows. Pointers are heap byte offsets, compared unsigned; values are
;; copied, never computed, so the results are bit for bit those of the JavaScript loops.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; dst[k·ds + r] = row_r[k] for r < rows, k < len, where row_r is the `len` floats at byte address tbl[r] and
  ;; ds is dst's row stride in bytes. 4×4 blocks: four v128 loads along the rows, a transpose by eight i32x4
  ;; shuffles, four v128 stores along dst's rows. The blocks go in tiles of 64 rows with k outer: each visit of
  ;; a dst row writes 256 contiguous bytes (whole cache lines, not 16 bytes of a line that a dst row stride of
  ;; 1 or 4 KiB maps to the same few cache sets as the other rows'), while the tile's 64 source rows stay in
  ;; L1. Tiles of 64 rows took ~25% less time than tiles of 16 on im2col's [1, 32, 32, 256] 3×3 (larger ones:
  ;; no better). len mod 4 columns and rows mod 4 rows are copied one float at a time.
  (func $gather_transpose (param $tbl i32) (param $rows i32) (param $len i32) (param $dst i32) (param $ds i32)
    (local $r4 i32) (local $kEnd i32) (local $r0 i32) (local $rEnd i32) (local $k i32) (local $d i32)
    (local $p i32) (local $q i32) (local $a i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $r4 (i32.and (local.get $rows) (i32.const -4)))
    (local.set $kEnd (i32.shl (i32.and (local.get $len) (i32.const -4)) (i32.const 2)))
    (block $tilesDone
      (loop $tile
        (br_if $tilesDone (i32.ge_u (local.get $r0) (local.get $r4)))
        (local.set $rEnd (i32.add (local.get $r0) (i32.const 64)))
        (if (i32.gt_u (local.get $rEnd) (local.get $r4)) (then (local.set $rEnd (local.get $r4))))
        ;; $k: byte offset along the rows; $d: dst at row k/4, column r0.
        (local.set $k (i32.const 0))
        (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $r0) (i32.const 2))))
        (block $ksDone
          (loop $ks
            (br_if $ksDone (i32.ge_u (local.get $k) (local.get $kEnd)))
            (local.set $p (i32.add (local.get $tbl) (i32.shl (local.get $r0) (i32.const 2))))
            (local.set $q (local.get $d))
            (block $blocksDone
              (loop $blocks
                (br_if $blocksDone (i32.ge_u (local.get $p)
                  (i32.add (local.get $tbl) (i32.shl (local.get $rEnd) (i32.const 2)))))
                (local.set $v0 (v128.load (i32.add (i32.load offset=0 (local.get $p)) (local.get $k))))
                (local.set $v1 (v128.load (i32.add (i32.load offset=4 (local.get $p)) (local.get $k))))
                (local.set $v2 (v128.load (i32.add (i32.load offset=8 (local.get $p)) (local.get $k))))
                (local.set $v3 (v128.load (i32.add (i32.load offset=12 (local.get $p)) (local.get $k))))
                ;; [a0 b0 a1 b1], [a2 b2 a3 b3], [c0 d0 c1 d1], [c2 d2 c3 d3]
                (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v0) (local.get $v1)))
                (local.set $t1 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v0) (local.get $v1)))
                (local.set $t2 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $v2) (local.get $v3)))
                (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $v2) (local.get $v3)))
                ;; [a0 b0 c0 d0], [a1 b1 c1 d1], [a2 b2 c2 d2], [a3 b3 c3 d3]
                (v128.store (local.get $q)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t2)))
                (v128.store (i32.add (local.get $q) (local.get $ds))
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t2)))
                (local.set $a (i32.add (local.get $q) (i32.shl (local.get $ds) (i32.const 1))))
                (v128.store (local.get $a)
                  (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t1) (local.get $t3)))
                (v128.store (i32.add (local.get $a) (local.get $ds))
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t1) (local.get $t3)))
                (local.set $p (i32.add (local.get $p) (i32.const 16)))
                (local.set $q (i32.add (local.get $q) (i32.const 16)))
                (br $blocks)))
            (local.set $k (i32.add (local.get $k) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.shl (local.get $ds) (i32.const 2))))
            (br $ks)))
        ;; The tile's last len mod 4 dst rows.
        (block $tailDone
          (loop $tail
            (br_if $tailDone (i32.ge_u (local.get $k) (i32.shl (local.get $len) (i32.const 2))))
            (local.set $p (i32.add (local.get $tbl) (i32.shl (local.get $r0) (i32.const 2))))
            (local.set $q (local.get $d))
            (block $colsDone
              (loop $cols
                (br_if $colsDone (i32.ge_u (local.get $p)
                  (i32.add (local.get $tbl) (i32.shl (local.get $rEnd) (i32.const 2)))))
                (f32.store (local.get $q) (f32.load (i32.add (i32.load (local.get $p)) (local.get $k))))
                (local.set $p (i32.add (local.get $p) (i32.const 4)))
                (local.set $q (i32.add (local.get $q) (i32.const 4)))
                (br $cols)))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (local.set $d (i32.add (local.get $d) (local.get $ds)))
            (br $tail)))
        (local.set $r0 (local.get $rEnd))
        (br $tile)))
    ;; The last rows mod 4 rows, each down its dst column.
    (block $rowsDone
      (loop $row
        (br_if $rowsDone (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $a (i32.load (i32.add (local.get $tbl) (i32.shl (local.get $r0) (i32.const 2)))))
        (local.set $q (i32.add (local.get $dst) (i32.shl (local.get $r0) (i32.const 2))))
        (local.set $k (i32.const 0))
        (block $elemsDone
          (loop $elems
            (br_if $elemsDone (i32.ge_u (local.get $k) (i32.shl (local.get $len) (i32.const 2))))
            (f32.store (local.get $q) (f32.load (i32.add (local.get $a) (local.get $k))))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (local.set $q (i32.add (local.get $q) (local.get $ds)))
            (br $elems)))
        (local.set $r0 (i32.add (local.get $r0) (i32.const 1)))
        (br $row))))

  ;; Pᵀ[(i, j, c), (b, oh, ow)] = x[b, oh·sh + i − top, ow·sw + j − left, c], 0 outside x; Pᵀ at $out, x an
  ;; [$b, $h, $w, $ci] array at $x. $scratch: $ci·4 bytes for a zero row, then 4 bytes per column of Pᵀ for the
  ;; table of row addresses, refilled for each tap (i, j).
  (func (export "im2col")
    (param $x i32) (param $b i32) (param $h i32) (param $w i32) (param $ci i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32) (param $top i32) (param $left i32)
    (param $oh i32) (param $ow i32) (param $out i32) (param $scratch i32)
    (local $n i32) (local $rowBytes i32) (local $tbl i32) (local $i i32) (local $j i32) (local $dst i32)
    (local $p i32) (local $bi i32) (local $oy i32) (local $ox i32) (local $r i32) (local $s i32)
    (local $line i32) (local $rowValid i32)
    (local.set $n (i32.mul (local.get $b) (i32.mul (local.get $oh) (local.get $ow))))
    (local.set $rowBytes (i32.shl (local.get $ci) (i32.const 2)))
    (local.set $tbl (i32.add (local.get $scratch) (local.get $rowBytes)))
    (memory.fill (local.get $scratch) (i32.const 0) (local.get $rowBytes))
    (local.set $dst (local.get $out))
    (local.set $i (i32.const 0))
    (loop $taps_i
      (local.set $j (i32.const 0))
      (loop $taps_j
        ;; The table: column (bi, oy, ox) reads x's channel row at (bi, oy·sh + i − top, ox·sw + j − left).
        (local.set $p (local.get $tbl))
        (local.set $bi (i32.const 0))
        (loop $batch
          (local.set $oy (i32.const 0))
          (loop $outRows
            (local.set $r (i32.sub (i32.add (i32.mul (local.get $oy) (local.get $sh)) (local.get $i))
              (local.get $top)))
            (local.set $rowValid (i32.lt_u (local.get $r) (local.get $h)))
            ;; x's row r of image bi; its pixel s is at $line + s·rowBytes.
            (local.set $line (i32.add (local.get $x)
              (i32.mul (i32.mul (i32.add (i32.mul (local.get $bi) (local.get $h)) (local.get $r)) (local.get $w))
                (local.get $rowBytes))))
            (local.set $ox (i32.const 0))
            (loop $outCols
              (local.set $s (i32.sub (i32.add (i32.mul (local.get $ox) (local.get $sw)) (local.get $j))
                (local.get $left)))
              (i32.store (local.get $p)
                (select
                  (i32.add (local.get $line) (i32.mul (local.get $s) (local.get $rowBytes)))
                  (local.get $scratch)
                  (i32.and (local.get $rowValid) (i32.lt_u (local.get $s) (local.get $w)))))
              (local.set $p (i32.add (local.get $p) (i32.const 4)))
              (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
              (br_if $outCols (i32.lt_u (local.get $ox) (local.get $ow))))
            (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
            (br_if $outRows (i32.lt_u (local.get $oy) (local.get $oh))))
          (local.set $bi (i32.add (local.get $bi) (i32.const 1)))
          (br_if $batch (i32.lt_u (local.get $bi) (local.get $b))))
        (call $gather_transpose (local.get $tbl) (local.get $n) (local.get $ci) (local.get $dst)
          (i32.shl (local.get $n) (i32.const 2)))
        (local.set $dst (i32.add (local.get $dst) (i32.mul (local.get $rowBytes) (local.get $n))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $taps_j (i32.lt_u (local.get $j) (local.get $kw))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $taps_i (i32.lt_u (local.get $i) (local.get $kh)))))

  ;; out[kh, kw, o, i] = w[KH − 1 − kh, KW − 1 − kw, i, o] for a [$kh, $kw, $ci, $co] filter at $w: per tap, its
  ;; [ci, co] matrix transposed. $tbl: 4·$ci bytes for the table of the tap's rows.
  (func (export "flip")
    (param $w i32) (param $kh i32) (param $kw i32) (param $ci i32) (param $co i32) (param $out i32) (param $tbl i32)
    (local $tapBytes i32) (local $t i32) (local $src i32) (local $dst i32) (local $end i32) (local $p i32)
    (local $a i32)
    (local.set $tapBytes (i32.shl (i32.mul (local.get $ci) (local.get $co)) (i32.const 2)))
    (local.set $t (i32.mul (local.get $kh) (local.get $kw)))
    (local.set $src (i32.add (local.get $w) (i32.mul (i32.sub (local.get $t) (i32.const 1)) (local.get $tapBytes))))
    (local.set $dst (local.get $out))
    (local.set $end (i32.add (local.get $tbl) (i32.shl (local.get $ci) (i32.const 2))))
    (block $done
      (loop $taps
        (br_if $done (i32.eqz (local.get $t)))
        (local.set $p (local.get $tbl))
        (local.set $a (local.get $src))
        (block $filled
          (loop $fill
            (br_if $filled (i32.ge_u (local.get $p) (local.get $end)))
            (i32.store (local.get $p) (local.get $a))
            (local.set $a (i32.add (local.get $a) (i32.shl (local.get $co) (i32.const 2))))
            (local.set $p (i32.add (local.get $p) (i32.const 4)))
            (br $fill)))
        (call $gather_transpose (local.get $tbl) (local.get $ci) (local.get $co) (local.get $dst)
          (i32.shl (local.get $ci) (i32.const 2)))
        (local.set $src (i32.sub (local.get $src) (local.get $tapBytes)))
        (local.set $dst (i32.add (local.get $dst) (local.get $tapBytes)))
        (local.set $t (i32.sub (local.get $t) (i32.const 1)))
        (br $taps))))
)
