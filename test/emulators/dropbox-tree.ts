import { dropboxContentHash } from '../../src/providers/dropbox/content-hash.js';

/**
 * One Dropbox namespace in memory (a user's home, a team space): entries by path_lower, an id index,
 * and an append-only change log that list_folder/continue cursors point into. Built to stay fast with
 * 100,000 files: every operation touches only what it changes, except a full listing.
 */

export interface DropboxNode {
  tag: 'file' | 'folder';
  id: string;
  /** The entry's own name, always in its true casing. */
  name: string;
  /** The path as the client that last wrote the entry spelled it: its ancestors' casing may be stale. */
  pathDisplay: string;
  pathLower: string;
  /** Creation order; a full listing pages by it. */
  seq: number;
  rev?: string;
  content?: Buffer;
  contentHash?: string;
  clientModified?: string;
  serverModified?: string;
  downloadable?: boolean;
  /** Dropbox restricts the content (a copyright claim, a legal hold): listed as usual, but
   *  files/download answers 409 path/restricted_content (LookupError.restricted_content). */
  restricted?: boolean;
}

interface LogRecord {
  op: 'upsert' | 'delete';
  lower: string;
  display: string;
}

export type Metadata = Record<string, unknown> & {
  '.tag': 'file' | 'folder' | 'deleted';
  path_lower: string;
};

/** Dropbox timestamps have whole seconds. */
export const dbxTime = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

let idCounter = 0;
let revCounter = 0x15a3e0b7;
const nextId = () => `id:emu${(++idCounter).toString(36).padStart(8, '0')}AAAAAAAAAw`;
const nextRev = () => (++revCounter).toString(16).padStart(9, '0') + '0000000' + '1a2b3c4d5e';

/** "/A/b" from "A/b", "/A/b" or "A/b/". The root is "". */
export function normalise(path: string): string {
  const p = path.replace(/^\/+|\/+$/g, '');
  return p === '' ? '' : '/' + p;
}

const parentOf = (display: string) => display.slice(0, display.lastIndexOf('/'));
const nameOf = (display: string) => display.slice(display.lastIndexOf('/') + 1);

export interface NamespaceOptions {
  /**
   * Dropbox's path_display is best effort: "at least the last path component will have the correct
   * casing", and "changes to only the casing of paths won't be returned by list_folder/continue"
   * (FolderMetadata.path_display in the API docs; dropbox-sdk-python #63, dropbox-sdk-obj-c #198).
   * On (the default, as on the real service): path_display keeps the ancestors' casing as the writing
   * client spelled it, or as it was before a case-only rename. Off: it is built from the true names.
   */
  casingDrift?: boolean;
}

export class DropboxNamespace {
  readonly nodes = new Map<string, DropboxNode>();
  readonly byId = new Map<string, DropboxNode>();
  readonly log: LogRecord[] = [];
  /** Bumped by invalidateCursors(): every older cursor of this namespace answers `reset`. */
  generation = 0;
  private seq = 0;

  readonly casingDrift: boolean;

  constructor(
    readonly id: string,
    opts: NamespaceOptions = {},
  ) {
    this.casingDrift = opts.casingDrift ?? true;
  }

  /** The path in the true casing of every component, as the user's file system shows it. */
  trueDisplay(node: DropboxNode): string {
    const parentLower = parentOf(node.pathLower);
    const parent = parentLower === '' ? undefined : this.nodes.get(parentLower);
    return (parent ? this.trueDisplay(parent) : '') + '/' + node.name;
  }

  /** path_display as Dropbox reports it: with drift, the writer's spelling of the ancestors and the
   *  true name last; without, the true casing throughout. */
  displayOf(node: DropboxNode): string {
    return this.casingDrift ? parentOf(node.pathDisplay) + '/' + node.name : this.trueDisplay(node);
  }

  get(path: string): DropboxNode | undefined {
    return this.nodes.get(normalise(path).toLowerCase());
  }

  /** A path argument as the API takes it: "" (root), "/a/b" or "id:…". */
  resolve(arg: string): DropboxNode | 'root' | undefined {
    if (arg === '') return 'root';
    if (arg.startsWith('id:')) return this.byId.get(arg);
    return this.nodes.get(arg.toLowerCase());
  }

  /** Creates or replaces a file (parents made as needed); its id survives a replacement. */
  put(
    path: string,
    content: Buffer | string,
    opts: { clientModified?: Date; downloadable?: boolean; restricted?: boolean } = {},
  ): DropboxNode {
    const display = normalise(path);
    if (display === '') throw new Error('cannot write the root');
    this.mkdir(parentOf(display));
    const lower = display.toLowerCase();
    const data = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
    const now = dbxTime(new Date());
    let node = this.nodes.get(lower);
    if (node?.tag === 'folder') throw new Error(`${display} is a folder`);
    if (!node) {
      node = {
        tag: 'file',
        id: nextId(),
        name: nameOf(display),
        pathDisplay: display,
        pathLower: lower,
        seq: ++this.seq,
      };
      this.nodes.set(lower, node);
      this.byId.set(node.id, node);
    } else {
      // The writing client's spelling of the folders above is what path_display shows from now on.
      node.pathDisplay = parentOf(display) + '/' + node.name;
    }
    node.content = data;
    node.contentHash = dropboxContentHash(data);
    node.rev = nextRev();
    node.serverModified = now;
    node.clientModified = opts.clientModified ? dbxTime(opts.clientModified) : now;
    node.downloadable = opts.downloadable ?? true;
    node.restricted = opts.restricted ?? false;
    this.log.push({ op: 'upsert', lower, display: node.pathDisplay });
    return node;
  }

  /** Creates a folder and its parents; nothing happens for those that exist. */
  mkdir(path: string): DropboxNode | undefined {
    const display = normalise(path);
    if (display === '') return undefined;
    const existing = this.nodes.get(display.toLowerCase());
    if (existing) {
      if (existing.tag !== 'folder') throw new Error(`${display} is a file`);
      return existing;
    }
    this.mkdir(parentOf(display));
    const node: DropboxNode = {
      tag: 'folder',
      id: nextId(),
      name: nameOf(display),
      pathDisplay: display,
      pathLower: display.toLowerCase(),
      seq: ++this.seq,
    };
    this.nodes.set(node.pathLower, node);
    this.byId.set(node.id, node);
    this.log.push({ op: 'upsert', lower: node.pathLower, display });
    return node;
  }

  /** Removes a file, or a folder and all below it. The log gets one deletion, as Dropbox reports it. */
  remove(path: string): void {
    const node = this.get(path);
    if (!node) throw new Error(`${normalise(path)} does not exist`);
    const display = this.displayOf(node);
    for (const n of this.subtree(node)) {
      this.nodes.delete(n.pathLower);
      this.byId.delete(n.id);
    }
    this.log.push({ op: 'delete', lower: node.pathLower, display });
  }

  /** A move or rename: a deletion at the old path, then everything at the new one (ids kept). A rename
   *  that changes only the case of the name is not logged: list_folder/continue never reports it. */
  move(from: string, to: string): void {
    const node = this.get(from);
    if (!node) throw new Error(`${normalise(from)} does not exist`);
    const target = normalise(to);
    if (target.toLowerCase() === node.pathLower) {
      node.name = nameOf(target);
      node.pathDisplay = parentOf(node.pathDisplay) + '/' + node.name;
      return;
    }
    if (this.nodes.has(target.toLowerCase())) throw new Error(`${target} exists`);
    this.mkdir(parentOf(target));
    const moved = this.subtree(node);
    const depth = node.pathLower.split('/').length;
    this.log.push({ op: 'delete', lower: node.pathLower, display: this.displayOf(node) });
    for (const n of moved) this.nodes.delete(n.pathLower);
    for (const n of moved) {
      // The moved entry takes the new spelling; what is below keeps its own (stale or not) below it.
      const rest = n.pathDisplay.split('/').slice(depth);
      n.pathDisplay = [target, ...rest].join('/');
      n.pathLower = n.pathDisplay.toLowerCase();
      if (n === node) n.name = nameOf(target);
      n.seq = ++this.seq;
      this.nodes.set(n.pathLower, n);
      this.log.push({ op: 'upsert', lower: n.pathLower, display: n.pathDisplay });
    }
  }

  /** How list_folder/continue answers a cursor of an older generation: 409 `reset`, or 400 (a cursor
   *  Dropbox no longer accepts at all: "Error in call to API function …"). */
  staleCursorAnswer: 'reset' | 'bad-request' = 'reset';

  /** Makes every cursor issued so far answer `reset` (or, with 'bad-request', 400), as Dropbox does
   *  when it drops its state. */
  invalidateCursors(answer: 'reset' | 'bad-request' = 'reset'): void {
    this.generation++;
    this.staleCursorAnswer = answer;
  }

  /** A node and everything below it, parents first. */
  subtree(node: DropboxNode): DropboxNode[] {
    const out = [node];
    if (node.tag === 'folder') {
      const prefix = node.pathLower + '/';
      for (const n of this.nodes.values()) if (n.pathLower.startsWith(prefix)) out.push(n);
    }
    return out;
  }

  metadata(node: DropboxNode): Metadata {
    if (node.tag === 'folder') {
      return {
        '.tag': 'folder',
        name: node.name,
        path_lower: node.pathLower,
        path_display: this.displayOf(node),
        id: node.id,
      };
    }
    const meta: Metadata = {
      '.tag': 'file',
      name: node.name,
      path_lower: node.pathLower,
      path_display: this.displayOf(node),
      id: node.id,
      client_modified: node.clientModified,
      server_modified: node.serverModified,
      rev: node.rev,
      size: node.content!.length,
      is_downloadable: node.downloadable,
      content_hash: node.contentHash,
    };
    if (!node.downloadable) meta.export_info = { export_as: 'html' };
    return meta;
  }

  private inScope(lower: string, scope: string, recursive: boolean): boolean {
    if (scope === '') return recursive || !lower.slice(1).includes('/');
    if (!lower.startsWith(scope + '/')) return recursive && lower === scope;
    return recursive || !lower.slice(scope.length + 1).includes('/');
  }

  /** Where paged full listings stopped, so the next page does not walk the namespace from the start. */
  private readonly listings = new Map<
    string,
    { it: Iterator<DropboxNode>; pending?: { node: DropboxNode; seq: number } }
  >();

  /** A page of a full listing: entries created after `afterSeq`, in creation order (a folder before what it holds). */
  listPage(
    scope: string,
    recursive: boolean,
    afterSeq: number,
    limit: number,
  ): { entries: Metadata[]; lastSeq: number; more: boolean } {
    const key = (after: number) => `${scope}\0${recursive}\0${after}`;
    // A Map iterator stays valid while the Map changes: entries deleted meanwhile are skipped, entries
    // (re)inserted meanwhile come at the end with a higher seq, exactly as a fresh walk would see them.
    const saved = this.listings.get(key(afterSeq));
    this.listings.delete(key(afterSeq));
    const it = saved?.it ?? this.nodes.values();
    const entries: Metadata[] = [];
    let lastSeq = afterSeq;
    const take = (n: DropboxNode): boolean => {
      if (n.seq <= afterSeq || !this.inScope(n.pathLower, scope, recursive)) return true;
      if (entries.length === limit) {
        this.listings.set(key(lastSeq), { it, pending: { node: n, seq: n.seq } });
        if (this.listings.size > 32) this.listings.delete(this.listings.keys().next().value!);
        return false;
      }
      entries.push(this.metadata(n));
      lastSeq = n.seq;
      return true;
    };
    const p = saved?.pending;
    if (p && p.node.seq === p.seq && this.nodes.get(p.node.pathLower) === p.node && !take(p.node))
      return { entries, lastSeq, more: true };
    for (let r = it.next(); !r.done; r = it.next()) {
      if (!take(r.value)) return { entries, lastSeq, more: true };
    }
    return { entries, lastSeq, more: false };
  }

  /**
   * What changed since log position `pos`, as list_folder/continue reports it: the latest state of each
   * changed path, in the order of its last change; a deleted folder as one entry, not one per child; a
   * path deleted and created again as a deletion then the new entry.
   */
  changesSince(
    pos: number,
    scope: string,
    recursive: boolean,
    limit: number,
  ): { entries: Metadata[]; next: number; more: boolean } {
    const end = this.log.length;
    const seen = new Map<string, { firstDelete: number; last: number; display: string }>();
    for (let i = pos; i < end; i++) {
      const r = this.log[i];
      if (!this.inScope(r.lower, scope, recursive)) continue;
      let s = seen.get(r.lower);
      if (!s) seen.set(r.lower, (s = { firstDelete: -1, last: i, display: r.display }));
      if (r.op === 'delete' && s.firstDelete < 0) s.firstDelete = i;
      s.last = i;
      s.display = r.display;
    }
    const out: Array<{ at: number; meta: Metadata }> = [];
    for (const [lower, s] of seen) {
      const node = this.nodes.get(lower);
      const deleted = (): Metadata => ({
        '.tag': 'deleted',
        name: nameOf(s.display),
        path_lower: lower,
        path_display: s.display,
      });
      if (node) {
        if (s.firstDelete >= 0) out.push({ at: s.firstDelete, meta: deleted() });
        out.push({ at: s.last, meta: this.metadata(node) });
      } else if (this.log[s.last].op === 'delete') {
        out.push({ at: s.last, meta: deleted() });
      }
      // Otherwise an ancestor was deleted after this path changed: that deletion covers it.
    }
    out.sort((a, b) => a.at - b.at);
    if (out.length <= limit) return { entries: out.map((o) => o.meta), next: end, more: false };
    const page = out.slice(0, limit);
    return { entries: page.map((o) => o.meta), next: page[page.length - 1].at + 1, more: true };
  }
}
