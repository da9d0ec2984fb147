;; Sums over the leading axes of a row-major float32 [R, C] array (a conv's bias gradient: dy summed over batch,
;; height and width): out[c] = Σ_r x[r, c], each channel summed in row order in float32, four channels at a
;; time (the rest one at a time). x streams once, front to back; out (C floats) stays in cache.
(module
  (import "env" "memory" (memory 1 65536 shared))

  (func (export "colsum") (param $x i32) (param $rows i32) (param $c i32) (param $out i32)
    (local $r i32) (local $ch i32) (local $vec i32) (local $p i32) (local $q i32)
    (local.set $vec (i32.shl (i32.and (local.get $c) (i32.const -4)) (i32.const 2))) ;; bytes of the 4-wide part
    ;; The first row, copied: out = x[0, :].
    (memory.copy (local.get $out) (local.get $x) (i32.shl (local.get $c) (i32.const 2)))
    (local.set $r (i32.const 1))
    (local.set $x (i32.add (local.get $x) (i32.shl (local.get $c) (i32.const 2))))
    (block $done
      (loop $rows
        (br_if $done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $ch (i32.const 0))
        (block $vecDone
          (loop $vecs
            (br_if $vecDone (i32.ge_u (local.get $ch) (local.get $vec)))
            (local.set $q (i32.add (local.get $out) (local.get $ch)))
            (v128.store (local.get $q)
              (f32x4.add (v128.load (local.get $q)) (v128.load (i32.add (local.get $x) (local.get $ch)))))
            (local.set $ch (i32.add (local.get $ch) (i32.const 16)))
            (br $vecs)))
        (local.set $p (i32.shl (local.get $c) (i32.const 2)))
        (block $restDone
          (loop $rest
            (br_if $restDone (i32.ge_u (local.get $ch) (local.get $p)))
            (local.set $q (i32.add (local.get $out) (local.get $ch)))
            (f32.store (local.get $q)
              (f32.add (f32.load (local.get $q)) (f32.load (i32.add (local.get $x) (local.get $ch)))))
            (local.set $ch (i32.add (local.get $ch) (i32.const 4)))
            (br $rest)))
        (local.set $x (i32.add (local.get $x) (local.get $p)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rows))))
)
