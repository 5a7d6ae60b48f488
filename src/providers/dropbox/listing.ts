import type { files } from 'dropbox';
import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError, isSyncguardError, throwIfAborted } from '../../errors.js';
import { showPath, unsafeReason } from '../../paths.js';
import type { Change, ChangesOptions, RemoteEntry } from '../types.js';
import type { DropboxCalls } from './calls.js';
import { errorSummary, isDropboxResponseError } from './classify.js';
import { DropboxNames } from './names.js';
import type { ConfiguredFolder, PathRoot } from './roots.js';

const LIST_LIMIT = 2000;
/** Dropbox reports no time for folders. */
const FOLDER_TIME = new Date(0);

type Meta = files.FileMetadataReference | files.FolderMetadataReference | files.DeletedMetadataReference;

interface SavedCursor {
  v: 1;
  /** Which root the cursors belong to: a cursor is only valid under the path root it was made in. */
  root: string;
  /** Configured folder (lower-cased) → list_folder cursor. */
  folders: Record<string, string>;
}

/**
 * The listing of a Dropbox account's configured folders: files/list_folder of each folder for
 * everything, list_folder/continue from one cursor per folder for what changed. The cursor handed back
 * is JSON: the root it was made under and each folder's cursor.
 */
export class DropboxListing {
  constructor(
    private readonly account: DropboxAccountConfig,
    private readonly calls: DropboxCalls,
    private readonly root: PathRoot,
    private readonly folders: ConfiguredFolder[],
  ) {}

  async *changes(
    cursor?: string,
    opts: ChangesOptions = {},
  ): AsyncGenerator<Change, string | undefined, undefined> {
    const signal = opts.signal;
    throwIfAborted(signal);
    await this.root.ready(signal);
    const saved = cursor === undefined ? undefined : this.decodeCursor(cursor);
    if (cursor !== undefined && saved === undefined) yield { kind: 'reset' };
    const next = new Map<string, string>();
    let incremental = saved !== undefined;
    const names = new DropboxNames(opts.previous, incremental);
    yield* names.mend();
    for (let resets = 0; ; resets++) {
      try {
        if (incremental) yield* this.listChanges(saved!, next, names, signal);
        else yield* this.listEverything(next, names, signal);
        break;
      } catch (e) {
        if (!isSyncguardError(e, 'CURSOR_RESET') || resets >= 3) throw e;
        this.calls.log('info', `dropbox ${this.account.name}: ${e.message}`);
        // A team space's root may be what changed (422 invalid_root): read it again.
        await this.root.ready(signal, true);
        yield { kind: 'reset' };
        incremental = false;
        names.reset();
        next.clear();
      }
    }
    const out: SavedCursor = { v: 1, root: this.root.key, folders: Object.fromEntries(next) };
    return JSON.stringify(out);
  }

  /** list_folder/continue from each folder's cursor: only what changed. */
  private async *listChanges(
    saved: Map<string, string>,
    next: Map<string, string>,
    names: DropboxNames,
    signal?: AbortSignal,
  ): AsyncGenerator<Change> {
    for (const folder of this.folders) {
      let cursor = saved.get(folder.key)!;
      const label = `listing changes in ${folder.api || 'the whole Dropbox'}`;
      for (;;) {
        throwIfAborted(signal);
        const page = await this.continueListing(cursor, label, signal);
        for (const entry of page.result.entries) yield* this.toChanges(entry, names);
        cursor = page.result.cursor;
        if (!page.result.has_more) break;
      }
      next.set(folder.key, cursor);
    }
  }

  /** list_folder of each folder, the folder itself first: everything there is. */
  private async *listEverything(
    next: Map<string, string>,
    names: DropboxNames,
    signal?: AbortSignal,
  ): AsyncGenerator<Change> {
    const dbx = this.calls.client.dbx;
    for (const folder of this.folders) {
      const where = folder.api || 'the whole Dropbox';
      let self: string | undefined;
      if (folder.api !== '') {
        // The folder's own entry, before anything in it; this also tells "missing" from "empty".
        const meta = await this.calls
          .call(`reading ${where}`, () => dbx.filesGetMetadata({ path: folder.api }), signal)
          .catch((e: unknown) => {
            if (isSyncguardError(e, 'NOT_FOUND')) {
              throw new SyncguardError(
                'NOT_FOUND',
                `the folder ${showPath(folder.api)} of account "${this.account.name}" does not exist on Dropbox: check accounts[].folders`,
              );
            }
            throw e;
          });
        if (meta.result['.tag'] !== 'folder') {
          throw new SyncguardError(
            'CONFIG',
            `${showPath(folder.api)} of account "${this.account.name}" is a file on Dropbox, not a folder: check accounts[].folders`,
          );
        }
        self = meta.result.path_lower;
        yield* this.toChanges(meta.result, names);
      }
      const label = `listing ${where}`;
      let page = await this.calls
        .call(
          label,
          () =>
            dbx.filesListFolder({
              path: folder.api,
              recursive: true,
              include_deleted: false,
              include_mounted_folders: true,
              include_non_downloadable_files: true,
              limit: LIST_LIMIT,
            }),
          signal,
        )
        .catch((e: unknown) => {
          if (isSyncguardError(e, 'NOT_FOUND'))
            throw new SyncguardError(
              'NOT_FOUND',
              `the folder ${showPath(folder.api)} of account "${this.account.name}" is gone from Dropbox: check accounts[].folders`,
            );
          throw e;
        });
      for (;;) {
        for (const entry of page.result.entries) {
          if (self !== undefined && entry.path_lower === self) continue;
          yield* this.toChanges(entry, names);
        }
        if (!page.result.has_more) break;
        throwIfAborted(signal);
        const cursor = page.result.cursor;
        page = await this.continueListing(cursor, label, signal);
      }
      next.set(folder.key, page.result.cursor);
    }
  }

  /**
   * list_folder/continue. Dropbox answers 400 (not 409 `reset`) to a cursor it does not accept any more;
   * a cursor kept in a locked manifest would then fail every night. After one retry (a passing refusal
   * goes on from the same cursor) it counts as a reset: a full listing follows.
   */
  private continueListing(cursor: string, label: string, signal?: AbortSignal) {
    let refused = 0;
    return this.calls.call(
      label,
      async () => {
        try {
          return await this.calls.client.dbx.filesListFolderContinue({ cursor });
        } catch (e) {
          if (!isDropboxResponseError(e) || e.status !== 400) throw e;
          const why = typeof e.error === 'string' ? e.error.slice(0, 200) : errorSummary(e);
          if (++refused >= 2)
            throw new SyncguardError(
              'CURSOR_RESET',
              `Dropbox no longer accepts the listing cursor (${label}: 400 ${this.calls.redact(why)}): a full listing follows`,
            );
          throw new SyncguardError(
            'PROVIDER_UNAVAILABLE',
            `Dropbox refused the listing cursor (${label}); trying it once more`,
          );
        }
      },
      signal,
    );
  }

  /** What one listed entry means. Paths are built by `names` from path_lower and each entry's own
   *  name, not taken from path_display, whose casing of the folders above is best effort. */
  private *toChanges(entry: Meta, names: DropboxNames): Generator<Change> {
    const lower = entry.path_lower;
    const display = entry.path_display ?? lower;
    if (!lower || !display) {
      this.calls.log(
        'debug',
        `dropbox ${this.account.name}: ${showPath(entry.name)} is not mounted here; left out`,
      );
      return;
    }
    const strip = (p: string) => (p.startsWith('/') ? p.slice(1) : p);
    // The engine refuses unsafe paths too; here the raw names are checked before any spelling is kept.
    const reason = unsafeReason(strip(display)) ?? unsafeReason(strip(lower));
    if (entry['.tag'] === 'deleted') {
      if (reason) {
        this.calls.log(
          'warn',
          `dropbox ${this.account.name}: ignored the deletion of ${showPath(display)}: ${reason}`,
        );
        return;
      }
      yield names.delete(strip(lower), strip(display));
      return;
    }
    if (reason) {
      yield {
        kind: 'error',
        path: strip(display),
        message: `Dropbox named an entry that cannot be kept safely: ${reason}`,
      };
      return;
    }
    const name = entry.name || display.slice(display.lastIndexOf('/') + 1);
    if (entry['.tag'] === 'folder') {
      const dir: RemoteEntry = { path: '', type: 'dir', size: 0, modified: FOLDER_TIME, id: entry.id };
      yield* names.upsert(dir, strip(lower), strip(display), name);
      return;
    }
    if (entry.is_downloadable === false) {
      // Listed under its kept spelling; a skip takes no place in the state.
      yield {
        kind: 'skip',
        path: names.spelling(strip(lower), strip(display), name),
        reason:
          'a cloud document (Paper, Google Docs…) that Dropbox cannot download: export it to keep a copy',
      };
      return;
    }
    const e: RemoteEntry = {
      path: '',
      type: 'file',
      size: entry.size,
      modified: new Date(entry.client_modified),
      id: entry.id,
    };
    if (entry.content_hash) e.hash = { algo: 'dropbox', value: entry.content_hash };
    yield* names.upsert(e, strip(lower), strip(display), name);
  }

  private decodeCursor(cursor: string): Map<string, string> | undefined {
    let saved: Partial<SavedCursor>;
    try {
      saved = JSON.parse(cursor) as Partial<SavedCursor>;
    } catch {
      saved = {};
    }
    const why =
      saved.v !== 1 || typeof saved.folders !== 'object' || saved.folders === null
        ? 'the stored cursor is not a Dropbox cursor of this version'
        : saved.root !== this.root.key
          ? "the account's root changed since the last snapshot"
          : Object.keys(saved.folders).sort().join('\0') !==
              this.folders
                .map((f) => f.key)
                .sort()
                .join('\0')
            ? "the account's folders changed since the last snapshot"
            : undefined;
    if (why) {
      this.calls.log('info', `dropbox ${this.account.name}: ${why}; listing everything`);
      return undefined;
    }
    return new Map(Object.entries(saved.folders!));
  }
}
