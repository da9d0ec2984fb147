;; col2im for the input gradient of a stride-1 convolution (lib/simd/col2im.ts): with the product
;; C[(i, j, c), n] = Σ_co W[i, j, c, co]·dy[n, co] over the output positions n = (b, oy, ox),
;;   dx[b, y, x, c] = Σ_{i, j} C[(i·KW + j)·Ci + c, (b, y + top − i, x + left − j)]   (valid positions only),
;; summed tap by tap in the order (i, j), into a zeroed dx. C's rows run along n and dx's along c, so four
;; channels × four positions are loaded as four rows, transposed in registers and added to four pixels.
(module
  (import "env" "memory" (memory 1 65536 shared))

  (func (export "col2im")
    (param $C i32) (param $dx i32) (param $b i32) (param $h i32) (param $w i32) (param $ci i32)
    (param $oh i32) (param $ow i32) (param $kh i32) (param $kw i32) (param $top i32) (param $left i32)
    (local $n i32) (local $rowBytes i32) (local $bi i32) (local $i i32) (local $j i32) (local $oy i32)
    (local $y i32) (local $lo i32) (local $hi i32) (local $ox i32) (local $c i32) (local $src i32)
    (local $dst i32) (local $stride i32) (local $r i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $t0 v128) (local $t1 v128)
    (local $t2 v128) (local $t3 v128)
    (local.set $n (i32.mul (local.get $b) (i32.mul (local.get $oh) (local.get $ow))))
    (local.set $rowBytes (i32.shl (local.get $n) (i32.const 2)))      ;; one row of C
    (local.set $stride (i32.shl (local.get $ci) (i32.const 2)))       ;; one pixel of dx
    (loop $batch
      (local.set $i (i32.const 0))
      (loop $tapRow
        (local.set $j (i32.const 0))
        (loop $tapCol
          ;; Output columns whose target x = ox − left + j lies in [0, W).
          (local.set $lo (select (i32.sub (local.get $left) (local.get $j)) (i32.const 0)
            (i32.gt_s (i32.sub (local.get $left) (local.get $j)) (i32.const 0))))
          (local.set $hi (i32.add (i32.sub (local.get $w) (local.get $j)) (local.get $left)))
          (if (i32.gt_s (local.get $hi) (local.get $ow)) (then (local.set $hi (local.get $ow))))
          (local.set $oy (i32.const 0))
          (loop $rows
            (local.set $y (i32.add (i32.sub (local.get $oy) (local.get $top)) (local.get $i)))
            (if (i32.and (i32.ge_s (local.get $y) (i32.const 0)) (i32.lt_s (local.get $y) (local.get $h)))
              (then
                (local.set $c (i32.const 0))
                (loop $channels
                  ;; &C[(i·KW + j)·Ci + c, (bi·OH + oy)·OW] and &dx[bi, y, 0 − left + j, c]
                  (local.set $src (i32.add (local.get $C) (i32.shl (i32.add
                    (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $i) (local.get $kw)) (local.get $j))
                      (local.get $ci)) (local.get $c)) (local.get $n))
                    (i32.mul (i32.add (i32.mul (local.get $bi) (local.get $oh)) (local.get $oy)) (local.get $ow)))
                    (i32.const 2))))
                  (local.set $dst (i32.add (local.get $dx) (i32.shl (i32.add
                    (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $bi) (local.get $h)) (local.get $y))
                      (local.get $w)) (i32.sub (local.get $j) (local.get $left))) (local.get $ci))
                    (local.get $c)) (i32.const 2))))
                  (local.set $ox (local.get $lo))
                  ;; Four positions at a time: rows c … c+3 of C at ox … ox+3, transposed.
                  (block $quadsDone
                    (loop $quads
                      (br_if $quadsDone (i32.gt_s (i32.add (local.get $ox) (i32.const 4)) (local.get $hi)))
                      (local.set $r (i32.add (local.get $src) (i32.shl (local.get $ox) (i32.const 2))))
                      (local.set $a0 (v128.load (local.get $r)))
                      (local.set $a1 (v128.load (i32.add (local.get $r) (local.get $rowBytes))))
                      (local.set $a2 (v128.load (i32.add (local.get $r) (i32.shl (local.get $rowBytes) (i32.const 1)))))
                      (local.set $a3 (v128.load (i32.add (local.get $r) (i32.mul (local.get $rowBytes) (i32.const 3)))))
                      ;; [a0.0 a1.0 a0.1 a1.1], [a2.0 a3.0 a2.1 a3.1], [a0.2 a1.2 a0.3 a1.3], [a2.2 a3.2 a2.3 a3.3]
                      (local.set $t0 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a0) (local.get $a1)))
                      (local.set $t1 (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $a2) (local.get $a3)))
                      (local.set $t2 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a0) (local.get $a1)))
                      (local.set $t3 (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $a2) (local.get $a3)))
                      (local.set $r (i32.add (local.get $dst) (i32.mul (local.get $ox) (local.get $stride))))
                      (v128.store (local.get $r) (f32x4.add (v128.load (local.get $r))
                        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t0) (local.get $t1))))
                      (local.set $r (i32.add (local.get $r) (local.get $stride)))
                      (v128.store (local.get $r) (f32x4.add (v128.load (local.get $r))
                        (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t0) (local.get $t1))))
                      (local.set $r (i32.add (local.get $r) (local.get $stride)))
                      (v128.store (local.get $r) (f32x4.add (v128.load (local.get $r))
                        (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $t2) (local.get $t3))))
                      (local.set $r (i32.add (local.get $r) (local.get $stride)))
                      (v128.store (local.get $r) (f32x4.add (v128.load (local.get $r))
                        (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $t2) (local.get $t3))))
                      (local.set $ox (i32.add (local.get $ox) (i32.const 4)))
                      (br $quads)))
                  ;; The last positions one at a time, four channels each.
                  (block $restDone
                    (loop $rest
                      (br_if $restDone (i32.ge_s (local.get $ox) (local.get $hi)))
                      (local.set $r (i32.add (local.get $src) (i32.shl (local.get $ox) (i32.const 2))))
                      (local.set $a0 (f32x4.replace_lane 3 (f32x4.replace_lane 2 (f32x4.replace_lane 1
                        (f32x4.splat (f32.load (local.get $r)))
                        (f32.load (i32.add (local.get $r) (local.get $rowBytes))))
                        (f32.load (i32.add (local.get $r) (i32.shl (local.get $rowBytes) (i32.const 1)))))
                        (f32.load (i32.add (local.get $r) (i32.mul (local.get $rowBytes) (i32.const 3))))))
                      (local.set $r (i32.add (local.get $dst) (i32.mul (local.get $ox) (local.get $stride))))
                      (v128.store (local.get $r) (f32x4.add (v128.load (local.get $r)) (local.get $a0)))
                      (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
                      (br $rest)))
                  (local.set $c (i32.add (local.get $c) (i32.const 4)))
                  (br_if $channels (i32.lt_s (local.get $c) (local.get $ci))))))
            (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
            (br_if $rows (i32.lt_s (local.get $oy) (local.get $oh))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $tapCol (i32.lt_s (local.get $j) (local.get $kw))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $tapRow (i32.lt_s (local.get $i) (local.get $kh))))
      (local.set $bi (i32.add (local.get $bi) (i32.const 1)))
      (br_if $batch (i32.lt_s (local.get $bi) (local.get $b)))))
)
