/**
 * Every error that leaves a module is a SyncguardError with a code. SDK errors are translated once,
 * at the edge (providers/<x>/, store/s3.ts), and never travel further.
 */
export type ErrorCode =
  | 'CONFIG' // the config file is wrong: message names file, line, key
  | 'USAGE' // the command line is wrong
  | 'NOT_FOUND' // an object, snapshot, account or remote file does not exist
  | 'EXISTS' // a restore target or upload destination already exists
  | 'UNSAFE_PATH' // a path from a provider or a manifest is empty, absolute, has . / .. or NUL
  | 'INTEGRITY' // content does not match its hash, or a manifest is malformed
  | 'PROVIDER_AUTH' // token expired beyond refresh or revoked: run `syncguard auth` again
  | 'PROVIDER_RATE_LIMITED' // 429 / 503 / too_many_requests; retryAfterMs says how long
  | 'PROVIDER_UNAVAILABLE' // 5xx, dropped connection: retryable
  | 'PROVIDER_ERROR' // any other provider refusal
  | 'SKIPPED' // the provider will not serve this file (restricted, flagged): recorded as skipped, with the reason
  | 'CURSOR_RESET' // the provider forgot our cursor: a full listing follows
  | 'STORE_AUTH' // the store refused our credentials
  | 'STORE_CONFLICT' // a write-once key exists already
  | 'STORE_LOCKED' // Object Lock refused a delete or an overwrite
  | 'STORE_NO_LOCK' // the bucket has no Object Lock and the config did not say `objectLock: off`
  | 'STORE_UNAVAILABLE' // network or 5xx from the store: retryable
  | 'STORE_ERROR' // any other store failure
  | 'BUSY' // another run of the same account holds the lock
  | 'ABORTED' // the caller's AbortSignal fired
  | 'INTERNAL';

export interface ErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  retryAfterMs?: number;
}

export class SyncguardError extends Error {
  override readonly name = 'SyncguardError';
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    opts: ErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.retryable =
      opts.retryable ??
      (code === 'PROVIDER_RATE_LIMITED' || code === 'PROVIDER_UNAVAILABLE' || code === 'STORE_UNAVAILABLE');
    this.retryAfterMs = opts.retryAfterMs;
  }
}

export function isSyncguardError(err: unknown, code?: ErrorCode): err is SyncguardError {
  return err instanceof SyncguardError && (code === undefined || err.code === code);
}

/** The error an aborted operation rejects with. */
export function abortError(signal?: AbortSignal): SyncguardError {
  const reason: unknown = signal?.reason;
  return new SyncguardError(
    'ABORTED',
    reason instanceof Error ? reason.message : 'the operation was aborted',
    { cause: reason },
  );
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

/** A short description of any thrown value, for logs and failure records. Never includes headers or bodies. */
export function describeError(err: unknown): string {
  if (err instanceof SyncguardError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
