// What every task does with an error: print its message (not a stack trace: the messages say what to do) and
// exit with status 1. Set ICT_DEBUG=1 to see the stack.

/** Run a task's main function; errors become one "error: …" line and exit status 1. */
export async function runTask(main: () => Promise<void>): Promise<never> {
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    const err = e as Error;
    console.error(Deno.env.get("ICT_DEBUG") ? err.stack : `error: ${err.message ?? err}`);
    Deno.exit(1);
  }
}
