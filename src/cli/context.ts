import type { Context } from '../api.js';
import type { Log } from '../log.js';
import { Output, type Io } from './output.js';

/** What every command gets: the parsed global options, the output, and a lazily loaded config. */
export class Cli {
  out: Output;
  exitCode = 0;
  private ctx?: Context;
  readonly abort = new AbortController();
  /** What a Ctrl-C or SIGTERM prints before the command stops: each command says what stopping means
   *  ('': the command writes it itself, as the daemon does in its log format). */
  stopNote = 'stopping; press Ctrl-C again to quit at once';
  /** The daemon's normal end is SIGTERM (systemd stops it so): it then exits with its own code. */
  sigtermIsNormal = false;

  constructor(
    readonly io: Io,
    readonly env: NodeJS.ProcessEnv,
    readonly globals: { config?: string; json?: boolean; quiet?: boolean; verbose?: boolean },
  ) {
    this.out = new Output(io, !!globals.json, !!globals.quiet);
  }

  setJson(json: boolean | undefined): void {
    if (json && !this.out.json) this.out = new Output(this.io, true, this.out.quiet);
  }

  /** The config, loaded (with its schema and YAML parser) on the first call: `--help` needs neither. */
  async context(): Promise<Context> {
    if (!this.ctx) {
      const { configPath, loadConfig } = await import('../config/load.js');
      const loaded = loadConfig(configPath(this.globals.config, this.env), this.env);
      // Dates given on the command line ("--at 2026-11-20") mean days in the configured timezone.
      if (loaded.config.schedule.timezone) process.env.TZ = loaded.config.schedule.timezone;
      this.ctx = { ...loaded, log: this.log };
    }
    return this.ctx;
  }

  readonly log: Log = (level, message) => {
    if (level === 'debug' && !this.globals.verbose) return;
    if (level === 'info' && this.globals.quiet) return;
    this.out.note(`${level === 'info' || level === 'debug' ? '' : level + ': '}${message}`);
  };
}
