/** How the CLI prints: tables and summaries for people on stdout, one JSON document with --json,
 *  progress and logs on stderr (a live line on a terminal, nothing in between otherwise). */
import { showPath } from '../paths.js';

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

export class Output {
  private live = false;
  constructor(
    readonly io: Io,
    readonly json: boolean,
    readonly quiet = false,
  ) {}

  /** A line for people (suppressed with --json: stdout then holds only the JSON document). */
  line(text = ''): void {
    if (this.json) return;
    this.clearLive();
    this.io.stdout.write(text + '\n');
  }

  /** The one JSON document of a --json run. */
  document(value: unknown): void {
    this.io.stdout.write(JSON.stringify(value, null, 2) + '\n');
  }

  /** A message on stderr (warnings, logs). */
  note(text: string): void {
    this.clearLive();
    this.io.stderr.write(text + '\n');
  }

  /** A progress line, redrawn in place on a terminal; nothing when stderr is not a terminal. */
  progress(text: string): void {
    if (this.quiet || !this.io.stderr.isTTY) return;
    const width = Math.max(20, (this.io.stderr.columns ?? 100) - 1);
    this.io.stderr.write('\r\x1b[K' + (text.length > width ? text.slice(0, width - 1) + '…' : text));
    this.live = true;
  }

  clearLive(): void {
    if (this.live) {
      this.io.stderr.write('\r\x1b[K');
      this.live = false;
    }
  }

  table(rows: string[][], align: Array<'l' | 'r'> = []): void {
    if (this.json || rows.length === 0) return;
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
    for (const r of rows) {
      this.line(
        r
          .map((c, i) => {
            const pad = ' '.repeat(widths[i] - [...c].length);
            return align[i] === 'r' ? pad + c : i === r.length - 1 ? c : c + pad;
          })
          .join('  ')
          .trimEnd(),
      );
    }
  }
}

/** A text progress bar: [#######.............]  35% */
export function bar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return m < 60 ? `${m} min ${Math.round((ms % 60_000) / 1000)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function day(iso: string | undefined): string {
  return iso ? iso.slice(0, 10) : '-';
}

export { showPath };
