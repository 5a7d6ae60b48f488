/** Exit codes: the facts every command and the help text share (kept apart from main.ts, which imports every command). */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  partial: 3,
  tripwire: 4,
  interrupted: 130,
  terminated: 143,
} as const;

export const EXIT_HELP = `
Exit codes:
  0  done
  1  failed (nothing usable was produced; the message says why)
  2  usage or config error (nothing was written)
  3  done, but some files could not be read (listed in the snapshot and in the output)
  4  done, and the ransomware tripwire fired (the snapshot is kept and marked)
  130  stopped by Ctrl-C (SIGINT); 143  stopped by SIGTERM (the daemon then exits 0)

Config: --config <file>, else $SYNCGUARD_CONFIG, else ./syncguard.yaml.
`;
