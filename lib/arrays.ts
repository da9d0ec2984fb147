// Typed-array helpers shared by the data readers, downloads and samplers.

/** One typed array holding `parts` end to end, of the type `Type` (also for an empty list). */
export function concat<T extends Uint8Array | Float32Array>(
  parts: readonly T[],
  Type: { new (length: number): T },
): T {
  const out = new Type(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
