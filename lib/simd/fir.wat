;; FIR resampling by 2 (lib/wasm_kernels.ts firResample) over NHWC float32 with the channels four at a time:
;;   down:    lo[b, i, j, c] += k[u, v]·hi[b, 2i + u − pad, 2j + v − pad, c]
;;   adjoint: hi[b, 2i + u − pad, 2j + v − pad, c] += k[u, v]·lo[b, i, j, c]
;; over the taps (u, v) in order, positions outside hi skipped, into a zeroed output. k = f⊗f is a T×T float32
;; table at $k. Needs C a multiple of 4.
(module
  (import "env" "memory" (memory 1 65536 shared))

  (func (export "fir")
    (param $hi i32) (param $lo i32) (param $b i32) (param $h i32) (param $w i32) (param $c i32)
    (param $oh i32) (param $ow i32) (param $k i32) (param $t i32) (param $pad i32) (param $adjoint i32)
    (local $bi i32) (local $i i32) (local $j i32) (local $u i32) (local $v i32) (local $r i32) (local $s i32)
    (local $lo0 i32) (local $hi0 i32) (local $ch i32) (local $bytes i32) (local $kk v128) (local $p i32)
    (local $q i32)
    (local.set $bytes (i32.shl (local.get $c) (i32.const 2)))
    (loop $batch
      (local.set $i (i32.const 0))
      (loop $rows
        (local.set $j (i32.const 0))
        (loop $cols
          ;; &lo[bi, i, j, 0]
          (local.set $lo0 (i32.add (local.get $lo) (i32.mul (local.get $bytes)
            (i32.add (i32.mul (i32.add (i32.mul (local.get $bi) (local.get $oh)) (local.get $i)) (local.get $ow))
              (local.get $j)))))
          (local.set $u (i32.const 0))
          (loop $tapRows
            (local.set $r (i32.sub (i32.add (i32.shl (local.get $i) (i32.const 1)) (local.get $u)) (local.get $pad)))
            (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.lt_s (local.get $r) (local.get $h)))
              (then
                (local.set $v (i32.const 0))
                (loop $tapCols
                  (local.set $s (i32.sub (i32.add (i32.shl (local.get $j) (i32.const 1)) (local.get $v))
                    (local.get $pad)))
                  (if (i32.and (i32.ge_s (local.get $s) (i32.const 0)) (i32.lt_s (local.get $s) (local.get $w)))
                    (then
                      (local.set $kk (v128.load32_splat (i32.add (local.get $k)
                        (i32.shl (i32.add (i32.mul (local.get $u) (local.get $t)) (local.get $v)) (i32.const 2)))))
                      ;; &hi[bi, r, s, 0]
                      (local.set $hi0 (i32.add (local.get $hi) (i32.mul (local.get $bytes)
                        (i32.add (i32.mul (i32.add (i32.mul (local.get $bi) (local.get $h)) (local.get $r))
                          (local.get $w)) (local.get $s)))))
                      (local.set $ch (i32.const 0))
                      (if (local.get $adjoint)
                        (then
                          (loop $adj
                            (local.set $p (i32.add (local.get $hi0) (local.get $ch)))
                            (v128.store (local.get $p) (f32x4.add (v128.load (local.get $p))
                              (f32x4.mul (local.get $kk) (v128.load (i32.add (local.get $lo0) (local.get $ch))))))
                            (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
                            (br_if $adj (i32.lt_u (local.get $ch) (local.get $bytes)))))
                        (else
                          (loop $down
                            (local.set $q (i32.add (local.get $lo0) (local.get $ch)))
                            (v128.store (local.get $q) (f32x4.add (v128.load (local.get $q))
                              (f32x4.mul (local.get $kk) (v128.load (i32.add (local.get $hi0) (local.get $ch))))))
                            (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
                            (br_if $down (i32.lt_u (local.get $ch) (local.get $bytes))))))))
                  (local.set $v (i32.add (local.get $v) (i32.const 1)))
                  (br_if $tapCols (i32.lt_s (local.get $v) (local.get $t))))))
            (local.set $u (i32.add (local.get $u) (i32.const 1)))
            (br_if $tapRows (i32.lt_s (local.get $u) (local.get $t))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $cols (i32.lt_s (local.get $j) (local.get $ow))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $rows (i32.lt_s (local.get $i) (local.get $oh))))
      (local.set $bi (i32.add (local.get $bi) (i32.const 1)))
      (br_if $batch (i32.lt_s (local.get $bi) (local.get $b)))))
)
