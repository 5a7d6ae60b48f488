import { describe, expect, it } from 'vitest';
import { SyncguardError, isSyncguardError } from '../../src/errors.js';
import { Pacer } from '../../src/providers/_pacer.js';

const throttled = (ms: number) =>
  new SyncguardError('PROVIDER_RATE_LIMITED', 'slow down', { retryAfterMs: ms });

describe('pacer', () => {
  it('retries throttling, waiting at least what Retry-After asked, then succeeds', async () => {
    const waits: number[] = [];
    const pacer = new Pacer({
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    let calls = 0;
    const v = await pacer.call(async () => {
      if (++calls < 3) throw throttled(1500);
      return 'done';
    });
    expect(v).toBe('done');
    expect(calls).toBe(3);
    expect(waits.filter((w) => w >= 1500).length).toBeGreaterThanOrEqual(2);
    expect(pacer.retries).toBe(2);
    // The clock does not move here, so both pauses end at the same moment: paused time counts once.
    expect(pacer.throttledMs).toBeGreaterThanOrEqual(1500);
  });

  it('does not retry an error that is not retryable', async () => {
    const pacer = new Pacer({ sleep: async () => {} });
    let calls = 0;
    const err = await pacer
      .call(async () => {
        calls++;
        throw new SyncguardError('NOT_FOUND', 'gone');
      })
      .catch((e) => e);
    expect(isSyncguardError(err, 'NOT_FOUND')).toBe(true);
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts with the last error', async () => {
    const pacer = new Pacer({ maxAttempts: 4, sleep: async () => {} });
    let calls = 0;
    const err = await pacer
      .call(async () => {
        calls++;
        throw new SyncguardError('PROVIDER_UNAVAILABLE', `attempt ${calls}`);
      })
      .catch((e) => e);
    expect(calls).toBe(4);
    expect(err.message).toBe('attempt 4');
  });

  it('halves how many calls run at once when throttled', async () => {
    const pacer = new Pacer({ concurrency: 8, sleep: async () => {} });
    expect(pacer.concurrency).toBe(8);
    let first = true;
    await pacer.call(async () => {
      if (first) {
        first = false;
        throw throttled(10);
      }
    });
    expect(pacer.concurrency).toBe(4);
  });

  it('never runs more calls at once than its limit', async () => {
    const pacer = new Pacer({ concurrency: 3 });
    let running = 0,
      peak = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        pacer.call(async () => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((r) => setTimeout(r, 2));
          running--;
        }),
      ),
    );
    expect(peak).toBe(3);
  });

  it('stops waiting when aborted', async () => {
    const pacer = new Pacer();
    const ac = new AbortController();
    const p = pacer.call(async () => {
      throw throttled(60_000);
    }, ac.signal);
    setTimeout(() => ac.abort(), 10);
    const err = await p.catch((e) => e);
    expect(isSyncguardError(err, 'ABORTED')).toBe(true);
  });

  /** A clock that only moves when the pacer sleeps: 300 s waits cost no real time. */
  function fakeTime() {
    let t = Date.parse('2026-11-20T02:00:00Z');
    const waits: number[] = [];
    return {
      waits,
      now: () => t,
      // A sleep ends `ms` after it began; sleeps begun together end together.
      sleep: async (ms: number) => {
        const end = t + ms;
        waits.push(ms);
        await new Promise((r) => setImmediate(r));
        t = Math.max(t, end);
      },
    };
  }

  it('honours every Retry-After of 300 s through a long night: throttling is budgeted by time per run, not by attempts (issue 9 point 8)', async () => {
    const time = fakeTime();
    const pacer = new Pacer({ now: time.now, sleep: time.sleep });
    let calls = 0;
    // Twelve 300 s answers in a row (an hour): before, the 8-attempt / 15-minute bound ended the run.
    const v = await pacer.call(async () => {
      if (++calls <= 12) throw throttled(300_000);
      return 'listed';
    });
    expect(v).toBe('listed');
    expect(time.waits.filter((w) => w >= 300_000)).toHaveLength(12);
    expect(pacer.throttledMs).toBe(12 * 300_000);
  });

  it('counts a pause once however many calls wait it out, and gives up when the run has waited its budget', async () => {
    const time = fakeTime();
    const pacer = new Pacer({ now: time.now, sleep: time.sleep, throttleBudgetMs: 3_600_000 });
    // Four calls throttled at the same moment wait one pause, not four.
    let n = 0;
    await Promise.all(
      [1, 2, 3, 4].map(() =>
        pacer.call(async () => {
          if (n++ < 4) throw throttled(300_000);
        }),
      ),
    );
    expect(pacer.throttledMs).toBeLessThan(2 * 300_000);
    // Then the service never lets up: the run ends once it has waited an hour in all.
    const err = await pacer
      .call(async () => {
        throw throttled(300_000);
      })
      .catch((e: unknown) => e as SyncguardError);
    expect(isSyncguardError(err, 'PROVIDER_RATE_LIMITED'), String(err)).toBe(true);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/waited 1 h/);
    expect(pacer.throttledMs).toBeLessThanOrEqual(3_600_000);
    expect(pacer.throttledUntil).toBeUndefined();
  });

  it('says until when the account is paused, for the progress line', async () => {
    const time = fakeTime();
    let seen: { until?: number; reason?: string } = {};
    const pacer = new Pacer({
      now: time.now,
      sleep: async (ms) => {
        seen = { until: pacer.throttledUntil, reason: pacer.throttledBecause };
        await time.sleep(ms);
      },
    });
    let calls = 0;
    await pacer.call(async () => {
      if (++calls === 1) throw throttled(300_000);
    });
    expect(seen.until).toBeGreaterThanOrEqual(Date.parse('2026-11-20T02:05:00Z'));
    expect(seen.reason).toBe('slow down');
    expect(pacer.throttledUntil).toBeUndefined();
  });
});
