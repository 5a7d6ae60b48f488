/**
 * The daemon's log: pino, one line per message with its time and level, for people (`--log-format
 * human`, the default) or for a log collector (`--log-format json`). Library messages hold no secret by
 * contract; this is the second guard: every value the config holds as a secret, and anything shaped like
 * a token (a Bearer header, a refresh_token field), is replaced by [redacted] before a line is written.
 */
import { pino, stdTimeFunctions } from 'pino';
import type { Log } from '../log.js';
import { redact } from '../secrets.js';

export type LogFormat = 'human' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['human', 'json'];

export interface LoggerOptions {
  format: LogFormat;
  /** Where the lines go (stderr). */
  stream: { write(s: string): unknown };
  verbose?: boolean;
  quiet?: boolean;
  /** Values never to be written (secretsOf(config, dir)); more may be added later with addSecrets. */
  secrets?: string[];
}

export interface Logger {
  log: Log;
  addSecrets(values: string[]): void;
}

/** Values shorter than this are not treated as secrets (they would blank out ordinary words). */
const MIN_SECRET = 8;

/** A Log that writes through pino: ISO time, level, message; `human` turns pino's JSON into a line. */
export function createLogger(opts: LoggerOptions): Logger {
  const secrets = new Set(opts.secrets ?? []);
  let sorted = [...secrets];
  const destination =
    opts.format === 'json'
      ? opts.stream
      : {
          write(line: string) {
            const o = JSON.parse(line) as { time: string; level: string; msg: string };
            opts.stream.write(`${o.time} ${o.level.toUpperCase().padEnd(5)} ${o.msg}\n`);
          },
        };
  const logger = pino(
    {
      level: opts.verbose ? 'debug' : opts.quiet ? 'warn' : 'info',
      base: opts.format === 'json' ? { pid: process.pid } : undefined,
      timestamp: stdTimeFunctions.isoTime,
      messageKey: 'msg',
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? redact(a, sorted) : a)) as typeof args);
        },
      },
    },
    destination,
  );
  return {
    log: (level, message) => logger[level](message),
    addSecrets(values) {
      for (const v of values) if (v.length >= MIN_SECRET) secrets.add(v);
      sorted = [...secrets].sort((a, b) => b.length - a.length);
    },
  };
}
