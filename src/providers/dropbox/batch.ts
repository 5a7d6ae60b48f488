import type { files } from 'dropbox';
import type { SyncguardError } from '../../errors.js';

/** Dropbox takes up to 1,000 entries in one upload_session/finish_batch_v2. */
export const MAX_BATCH = 1000;
/** A batch waits this long for more files once it has one (rclone's default in its sync batch mode). */
export const BATCH_IDLE_MS = 500;
/** An entry refused with too_many_write_operations goes into the next batch this many times at most. */
const MAX_REQUEUES = 5;

export interface BatchDeps {
  /** One finish_batch_v2 call, retried by the pacer; `attempt()` says how many tries it took so far. */
  finishBatch(
    entries: files.UploadSessionFinishArg[],
    attempts: { count: number },
  ): Promise<files.UploadSessionFinishBatchResultEntry[]>;
  /** The file at `path` when it already holds `hash`: what an earlier commit whose answer was lost wrote. */
  committedEarlier(path: string, hash: string): Promise<files.FileMetadata | undefined>;
  /** The error to reject an entry's upload with, from its failure (an UploadSessionFinishError). */
  failed(failure: files.UploadSessionFinishError, summary: string, label: string): SyncguardError;
  /** Uploads in progress: when every one of them waits for its commit, the batch goes at once. */
  inProgress(): number;
}

interface Entry {
  arg: files.UploadSessionFinishArg;
  hash: string;
  label: string;
  requeued: number;
  /** A commit of this entry was sent before (its answer may have been lost). */
  sent: boolean;
  resolve: (meta: files.FileMetadata) => void;
  reject: (err: unknown) => void;
}

/**
 * Commits upload sessions in batches with upload_session/finish_batch_v2, one batch at a time, as
 * Dropbox's performance guide asks: each commit takes the namespace's write lock, and commits of many
 * files one by one (or in parallel) meet too_many_write_operations. An upload resolves when its batch
 * has committed it, so errors still belong to their file.
 */
export class CommitBatcher {
  private queue: Entry[] = [];
  private running = false;
  private timer?: NodeJS.Timeout;

  constructor(private readonly deps: BatchDeps) {}

  commit(arg: files.UploadSessionFinishArg, hash: string, label: string): Promise<files.FileMetadata> {
    return new Promise((resolve, reject) => {
      this.queue.push({ arg, hash, label, requeued: 0, sent: false, resolve, reject });
      this.schedule();
    });
  }

  /** An upload ended or gave up: the ones left may all be waiting now. */
  poke(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.queue.length >= MAX_BATCH || this.queue.length >= this.deps.inProgress()) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, BATCH_IDLE_MS);
  }

  private async flush(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue.splice(0, MAX_BATCH);
    try {
      const attempts = { count: 0 };
      let results: files.UploadSessionFinishBatchResultEntry[];
      try {
        results = await this.deps.finishBatch(
          batch.map((e) => e.arg),
          attempts,
        );
      } catch (e) {
        for (const entry of batch) entry.reject(e);
        return;
      }
      await Promise.all(
        batch.map(async (entry, i) => {
          try {
            await this.settle(entry, results[i], attempts.count > 1 || entry.sent);
          } catch (e) {
            entry.reject(e);
          }
        }),
      );
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async settle(
    entry: Entry,
    result: files.UploadSessionFinishBatchResultEntry | undefined,
    retried: boolean,
  ): Promise<void> {
    entry.sent = true;
    if (result?.['.tag'] === 'success') {
      entry.resolve(result);
      return;
    }
    const failure = result?.failure ?? { '.tag': 'other' };
    const summary = tagsOf(failure);
    if (/too_many_write_operations/.test(summary) && entry.requeued < MAX_REQUEUES) {
      entry.requeued++;
      this.queue.push(entry);
      return;
    }
    // A commit sent before whose answer was lost: the session is gone and the file is there. It is
    // ours when it holds exactly our content.
    if (retried && /^(lookup_failed\/(not_found|closed)|path\/conflict\/file)/.test(summary)) {
      const mine = await this.deps.committedEarlier(entry.arg.commit.path, entry.hash);
      if (mine) {
        entry.resolve(mine);
        return;
      }
    }
    entry.reject(this.deps.failed(failure, summary, entry.label));
  }
}

/** "path/conflict/file" from { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } }. */
export function tagsOf(union: unknown): string {
  const parts: string[] = [];
  let u = union as Record<string, unknown> | undefined;
  while (u && typeof u['.tag'] === 'string') {
    const tag = u['.tag'];
    parts.push(tag);
    u = u[tag] as Record<string, unknown> | undefined;
    if (typeof u !== 'object') break;
  }
  return parts.join('/');
}
