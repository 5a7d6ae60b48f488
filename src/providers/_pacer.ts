import { SyncguardError, abortError, isSyncguardError } from '../errors.js';

export interface PacerOptions {
  /** Calls allowed at once at the start; halves on throttling, grows back by one after a run of successes. */
  concurrency?: number;
  /** Give up on one call after this many attempts that failed for another reason than throttling (default 8). */
  maxAttempts?: number;
  /** Give up on one call retried this long for another reason than throttling (default 15 minutes). */
  maxElapsedMs?: number;
  /**
   * How long the pacer may keep the account paused for throttling, in all, over its life (one run):
   * default 6 hours. Every Retry-After is honoured until then, however long and however many: Dropbox
   * often asks for 300 s, Graph has asked for 315 s, and a night is long.
   */
  throttleBudgetMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Told of every wait, for progress and metrics. */
  onWait?: (ms: number, err: SyncguardError) => void;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** The clock, in ms since the epoch (tests pass one that moves only when the pacer sleeps). */
  now?: () => number;
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
 * failing. Throttling pauses every call and is bounded by time per run (throttleBudgetMs), not by
 * attempts; other failures give up after maxAttempts or maxElapsedMs with the last error.
 */
export class Pacer {
  private limit: number;
  private readonly max: number;
  private running = 0;
  private successes = 0;
  private readonly waiting: Array<() => void> = [];
  private pausedUntil = 0;
  private lastThrottle = '';
  /** Time the account spent paused for throttling, in ms (a pause that several calls wait out counts once). */
  throttledMs = 0;
  retries = 0;

  constructor(private readonly opts: PacerOptions = {}) {
    this.max = Math.max(1, opts.concurrency ?? 4);
    this.limit = this.max;
  }

  get concurrency(): number {
    return this.limit;
  }

  /** When the current throttling pause ends (ms since the epoch); undefined when there is none. */
  get throttledUntil(): number | undefined {
    return this.pausedUntil > this.now() ? this.pausedUntil : undefined;
  }

  /** What the service said when it last throttled us. */
  get throttledBecause(): string {
    return this.lastThrottle;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  async call<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const started = this.now();
    const maxAttempts = this.opts.maxAttempts ?? 8;
    const maxElapsed = this.opts.maxElapsedMs ?? 15 * 60_000;
    const budget = this.opts.throttleBudgetMs ?? 6 * 3_600_000;
    const doSleep = this.opts.sleep ?? sleep;
    let failures = 0;
    let paused = 0;
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
      const throttled = err.code === 'PROVIDER_RATE_LIMITED';
      if (!throttled) {
        failures++;
        if (failures >= maxAttempts || this.now() - started - paused >= maxElapsed) throw err;
      }
      const backoff = Math.min(
        this.opts.maxDelayMs ?? 60_000,
        (this.opts.baseDelayMs ?? 500) * 2 ** (Math.min(attempt, 30) - 1),
      );
      const wait = Math.max(err.retryAfterMs ?? 0, Math.random() * backoff);
      if (throttled) {
        // Throttling concerns the whole account: slow every caller down, not just this one.
        const now = this.now();
        const added = Math.max(0, now + wait - Math.max(now, this.pausedUntil));
        if (this.throttledMs + added > budget) {
          throw new SyncguardError(
            'PROVIDER_RATE_LIMITED',
            `${err.message}; gave up: this run has waited ${showDuration(this.throttledMs)} for the service already (the limit is ${showDuration(budget)})`,
            { retryable: false },
          );
        }
        this.limit = Math.max(1, Math.floor(this.limit / 2));
        this.successes = 0;
        this.pausedUntil = Math.max(this.pausedUntil, now + wait);
        this.throttledMs += added;
        this.lastThrottle = err.message;
        paused += wait;
      }
      this.retries++;
      this.opts.onWait?.(wait, err);
      await doSleep(wait, signal);
    }
  }

  /**
   * The service says its quota is nearly spent before it throttles (SharePoint's RateLimit-Remaining
   * and RateLimit-Reset): every call waits `ms` from now, as for a Retry-After, though nothing failed.
   * Counts as time throttled. Idempotent for an equal or shorter pause.
   */
  ease(ms: number, why: string): void {
    const now = this.now();
    const until = now + Math.max(0, ms);
    if (until <= this.pausedUntil) return;
    this.throttledMs += until - Math.max(now, this.pausedUntil);
    this.pausedUntil = until;
    this.lastThrottle = why;
  }

  private async acquire(signal?: AbortSignal): Promise<void> {
    // Wait out a throttling pause once (not in a loop on the clock, so an injected sleep that does not
    // really wait does not spin), then for a free slot.
    const pause = this.pausedUntil - this.now();
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

/** "6 h", "1 h 30 min", "5 min", "45 s". */
export function showDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

export function isRetryable(err: unknown): boolean {
  return isSyncguardError(err) && err.retryable;
}
