import { SyncguardError, abortError, isSyncguardError } from '../errors.js';

export interface PacerOptions {
  /** Calls allowed at once at the start; halves on throttling, grows back by one after a run of successes. */
  concurrency?: number;
  /** Give up after this many attempts of one call (default 8). */
  maxAttempts?: number;
  /** Give up when one call has been retried for this long (default 15 minutes). */
  maxElapsedMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Told of every wait, for progress and metrics. */
  onWait?: (ms: number, err: SyncguardError) => void;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The one place that retries (after rclone's pacer): every provider call goes through call().
 * Retries only SyncguardErrors marked retryable, with exponential backoff and full jitter, honouring
 * retryAfterMs; adapts how many calls run at once (AIMD) so a throttled account slows down instead of
 * failing. Gives up after maxAttempts or maxElapsedMs with the last error.
 */
export class Pacer {
  private limit: number;
  private readonly max: number;
  private running = 0;
  private successes = 0;
  private readonly waiting: Array<() => void> = [];
  private pausedUntil = 0;
  /** Total time spent waiting for throttling, in ms. */
  throttledMs = 0;
  retries = 0;

  constructor(private readonly opts: PacerOptions = {}) {
    this.max = Math.max(1, opts.concurrency ?? 4);
    this.limit = this.max;
  }

  get concurrency(): number {
    return this.limit;
  }

  async call<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const started = Date.now();
    const maxAttempts = this.opts.maxAttempts ?? 8;
    const maxElapsed = this.opts.maxElapsedMs ?? 15 * 60_000;
    const doSleep = this.opts.sleep ?? sleep;
    for (let attempt = 1; ; attempt++) {
      await this.acquire(signal);
      let err: unknown;
      try {
        const v = await fn();
        this.release(true);
        return v;
      } catch (e) {
        this.release(false);
        err = e;
      }
      if (signal?.aborted) throw abortError(signal);
      if (!isSyncguardError(err) || !err.retryable) throw err;
      if (attempt >= maxAttempts || Date.now() - started >= maxElapsed) throw err;
      const backoff = Math.min(
        this.opts.maxDelayMs ?? 60_000,
        (this.opts.baseDelayMs ?? 500) * 2 ** (attempt - 1),
      );
      const wait = Math.max(err.retryAfterMs ?? 0, Math.random() * backoff);
      if (err.code === 'PROVIDER_RATE_LIMITED') {
        // Throttling concerns the whole account: slow every caller down, not just this one.
        this.limit = Math.max(1, Math.floor(this.limit / 2));
        this.successes = 0;
        this.pausedUntil = Math.max(this.pausedUntil, Date.now() + wait);
        this.throttledMs += wait;
      }
      this.retries++;
      this.opts.onWait?.(wait, err);
      await doSleep(wait, signal);
    }
  }

  private async acquire(signal?: AbortSignal): Promise<void> {
    // Wait out a throttling pause once (not in a loop on the clock, so an injected sleep that does not
    // really wait does not spin), then for a free slot.
    const pause = this.pausedUntil - Date.now();
    if (pause > 0) await (this.opts.sleep ?? sleep)(pause, signal);
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      if (this.running < this.limit) {
        this.running++;
        return;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private release(ok: boolean): void {
    this.running--;
    if (ok && this.limit < this.max && ++this.successes >= 10 * this.limit) {
      this.limit++;
      this.successes = 0;
    }
    // Wake one waiter; it checks the limit again, and waits again if the limit has dropped.
    this.waiting.shift()?.();
  }
}

export function isRetryable(err: unknown): boolean {
  return isSyncguardError(err) && err.retryable;
}
