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
    expect(pacer.throttledMs).toBeGreaterThanOrEqual(3000);
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
});
