import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import { normaliseFolder } from '../../paths.js';
import { setPathRoot } from './api.js';
import type { DropboxCalls } from './calls.js';

export interface ConfiguredFolder {
  /** As the API takes it: '' for the whole Dropbox, else '/Photos'. */
  api: string;
  /** The key of its cursor: the configured path, lower-cased. */
  key: string;
}

/** The configured folders, checked: no overlap (Dropbox compares case-insensitively), '/' alone. */
export function configuredFolders(
  account: Pick<DropboxAccountConfig, 'name' | 'folders'>,
): ConfiguredFolder[] {
  const list = account.folders.map((f) => {
    try {
      return normaliseFolder(f);
    } catch (e) {
      throw new SyncguardError(
        'CONFIG',
        `accounts "${account.name}" folders: ${(e as Error).message}: write a Dropbox folder such as "/Photos"`,
      );
    }
  });
  if (list.length === 0 || list.includes('')) {
    if (list.length > 1)
      throw new SyncguardError(
        'CONFIG',
        `accounts "${account.name}" folders: "/" (the whole Dropbox) already holds every other folder listed: keep only one of them`,
      );
    return [{ api: '', key: '' }];
  }
  const lower = list.map((f) => f.toLowerCase());
  for (let i = 0; i < list.length; i++) {
    for (let j = 0; j < list.length; j++) {
      if (i !== j && (lower[i] === lower[j] ? i > j : lower[i].startsWith(lower[j] + '/'))) {
        throw new SyncguardError(
          'CONFIG',
          `accounts "${account.name}" folders: "/${list[i]}" lies inside "/${list[j]}": keep only the outer one`,
        );
      }
    }
  }
  return list.map((f, i) => ({ api: '/' + f, key: '/' + lower[i] }));
}

/**
 * The namespace every path is relative to (Dropbox-API-Path-Root): the member's home, a namespace by
 * id, or the team space (`root: team`), whose root namespace is read from the account once, and again
 * after Dropbox says it changed. `key` names it, so that a cursor is only used under its own root.
 */
export class PathRoot {
  key: string;
  private pending?: Promise<void>;

  constructor(
    private readonly account: DropboxAccountConfig,
    private readonly calls: DropboxCalls,
  ) {
    const root = account.root;
    if (typeof root === 'object') {
      setPathRoot(calls.client, JSON.stringify({ '.tag': 'namespace_id', namespace_id: root.namespaceId }));
      this.key = `ns:${root.namespaceId}`;
    } else {
      this.key = 'home';
    }
    if (account.selectUser) this.key += `|user:${account.selectUser}`;
  }

  /** Resolves the team space root once (`root: team`), or again after Dropbox said it changed. */
  ready(signal?: AbortSignal, again = false): Promise<void> {
    if (this.account.root !== 'team') return Promise.resolve();
    if (again) this.pending = undefined;
    this.pending ??= (async () => {
      const { client } = this.calls;
      setPathRoot(client, undefined);
      const me = await this.calls.call(
        'reading the account (for its team space)',
        () => client.dbx.usersGetCurrentAccount(),
        signal,
      );
      const rootId = me.result.root_info.root_namespace_id;
      setPathRoot(client, JSON.stringify({ '.tag': 'root', root: rootId }));
      this.key = `root:${rootId}` + (this.account.selectUser ? `|user:${this.account.selectUser}` : '');
    })().catch((e: unknown) => {
      this.pending = undefined;
      throw e;
    });
    return this.pending;
  }
}
