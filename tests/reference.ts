// The independently computed reference numbers (tests/reference/math_reference.py → fixtures/).
export const REF = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/math_reference.json", import.meta.url)),
) as Record<string, any>;
