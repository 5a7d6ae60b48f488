import { Readable } from 'node:stream';
import { SyncguardError } from '../errors.js';
import { discardBody } from './_util.js';
import type { GetOptions, ObjectInfo, PrepareOptions, PrepareReport, PutOptions, Store } from './types.js';

export type StoreOp = 'prepare' | 'put' | 'get' | 'head' | 'list' | 'extendRetention' | 'delete';

/** One planned failure. A call fails when its op matches and every given condition holds. */
export interface Fault {
  op: StoreOp;
  /** Only the nth call of this op (1-based, counting every call of the op, failed or not). */
  nth?: number;
  /** Only calls whose key (or list prefix) matches: a RegExp, or a string the key contains. */
  key?: RegExp | string;
  /** How many matching calls fail (default: one with `nth`, else every matching call). */
  times?: number;
  /** put: store the object first, then fail, as when the reply to a successful write is lost. */
  afterWrite?: boolean;
  /** get: the call succeeds, but the stream fails after this many bytes. */
  failAfterBytes?: number;
  /** get: the call succeeds, but the first byte of the data comes back flipped (silent corruption). */
  corrupt?: boolean;
  /** What is thrown (default: a retryable STORE_UNAVAILABLE naming the op and key). */
  error?: (op: StoreOp, key: string) => Error;
}

export interface FaultyStore extends Store {
  /** Calls made per op, failed ones included. */
  readonly calls: Record<StoreOp, number>;
  /** How many faults fired. */
  readonly injected: number;
}

/**
 * Wraps a store so that chosen calls fail, for tests of what the code above the store does when
 * the store lets it down (after Kopia's fault-injecting storage wrapper). Keeps the Store interface.
 */
export function faulty(store: Store, plan: Fault | Fault[]): FaultyStore {
  const faults = (Array.isArray(plan) ? plan : [plan]).map((f) => ({
    ...f,
    left: f.times ?? (f.nth !== undefined ? 1 : Infinity),
  }));
  const calls: Record<StoreOp, number> = {
    prepare: 0,
    put: 0,
    get: 0,
    head: 0,
    list: 0,
    extendRetention: 0,
    delete: 0,
  };
  let injected = 0;

  const match = (op: StoreOp, key: string) => {
    const n = ++calls[op];
    const f = faults.find(
      (x) =>
        x.op === op &&
        x.left > 0 &&
        (x.nth === undefined || x.nth === n) &&
        (x.key === undefined || (typeof x.key === 'string' ? key.includes(x.key) : x.key.test(key))),
    );
    if (f) {
      f.left--;
      injected++;
    }
    return f;
  };
  const errorOf = (f: Fault, op: StoreOp, key: string) =>
    f.error?.(op, key) ?? new SyncguardError('STORE_UNAVAILABLE', `injected failure: ${op} ${key}`);

  const wrapped: FaultyStore = {
    get description() {
      return store.description;
    },
    get features() {
      return store.features;
    },
    get calls() {
      return calls;
    },
    get injected() {
      return injected;
    },
    async prepare(opts: PrepareOptions): Promise<PrepareReport> {
      const f = match('prepare', '');
      if (f) throw errorOf(f, 'prepare', '');
      return store.prepare(opts);
    },
    async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
      const f = match('put', key);
      if (f && !f.afterWrite) {
        discardBody(body);
        throw errorOf(f, 'put', key);
      }
      await store.put(key, body, opts);
      if (f) throw errorOf(f, 'put', key);
    },
    async get(key: string, opts?: GetOptions): Promise<Readable> {
      const f = match('get', key);
      if (f && f.failAfterBytes === undefined && !f.corrupt) throw errorOf(f, 'get', key);
      const stream = await store.get(key, opts);
      if (!f) return stream;
      // The error comes when the consumer asks for more after the bytes before it, so they arrive.
      const source = stream[Symbol.asyncIterator]();
      let seen = 0;
      let failNext = false;
      return new Readable({
        // Nothing read ahead: read() runs only once what was pushed has been taken.
        highWaterMark: 0,
        read() {
          // Readable ignores what read() returns: every failure of this pull goes to destroy().
          void (async () => {
            if (failNext) return void this.destroy(errorOf(f, 'get', key));
            try {
              const r = await source.next();
              if (r.done) return void this.push(null);
              let out = Buffer.from(r.value as Buffer);
              if (f.corrupt && seen === 0 && out.length > 0) out[0] ^= 0xff;
              if (f.failAfterBytes !== undefined && seen + out.length > f.failAfterBytes) {
                out = out.subarray(0, Math.max(0, f.failAfterBytes - seen));
                failNext = true;
                if (out.length === 0) return void this.destroy(errorOf(f, 'get', key));
              }
              seen += out.length;
              this.push(out);
            } catch (e) {
              this.destroy(e as Error);
            }
          })();
        },
        destroy(err, cb) {
          source.return?.().catch(() => {});
          stream.destroy();
          cb(err);
        },
      });
    },
    async head(key: string): Promise<ObjectInfo | undefined> {
      const f = match('head', key);
      if (f) throw errorOf(f, 'head', key);
      return store.head(key);
    },
    async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
      const f = match('list', prefix);
      if (f) throw errorOf(f, 'list', prefix);
      yield* store.list(prefix, signal);
    },
    ...(store.versions && {
      versions: (prefix: string, signal?: AbortSignal) => {
        const f = match('list', prefix);
        if (f) return Promise.reject(errorOf(f, 'list', prefix));
        return store.versions!(prefix, signal);
      },
    }),
    async extendRetention(key: string, until: Date): Promise<void> {
      const f = match('extendRetention', key);
      if (f) throw errorOf(f, 'extendRetention', key);
      return store.extendRetention(key, until);
    },
    async delete(key: string): Promise<void> {
      const f = match('delete', key);
      if (f) throw errorOf(f, 'delete', key);
      return store.delete(key);
    },
  };
  return wrapped;
}
