// The kit's one logger: lines to stderr (and to a log file when given), and a progress bar with an ETA that
// redraws in place on a terminal and prints plain lines otherwise (CI logs, redirected output).

export interface LoggerOptions {
  /** Also append every line here. */
  file?: string;
  /** Nothing on stderr (tests); the log file is still written. */
  quiet?: boolean;
}

const encoder = new TextEncoder();

export class Logger {
  private barShown = false;
  private readonly tty: boolean;

  constructor(private readonly opts: LoggerOptions = {}) {
    this.tty = !opts.quiet && Deno.stderr.isTerminal();
  }

  /** One line: to stderr and the log file. */
  info(message: string): void {
    if (!this.opts.quiet) {
      this.clearBar();
      Deno.stderr.writeSync(encoder.encode(message + "\n"));
    }
    if (this.opts.file) {
      Deno.writeTextFileSync(this.opts.file, `${new Date().toISOString()} ${message}\n`, { append: true });
    }
  }

  warn(message: string): void {
    this.info(`warning: ${message}`);
  }

  /**
   * Progress of `done` out of `total` at `rate` units per second, with extra text (loss, N(k) …). On a
   * terminal the bar redraws in place; elsewhere call it only as often as a line should be printed.
   */
  progress(done: number, total: number, rate: number, extra = ""): void {
    if (this.opts.quiet) return;
    const line = progressLine(done, total, rate, extra);
    if (this.tty) {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}`));
      this.barShown = true;
    } else this.info(line);
  }

  /** End the bar's line (before other output or at exit). */
  clearBar(): void {
    if (this.barShown) Deno.stderr.writeSync(encoder.encode("\n"));
    this.barShown = false;
  }
}

/** `[#####.....] 50/100  50%  12.3/s  ETA 4m05s  extra`, 28 columns of bar. */
export function progressLine(done: number, total: number, rate: number, extra = ""): string {
  const width = 28;
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(frac * width);
  const eta = rate > 0 ? formatDuration((total - done) / rate) : "?";
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  return `[${bar}] ${done}/${total} ${(frac * 100).toFixed(0).padStart(3)}%  ETA ${eta}${
    extra ? "  " + extra : ""
  }`;
}

/** 3725 s → "1h02m05s"; 65 → "1m05s"; 4.2 → "4s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (v: number) => String(v).padStart(2, "0");
  if (h > 0) return `${h}h${two(m)}m${two(sec)}s`;
  if (m > 0) return `${m}m${two(sec)}s`;
  return `${sec}s`;
}

/**
 * The progress callback of a download (bytes received, of total when known): one updating line on a terminal,
 * a line per tenth otherwise. `end()` closes the terminal line if anything was printed.
 */
export function downloadProgress(): {
  onProgress: (received: number, total: number | undefined) => void;
  end: () => void;
} {
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const tty = Deno.stdout.isTerminal();
  let lastTenth = -1;
  let printed = false;
  return {
    onProgress(received, total) {
      const text = total ? `${mb(received)} / ${mb(total)} MB` : `${mb(received)} MB`;
      if (tty) {
        printed = true;
        Deno.stdout.writeSync(new TextEncoder().encode(`\rdownloading: ${text}   `));
      } else if (total && Math.floor((10 * received) / total) > lastTenth) {
        lastTenth = Math.floor((10 * received) / total);
        console.log(`downloading: ${text}`);
      }
    },
    end() {
      if (printed) console.log();
      printed = false;
    },
  };
}
