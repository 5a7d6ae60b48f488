/** Small helpers shared by several layers; no imports from the rest of syncguard. */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** A path from the config: `~` and `~/…` are the user's home folder, anything else is relative to `base`. */
export function expandHome(p: string, base = process.cwd()): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return resolve(base, p);
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight. After the first failure no new call is
 * started; the calls in flight finish, then the first error is thrown.
 */
export async function forEachLimit<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const it = items[Symbol.iterator]();
  // Boxed, so that an error that is falsy or undefined still counts as a failure.
  let failed: { error: unknown } | undefined;
  const worker = async () => {
    for (let r = it.next(); !r.done && failed === undefined; r = it.next()) {
      try {
        await fn(r.value);
      } catch (e) {
        failed ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failed) throw failed.error;
}
