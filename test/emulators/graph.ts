/**
 * An in-memory emulator of the parts of Microsoft Graph (OneDrive / SharePoint) and of the Microsoft
 * identity platform that syncguard uses, served over HTTP for the real SDKs (@microsoft/microsoft-graph-client,
 * @azure/msal-node) to talk to. It follows the public documentation, errors included:
 *
 * - driveitem-delta: pages with @odata.nextLink / @odata.deltaLink; tokens are positions in an
 *   append-only change log, so the same item can come in more than one page; items carry no
 *   parentReference.path; a renamed folder is logged alone, without what it holds; deleted items
 *   have the `deleted` facet, without `name` on Business and without `size` on Personal; 410
 *   resyncRequired with a Location that starts a fresh enumeration.
 * - /content answers 302 to a pre-authenticated URL on another host (dl.emu.test) that refuses an
 *   Authorization header and serves Range requests.
 * - Upload sessions on up.emu.test: Content-Range, fragments in order, multiples of 320 KiB below 60 MiB,
 *   nextExpectedRanges, 416 for a range sent twice, 409 nameAlreadyExists at commit.
 * - Throttling (429/503 with Retry-After), 500s and connections cut in the middle of a download, on demand.
 * - /{tenant}/oauth2/v2.0/devicecode and /token: the device code grant (authorization_pending until the
 *   code is approved) and the refresh_token grant with rotation (each refresh returns a new refresh
 *   token and invalidates the one used); unsigned id_token and client_info, as MSAL needs.
 *
 * Behaviours of the real service that the documentation does not show at first sight, each behind a
 * switch (GraphEmulatorOptions, or a method for one-off faults); `realistic()` turns on those that are
 * the norm for a drive type:
 * - idCaseDrift: ids in mixed casing across endpoints (OneDrive/onedrive-api-docs#1902, mid-2025:
 *   GET /me/drive and GET /root lower case, delta and children upper case for parentReference.id);
 *   every route takes ids case-insensitively.
 * - sha256OnPersonal: the SHA-256 Personal gave until 2023 (off: quickXorHash only, abraunegg/onedrive#2423).
 * - hashlessInListings: files listed without `file.hashes` (OneDrive/onedrive-api-docs#1704, #527).
 * - rewriteOnDownload: files whose bytes on download differ from the listed size and hash (SharePoint
 *   adds metadata to Office documents, .doc and some JPEGs: rclone#1718, #2036, #4890, #6701).
 * - deltaLinkForm: the OData function forms Graph also returns (drives('…')/root/microsoft.graph.delta(…),
 *   drives('…')/items('…')/microsoft.graph.delta(…); OneDrive/onedrive-api-docs#1431).
 * - oneNoteAsFolder: a notebook is a folder with a `package` facet on Business and SharePoint, its
 *   sections plain files (wisecom-oy/atlas#72); its own /content is 404.
 * - rejectDeltaLinks(): 400 "Invalid API or resource" or 404 to a delta link Graph handed out.
 * - repeatDelta(): a nextLink returned again with an empty page (microsoft-graph-docs#2749).
 * - flagVirus(): 403 with X-Virus-Infected on download (OneDrive/onedrive-api-docs#653).
 * - loseNextCommitAnswer(): the last fragment of an upload session commits but its answer is lost; the
 *   session is gone, so a retry gets 404.
 * - versions: a PATCH of fileSystemInfo after an upload makes a version of its own on Business
 *   (OneDrive/onedrive-api-docs#1378).
 * - rateLimitNext(): SharePoint's RateLimit-Limit/Remaining/Reset headers before throttling.
 * - Sites: GET /sites/{id}/drive is the default library, whatever its (localised) name.
 *
 * Every URL it hands out is an https URL on a fake host (graph.emu.test, or the X-Forwarded-Host the
 * client's rewriting fetch sends; dl.emu.test; up.emu.test), as Graph's would be.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type GraphRoute =
  | 'drive'
  | 'item'
  | 'children'
  | 'delta'
  | 'content'
  | 'download'
  | 'upload'
  | 'createUploadSession'
  | 'uploadFragment'
  | 'patch'
  | 'createFolder'
  | 'site'
  | 'siteDrives'
  | 'siteDrive'
  | 'devicecode'
  | 'token';

export interface GraphEmulatorOptions {
  /** The signed-in user's drive: "personal" (OneDrive Personal) or "business" (OneDrive for Business). */
  driveType?: 'personal' | 'business';
  /** Items per delta or children page (Graph's own is about 200). */
  pageSize?: number;
  /** Seconds between device code polls that the devicecode endpoint asks for (Microsoft says 5). */
  deviceCodeInterval?: number;
  /** Approve every device code after one authorization_pending answer, as if the user were quick. */
  autoApprove?: boolean;
  /** Lifetime of the access tokens it issues, in seconds. */
  accessTokenLifetime?: number;
  /** Whether a change also logs the folders above the item (Graph's default; `false` is what the
   *  `Prefer: deltaExcludeParent` header asks for). */
  parentChain?: boolean;
  /** The host Graph links are made for when the request names none (X-Forwarded-Host). */
  graphHost?: string;
  user?: { name: string; username: string };
  /** Ids in mixed casing across endpoints (Personal drives only, where ids are hex). */
  idCaseDrift?: boolean;
  /** Personal drives also list sha256Hash (as before 2023). */
  sha256OnPersonal?: boolean;
  /** Which files delta and children list without `file.hashes` (true: all). GET of the item still has them. */
  hashlessInListings?: boolean | ((path: string) => boolean);
  /** Files whose downloaded bytes differ from what is listed (SharePoint rewrites them on the way out). */
  rewriteOnDownload?: RegExp;
  /** How delta links are spelled: `query` (/drives/{id}/root/delta?token=), `drives` (drives('{id}')/root/
   *  microsoft.graph.delta(token='…')) or `items` (drives('{id}')/items('{root}')/microsoft.graph.delta(token='…')). */
  deltaLinkForm?: 'query' | 'drives' | 'items';
  /** A OneNote notebook is a folder with a `package` facet (Business, SharePoint; the default there). */
  oneNoteAsFolder?: boolean;
}

/** The switches that are the norm for a drive type, as the real service behaves today. */
export function realistic(driveType: 'personal' | 'business' = 'personal'): GraphEmulatorOptions {
  return driveType === 'personal'
    ? {
        driveType,
        idCaseDrift: true,
        rewriteOnDownload: /\.doc$/i,
        deltaLinkForm: 'items',
      }
    : {
        driveType,
        hashlessInListings: (p) => /(^|\/)old[^/]*$/i.test(p),
        rewriteOnDownload: /\.(doc|docx|xlsx|pptx|jpe?g)$/i,
        deltaLinkForm: 'drives',
        oneNoteAsFolder: true,
      };
}

export interface FaultOptions {
  /** The status to answer with: 429 or 503 (throttling, with Retry-After), 500/502/504. */
  status: number;
  /** Seconds, for Retry-After (0 or 1 in tests). Omitted: no Retry-After header. */
  retryAfter?: number;
  /** Which routes the fault applies to; every route when omitted. */
  route?: GraphRoute | GraphRoute[];
}

/** The reference QuickXorHash, bit by bit from the published description; independent of src/. */
export function referenceQuickXor(data: Uint8Array): string {
  const state = new Uint8Array(20);
  let shift = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    for (let bit = 0; bit < 8; bit++) {
      if ((b >> bit) & 1) {
        const k = (shift + bit) % 160;
        state[k >> 3] ^= 1 << (k & 7);
      }
    }
    shift = (shift + 11) % 160;
  }
  let len = BigInt(data.length);
  for (let i = 0; i < 8; i++) {
    state[12 + i] ^= Number(len & 0xffn);
    len >>= 8n;
  }
  return Buffer.from(state).toString('base64');
}

/** The fast one for the emulator's own use (many files): the same algorithm, byte-wise. */
function quickXor(data: Uint8Array): string {
  const state = new Uint8Array(20);
  let shift = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    const idx = shift >>> 3;
    const off = shift & 7;
    state[idx] ^= (b << off) & 0xff;
    if (off) state[(idx + 1) % 20] ^= b >>> (8 - off);
    shift += 11;
    if (shift >= 160) shift -= 160;
  }
  let len = BigInt(data.length);
  for (let i = 0; i < 8; i++) {
    state[12 + i] ^= Number(len & 0xffn);
    len >>= 8n;
  }
  return Buffer.from(state).toString('base64');
}

interface Item {
  id: string;
  name: string;
  parentId?: string;
  kind: 'root' | 'folder' | 'file' | 'package' | 'remote';
  content?: Buffer;
  quickXor?: string;
  sha256?: string;
  /** Bytes: a file's length, a folder's sum of what it holds. */
  size: number;
  created: string;
  modified: string;
  fsCreated: string;
  fsModified: string;
  deleted: boolean;
  /** lower-case name → id, for folders, packages and the root. */
  children?: Map<string, string>;
  version: number;
  /** Bumped when the content changes: the N of the cTag. */
  contentVersion?: number;
  /** Versions in the file's history (content writes, and metadata PATCHes on Business). */
  versions?: number;
  /** Flagged by the virus scanner: downloads answer 403 with X-Virus-Infected. */
  virus?: string;
}

/** What a test sees of an item. */
export interface ItemView {
  id: string;
  name: string;
  kind: Item['kind'];
  size: number;
  content?: Buffer;
  quickXorHash?: string;
  fileSystemInfo: { createdDateTime: string; lastModifiedDateTime: string };
  versions: number;
}

interface Enumeration {
  ids: string[];
  logPos: number;
}

const MIME: Record<string, string> = {
  txt: 'text/plain',
  json: 'application/json',
  jpg: 'image/jpeg',
  png: 'image/png',
  pdf: 'application/pdf',
  one: 'application/msonenote',
};

function isoNow(): string {
  return new Date().toISOString();
}

function token(prefix: string): string {
  return `${prefix}${randomBytes(18).toString('base64url')}`;
}

function b64url(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

/** The switches of GraphEmulatorOptions that concern one drive's items. */
export type DriveBehaviour = Pick<
  GraphEmulatorOptions,
  'parentChain' | 'idCaseDrift' | 'sha256OnPersonal' | 'hashlessInListings' | 'oneNoteAsFolder'
>;

/** One drive, edited by path the way a user or a sync client would. */
export class EmuDrive {
  readonly items = new Map<string, Item>();
  readonly rootId: string;
  /** The change log delta tokens point into: item ids, in the order they changed. */
  readonly log: string[] = [];
  epoch = 0;
  private seq = 100;
  private readonly enumerations = new Map<number, Enumeration>();
  private enumSeq = 0;

  constructor(
    readonly id: string,
    readonly driveType: 'personal' | 'business' | 'documentLibrary',
    readonly name: string,
    readonly behaviour: DriveBehaviour = {},
  ) {
    this.rootId = this.newId();
    const now = isoNow();
    this.items.set(this.rootId, {
      id: this.rootId,
      name: 'root',
      kind: 'root',
      size: 0,
      created: now,
      modified: now,
      fsCreated: now,
      fsModified: now,
      deleted: false,
      children: new Map(),
      version: 1,
    });
    this.log.push(this.rootId);
  }

  get personal(): boolean {
    return this.driveType === 'personal';
  }

  /** An item by id, in any casing (Graph's ids are case-insensitive). */
  get(id: string): Item | undefined {
    return this.items.get(id) ?? this.items.get(id.toUpperCase());
  }

  /** An id as an endpoint spells it: with idCaseDrift, lower case where one item is asked for, upper
   *  case for a listing's parent references, lower case for a listing's own ids. */
  spell(id: string, where: 'item' | 'listing' | 'listingParent'): string {
    if (!this.behaviour.idCaseDrift || !this.personal) return id;
    return where === 'listingParent' ? id.toUpperCase() : id.toLowerCase();
  }

  /** The drive id as GET /me/drive and parentReference.driveId spell it. */
  get spelledId(): string {
    return this.behaviour.idCaseDrift && this.personal ? this.id.toLowerCase() : this.id;
  }

  private newId(): string {
    const n = this.seq++;
    // Personal ids look like "ABC123!105", Business ids like "01ABCDEF…".
    return this.personal
      ? `${this.id.toUpperCase()}!${n}`
      : `01${createHash('sha1').update(`${this.id}/${n}`).digest('hex').slice(0, 30).toUpperCase()}`;
  }

  // ---- the test's side: edit by path --------------------------------------------------------

  /** Creates or replaces a file (and the folders above it). The id stays when the file exists. */
  write(path: string, content: Buffer | string, opts: { modified?: Date } = {}): ItemView {
    const data = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
    const { parent, name } = this.parentFor(path, true);
    const now = isoNow();
    const fsModified = (opts.modified ?? new Date()).toISOString();
    const existingId = parent.children!.get(name.toLowerCase());
    let item: Item;
    if (existingId) {
      item = this.items.get(existingId)!;
      if (item.kind !== 'file') throw new Error(`emulator: ${path} is not a file`);
      this.addSize(item.parentId, data.length - item.size);
      Object.assign(item, {
        content: data,
        size: data.length,
        modified: now,
        fsModified,
        version: item.version + 1,
        versions: (item.versions ?? 0) + 1,
        contentVersion: (item.contentVersion ?? 1) + 1,
      });
    } else {
      item = {
        id: this.newId(),
        name,
        parentId: parent.id,
        kind: 'file',
        content: data,
        size: data.length,
        created: now,
        modified: now,
        fsCreated: now,
        fsModified,
        deleted: false,
        version: 1,
        versions: 1,
      };
      this.items.set(item.id, item);
      parent.children!.set(name.toLowerCase(), item.id);
      this.addSize(parent.id, data.length);
    }
    item.quickXor = quickXor(data);
    item.sha256 = createHash('sha256').update(data).digest('hex').toUpperCase();
    this.changed(item, true);
    return this.view(item);
  }

  mkdir(path: string, opts: { modified?: Date } = {}): ItemView {
    let cur = this.items.get(this.rootId)!;
    for (const seg of path.split('/')) {
      const id = cur.children!.get(seg.toLowerCase());
      if (id) {
        cur = this.items.get(id)!;
        if (!cur.children) throw new Error(`emulator: ${seg} in ${path} is a file`);
        continue;
      }
      const now = isoNow();
      const item: Item = {
        id: this.newId(),
        name: seg,
        parentId: cur.id,
        kind: 'folder',
        size: 0,
        created: now,
        modified: now,
        fsCreated: now,
        fsModified: (opts.modified ?? new Date()).toISOString(),
        deleted: false,
        children: new Map(),
        version: 1,
      };
      this.items.set(item.id, item);
      cur.children!.set(seg.toLowerCase(), item.id);
      this.changed(item, true);
      cur = item;
    }
    return this.view(cur);
  }

  /** A OneNote notebook: a `package` item holding section files. */
  addPackage(
    path: string,
    sections: Record<string, string | Buffer> = { 'Section 1.one': 'onenote section' },
  ): ItemView {
    const { parent, name } = this.parentFor(path, true);
    const now = isoNow();
    const item: Item = {
      id: this.newId(),
      name,
      parentId: parent.id,
      kind: 'package',
      size: 0,
      created: now,
      modified: now,
      fsCreated: now,
      fsModified: now,
      deleted: false,
      children: new Map(),
      version: 1,
    };
    this.items.set(item.id, item);
    parent.children!.set(name.toLowerCase(), item.id);
    this.changed(item, true);
    for (const [section, content] of Object.entries(sections)) this.write(`${path}/${section}`, content);
    return this.view(item);
  }

  /** A folder shared from another drive and added to this one ("Add to My files"): an item with a
   *  `remoteItem` facet that points into the other drive. */
  addShortcut(path: string, target: { driveId: string; id: string }): ItemView {
    const { parent, name } = this.parentFor(path, true);
    const now = isoNow();
    const item: Item = {
      id: this.newId(),
      name,
      parentId: parent.id,
      kind: 'remote',
      content: Buffer.from(JSON.stringify(target)),
      size: 0,
      created: now,
      modified: now,
      fsCreated: now,
      fsModified: now,
      deleted: false,
      version: 1,
    };
    this.items.set(item.id, item);
    parent.children!.set(name.toLowerCase(), item.id);
    this.changed(item, true);
    return this.view(item);
  }

  /** Deletes a file, or a folder with everything below it. Only the item itself is logged. */
  remove(path: string): void {
    const item = this.lookup(path);
    if (!item || item.kind === 'root') throw new Error(`emulator: no ${path}`);
    const parent = this.items.get(item.parentId!)!;
    parent.children!.delete(item.name.toLowerCase());
    this.addSize(parent.id, -item.size);
    const bury = (it: Item) => {
      it.deleted = true;
      it.version++;
      for (const c of it.children?.values() ?? []) bury(this.items.get(c)!);
    };
    bury(item);
    item.modified = isoNow();
    this.changed(item, true);
  }

  /** Moves and/or renames a file or folder. What a folder holds is not logged: delta does not repeat
   *  it when the folder moves. */
  move(from: string, to: string): void {
    const item = this.lookup(from);
    if (!item || item.kind === 'root') throw new Error(`emulator: no ${from}`);
    const { parent, name } = this.parentFor(to, true);
    if (parent.children!.has(name.toLowerCase()) && parent.children!.get(name.toLowerCase()) !== item.id)
      throw new Error(`emulator: ${to} exists`);
    const oldParent = this.items.get(item.parentId!)!;
    oldParent.children!.delete(item.name.toLowerCase());
    this.addSize(oldParent.id, -item.size);
    item.name = name;
    item.parentId = parent.id;
    parent.children!.set(name.toLowerCase(), item.id);
    this.addSize(parent.id, item.size);
    item.version++;
    this.changed(item, true);
  }

  rename(path: string, newName: string): void {
    const i = path.lastIndexOf('/');
    this.move(path, i < 0 ? newName : `${path.slice(0, i)}/${newName}`);
  }

  /** Changes a file's stored bytes without changing the hash and size Graph reports: every download
   *  gives the same wrong bytes (corruptNextDownloads() is the passing kind). */
  corrupt(path: string): void {
    const item = this.lookup(path);
    if (!item?.content || item.content.length === 0)
      throw new Error(`emulator: ${path} has no content to corrupt`);
    const c = Buffer.from(item.content);
    c[c.length >> 1] ^= 0xff;
    item.content = c;
  }

  /** Flags a file as infected: its downloads answer 403 with X-Virus-Infected. */
  flagVirus(path: string, name = 'Win32/EICAR_Test_File'): void {
    const item = this.lookup(path);
    if (!item || item.kind !== 'file') throw new Error(`emulator: no file ${path}`);
    item.virus = name;
  }

  /** Makes every delta token handed out so far unusable (410 resyncRequired). */
  invalidateCursors(): void {
    this.epoch++;
  }

  item(path: string): ItemView | undefined {
    const it = this.lookup(path);
    return it ? this.view(it) : undefined;
  }

  idOf(path: string): string {
    const it = this.lookup(path);
    if (!it) throw new Error(`emulator: no ${path}`);
    return it.id;
  }

  /** Every live path, folders included. */
  paths(): string[] {
    const out: string[] = [];
    const walk = (it: Item, prefix: string) => {
      for (const id of it.children?.values() ?? []) {
        const c = this.items.get(id)!;
        const p = prefix ? `${prefix}/${c.name}` : c.name;
        out.push(p);
        walk(c, p);
      }
    };
    walk(this.items.get(this.rootId)!, '');
    return out.sort();
  }

  // ---- internals ------------------------------------------------------------------------------

  private view(it: Item): ItemView {
    return {
      id: it.id,
      name: it.name,
      kind: it.kind,
      size: it.size,
      content: it.content,
      quickXorHash: it.quickXor,
      fileSystemInfo: { createdDateTime: it.fsCreated, lastModifiedDateTime: it.fsModified },
      versions: it.versions ?? 0,
    };
  }

  lookup(path: string, from: string = this.rootId): Item | undefined {
    let cur = this.items.get(from);
    if (path === '') return cur;
    for (const seg of path.split('/')) {
      const id = cur?.children?.get(seg.toLowerCase());
      if (!id) return undefined;
      cur = this.items.get(id);
    }
    return cur;
  }

  private parentFor(path: string, create: boolean): { parent: Item; name: string } {
    const i = path.lastIndexOf('/');
    const name = path.slice(i + 1);
    const parent =
      i < 0
        ? this.items.get(this.rootId)!
        : create
          ? (this.lookup(path.slice(0, i)) ?? (this.mkdir(path.slice(0, i)), this.lookup(path.slice(0, i))!))
          : this.lookup(path.slice(0, i));
    if (!parent?.children) throw new Error(`emulator: no folder for ${path}`);
    return { parent, name };
  }

  private addSize(folderId: string | undefined, delta: number): void {
    for (let id = folderId; id && delta !== 0;) {
      const f = this.items.get(id)!;
      f.size += delta;
      id = f.parentId;
    }
  }

  /** Logs a change, and the folders above (their size and time change too), as Graph's delta
   *  returns the parent chain of what changed. */
  changed(item: Item, withAncestors: boolean): void {
    this.log.push(item.id);
    if (!withAncestors || this.behaviour.parentChain === false) return;
    const now = item.modified;
    for (let id = item.parentId; id;) {
      const f = this.items.get(id)!;
      f.modified = now;
      f.version++;
      this.log.push(f.id);
      id = f.parentId;
    }
  }

  pathOf(it: Item): string {
    const names: string[] = [];
    for (
      let cur: Item | undefined = it;
      cur && cur.kind !== 'root';
      cur = cur.parentId ? this.items.get(cur.parentId) : undefined
    )
      names.push(cur.name);
    return names.reverse().join('/');
  }

  /** An item as Graph gives it: `listing` for delta and children, else a GET of the item. */
  json(it: Item, opts: { withPath?: boolean; listing?: boolean } = {}): Record<string, unknown> {
    const own = this.spell(it.id, opts.listing ? 'listing' : 'item');
    const parentSpelled = it.parentId
      ? this.spell(it.parentId, opts.listing ? 'listingParent' : 'item')
      : undefined;
    const parentReference = it.parentId
      ? {
          driveId: this.spelledId,
          driveType: this.driveType,
          id: parentSpelled,
          ...(opts.withPath
            ? {
                path: `/drives/${this.id}/root:${this.pathOf(this.items.get(it.parentId)!) ? '/' + this.pathOf(this.items.get(it.parentId)!) : ''}`,
              }
            : {}),
        }
      : { driveId: this.spelledId, driveType: this.driveType };
    if (it.deleted) {
      // Deletes omit cTag; Business omits name, Personal omits size (driveitem-delta remarks).
      return {
        id: own,
        deleted: { state: 'deleted' },
        parentReference,
        lastModifiedDateTime: it.modified,
        ...(this.personal ? { name: it.name } : { size: it.size }),
        ...(it.kind === 'file' ? { file: {} } : { folder: {} }),
      };
    }
    const out: Record<string, unknown> = {
      id: own,
      name: it.name,
      size: it.size,
      createdDateTime: it.created,
      lastModifiedDateTime: it.modified,
      eTag: `"{${it.id}},${it.version}"`,
      fileSystemInfo: { createdDateTime: it.fsCreated, lastModifiedDateTime: it.fsModified },
      parentReference,
    };
    // cTag: the content's tag, for files only (driveItem resource: not returned for folders).
    if (it.kind === 'file') out.cTag = `"c:{${it.id}},${it.contentVersion ?? 1}"`;
    if (it.kind === 'root') {
      out.root = {};
      out.folder = { childCount: it.children!.size };
    } else if (it.kind === 'folder') out.folder = { childCount: it.children!.size };
    else if (it.kind === 'package') {
      out.package = { type: 'oneNote' };
      if (this.oneNoteAsFolder) out.folder = { childCount: it.children!.size };
    } else if (it.kind === 'remote') {
      const target = JSON.parse(it.content!.toString()) as { driveId: string; id: string };
      out.remoteItem = {
        id: target.id,
        parentReference: { driveId: target.driveId, driveType: 'business' },
        folder: { childCount: 1 },
      };
    } else {
      const ext = /\.([a-z0-9]+)$/i.exec(it.name)?.[1]?.toLowerCase() ?? '';
      const h = this.behaviour.hashlessInListings;
      const hashless = opts.listing && (h === true || (typeof h === 'function' && h(this.pathOf(it))));
      out.file = {
        mimeType: MIME[ext] ?? 'application/octet-stream',
        hashes: hashless
          ? {}
          : {
              quickXorHash: it.quickXor,
              ...(this.personal && this.behaviour.sha256OnPersonal ? { sha256Hash: it.sha256 } : {}),
            },
      };
    }
    return out;
  }

  get oneNoteAsFolder(): boolean {
    return this.behaviour.oneNoteAsFolder ?? !this.personal;
  }

  // ---- delta ----------------------------------------------------------------------------------

  private enumerate(): number {
    const ids: string[] = [];
    const walk = (it: Item) => {
      ids.push(it.id);
      for (const c of it.children?.values() ?? []) walk(this.items.get(c)!);
    };
    walk(this.items.get(this.rootId)!);
    const n = ++this.enumSeq;
    this.enumerations.set(n, { ids, logPos: this.log.length });
    return n;
  }

  /** One page of delta for a token (undefined: a new enumeration). Returns undefined when the token is unusable. */
  deltaPage(
    tok: string | undefined,
    pageSize: number,
  ): { items: Item[]; next?: string; delta?: string } | undefined {
    if (tok === 'latest') return { items: [], delta: b64url({ e: this.epoch, c: this.log.length }) };
    let t: { e: number; c?: number; n?: number; o?: number };
    if (tok === undefined) t = { e: this.epoch, n: this.enumerate(), o: 0 };
    else {
      try {
        t = JSON.parse(Buffer.from(tok, 'base64url').toString('utf8'));
      } catch {
        return undefined;
      }
      if (t.e !== this.epoch) return undefined;
    }
    if (t.n !== undefined) {
      const en = this.enumerations.get(t.n);
      if (!en) return undefined;
      const start = t.o ?? 0;
      // Pages overlap by one item: Graph may repeat an item across pages.
      const from = Math.max(0, start - 1);
      const slice = en.ids.slice(from, start + pageSize);
      const items = slice.map((id) => this.items.get(id)!).filter((it) => !it.deleted);
      if (start + pageSize < en.ids.length)
        return { items, next: b64url({ e: this.epoch, n: t.n, o: start + pageSize }) };
      this.enumerations.delete(t.n);
      return { items, delta: b64url({ e: this.epoch, c: en.logPos }) };
    }
    const pos = t.c ?? 0;
    if (pos > this.log.length) return undefined;
    const end = Math.min(this.log.length, pos + pageSize);
    // The latest state of each item; an item changed twice in this page comes once, at its last place.
    const slice = this.log.slice(pos, end);
    const last = new Map<string, number>();
    slice.forEach((id, i) => last.set(id, i));
    const items = slice.filter((id, i) => last.get(id) === i).map((id) => this.items.get(id)!);
    if (end < this.log.length) return { items, next: b64url({ e: this.epoch, c: end }) };
    return { items, delta: b64url({ e: this.epoch, c: end }) };
  }
}

interface Site {
  id: string;
  hostname: string;
  path: string;
  displayName: string;
  drives: EmuDrive[];
}

interface UploadSession {
  id: string;
  drive: EmuDrive;
  parentId: string;
  name: string;
  conflict: string;
  fsModified?: string;
  total?: number;
  parts: Buffer[];
  received: number;
  expires: string;
}

interface DeviceCode {
  deviceCode: string;
  userCode: string;
  clientId: string;
  scopes: string[];
  approved: boolean;
  declined: boolean;
  expiresAt: number;
}

interface AccessToken {
  scopes: Set<string>;
  expiresAt: number;
  valid: boolean;
}

interface RefreshToken {
  clientId: string;
  granted: Set<string>;
  valid: boolean;
}

const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email']);
const PERSONAL_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';

/** A reply status that means: drop the connection without answering. */
const LOST = 0;

class HttpReply {
  constructor(
    readonly status: number,
    readonly body?: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

function graphError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): HttpReply {
  return new HttpReply(
    status,
    {
      error: {
        code,
        message,
        innerError: {
          date: isoNow(),
          'request-id': randomBytes(8).toString('hex'),
          'client-request-id': randomBytes(8).toString('hex'),
        },
      },
    },
    headers,
  );
}

function oauthError(
  status: number,
  error: string,
  description: string,
  codes: number[],
  suberror?: string,
): HttpReply {
  return new HttpReply(status, {
    error,
    error_description: description,
    error_codes: codes,
    timestamp: isoNow().replace('T', ' ').replace('Z', 'Z'),
    trace_id: randomBytes(8).toString('hex'),
    correlation_id: randomBytes(8).toString('hex'),
    ...(suberror ? { suberror } : {}),
  });
}

export class GraphEmulator {
  url = '';
  readonly drive: EmuDrive;
  readonly drives = new Map<string, EmuDrive>();
  readonly sites = new Map<string, Site>();
  /** Calls per route, failed ones included. */
  readonly calls: Record<string, number> = {};
  bytesDownloaded = 0;
  /** Requests to the download or upload host that carried an Authorization header (refused). */
  readonly authLeaks: string[] = [];
  /** Every refresh token issued, oldest first. */
  readonly refreshTokensIssued: string[] = [];
  readonly accessTokensIssued: string[] = [];
  /** The user codes of device code requests, oldest first. */
  readonly userCodes: string[] = [];

  private readonly server: http.Server;
  private readonly faults: Array<FaultOptions & { left: number }> = [];
  private cuts: Array<{ left: number; afterBytes?: number }> = [];
  private resyncs = 0;
  private rejections: Array<{ left: number; status: 400 | 404 }> = [];
  private repeats = 0;
  private corruptions = 0;
  private lostCommits = 0;
  private rateLimit?: { left: number; limit: number; remaining: number; reset: number };
  private readonly downloads = new Map<string, { drive: EmuDrive; itemId: string; expires: number }>();
  private readonly sessions = new Map<string, UploadSession>();
  private readonly deviceCodes = new Map<string, DeviceCode>();
  private readonly accessTokens = new Map<string, AccessToken>();
  private readonly refreshTokens = new Map<string, RefreshToken>();
  private readonly pageSize: number;
  private readonly user: { name: string; username: string; oid: string; tid: string };

  constructor(private readonly opts: GraphEmulatorOptions = {}) {
    const type = opts.driveType ?? 'personal';
    this.drive = this.addDrive(type, 'OneDrive');
    this.pageSize = opts.pageSize ?? 200;
    this.user = {
      name: opts.user?.name ?? 'Ada Example',
      username: opts.user?.username ?? (type === 'personal' ? 'ada@outlook.com' : 'ada@contoso.com'),
      oid: '00000000-0000-0000-66f3-3332eca7ea81',
      tid: type === 'personal' ? PERSONAL_TENANT : 'b3a4a5c6-1111-4222-8333-944455556666',
    };
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) {
          res.writeHead(500);
          res.end(String(e));
        } else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  addDrive(type: 'personal' | 'business' | 'documentLibrary', name: string): EmuDrive {
    // Personal drive ids were upper-case hex until mid-2025 (OneDrive/onedrive-api-docs#1902).
    const id =
      type === 'personal'
        ? randomBytes(8).toString('hex').toUpperCase()
        : `b!${randomBytes(24).toString('base64url')}`;
    const d = new EmuDrive(id, type, name, {
      parentChain: this.opts.parentChain,
      idCaseDrift: this.opts.idCaseDrift,
      sha256OnPersonal: this.opts.sha256OnPersonal,
      hashlessInListings: this.opts.hashlessInListings,
      oneNoteAsFolder: this.opts.oneNoteAsFolder,
    });
    this.drives.set(id, d);
    return d;
  }

  /** A SharePoint site ("contoso.sharepoint.com:/sites/finance") with document libraries by name; the
   *  first is the site's default library (GET /sites/{id}/drive), whatever its name: "Documents", or
   *  "Dokumente" on a German site. */
  addSite(
    site: string,
    libraries: string[] = ['Documents'],
  ): { id: string; libraries: Map<string, EmuDrive> } {
    const i = site.indexOf(':');
    const hostname = i < 0 ? site : site.slice(0, i);
    const path = i < 0 ? '' : site.slice(i + 1).replace(/^\/+|\/+$/g, '');
    const id = `${hostname},${randomBytes(16).toString('hex')},${randomBytes(16).toString('hex')}`;
    const drives = libraries.map((l) => this.addDrive('documentLibrary', l));
    const s: Site = { id, hostname, path, displayName: path.split('/').pop() || hostname, drives };
    this.sites.set(id, s);
    return { id, libraries: new Map(libraries.map((l, k) => [l, drives[k]])) };
  }

  // ---- fault injection ----------------------------------------------------------------------------

  /** The next `times` calls (to `route`, or any route) fail with `status`. */
  failNext(times: number, fault: FaultOptions): void {
    this.faults.push({ ...fault, left: times });
  }

  /** Forgets every fault still due. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** The next `times` downloads send `afterBytes` bytes (default: half) and then cut the connection. */
  cutNextDownloads(times: number, afterBytes?: number): void {
    this.cuts.push({ left: times, afterBytes });
  }

  /** The next `times` delta requests that carry a token answer 400 invalidRequest "Invalid API or
   *  resource" or 404 itemNotFound, as Graph has answered to its own delta links. */
  rejectDeltaLinks(times: number, status: 400 | 404 = 400): void {
    this.rejections.push({ left: times, status });
  }

  /** The next `times` delta requests that carry a token answer an empty page whose nextLink is the
   *  link just asked for (Infinity: for ever). */
  repeatDelta(times: number): void {
    this.repeats = times;
  }

  /** The next `times` downloads flip a byte in the middle (a corruption on the way, not at rest). */
  corruptNextDownloads(times: number): void {
    this.corruptions += times;
  }

  /** The last fragment of the next upload session commits the file, but its answer is lost (the
   *  connection drops); the session is gone, so the fragment sent again gets 404. */
  loseNextCommitAnswer(): void {
    this.lostCommits++;
  }

  /** The next `times` Graph answers carry SharePoint's RateLimit-Limit/Remaining/Reset headers. */
  rateLimitNext(times: number, h: { limit: number; remaining: number; reset: number }): void {
    this.rateLimit = { left: times, ...h };
  }

  /** The next `times` delta requests that carry a token answer 410 resyncRequired. */
  resyncNextDelta(times = 1): void {
    this.resyncs += times;
  }

  /** Every access token issued so far expires now (Graph answers 401 InvalidAuthenticationToken). */
  expireAccessTokens(): void {
    for (const t of this.accessTokens.values()) t.expiresAt = 0;
  }

  /** The user revoked the sign-in (or changed the password): refresh tokens and access tokens die. */
  revokeSignIn(): void {
    for (const t of this.refreshTokens.values()) t.valid = false;
    for (const t of this.accessTokens.values()) t.valid = false;
  }

  /** The user entered the code on the sign-in page. */
  approve(userCode: string): void {
    const dc = [...this.deviceCodes.values()].find((d) => d.userCode === userCode);
    if (!dc) throw new Error(`emulator: no device code ${userCode}`);
    dc.approved = true;
  }

  decline(userCode: string): void {
    const dc = [...this.deviceCodes.values()].find((d) => d.userCode === userCode);
    if (!dc) throw new Error(`emulator: no device code ${userCode}`);
    dc.declined = true;
  }

  resetCounters(): void {
    for (const k of Object.keys(this.calls)) delete this.calls[k];
    this.bytesDownloaded = 0;
  }

  count(route: GraphRoute): number {
    return this.calls[route] ?? 0;
  }

  // ---- HTTP ---------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://emulator');
    const p = url.pathname;
    let reply: HttpReply | undefined;
    if (p.startsWith('/dl/')) return this.download(req, res, decodeURIComponent(p.slice(4)));
    if (p.startsWith('/up/'))
      reply =
        this.withFault('uploadFragment', req) ??
        this.uploadFragment(req, decodeURIComponent(p.slice(4)), body);
    else {
      const auth = /^\/([^/]+)\/oauth2\/v2\.0\/(devicecode|token)$/.exec(p);
      if (auth) {
        const route = auth[2] as GraphRoute;
        reply =
          this.withFault(route, req) ??
          (route === 'devicecode'
            ? this.deviceCode(new URLSearchParams(body.toString('utf8')))
            : this.tokenGrant(new URLSearchParams(body.toString('utf8'))));
      } else if (p.startsWith('/v1.0/')) reply = this.graph(req, url, body);
      else reply = graphError(404, 'itemNotFound', 'No such route');
    }
    this.send(res, reply);
  }

  private send(res: http.ServerResponse, reply: HttpReply): void {
    if (reply.status === LOST) {
      res.socket?.destroy();
      return;
    }
    if (this.rateLimit && this.rateLimit.left > 0) {
      const r = this.rateLimit;
      r.left--;
      reply = new HttpReply(reply.status, reply.body, {
        ...reply.headers,
        'ratelimit-limit': String(r.limit),
        'ratelimit-remaining': String(r.remaining),
        'ratelimit-reset': String(r.reset),
      });
    }
    if (reply.body === undefined) {
      res.writeHead(reply.status, reply.headers);
      res.end();
      return;
    }
    const text = JSON.stringify(reply.body);
    res.writeHead(reply.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...reply.headers,
    });
    res.end(text);
  }

  private countCall(route: GraphRoute): void {
    this.calls[route] = (this.calls[route] ?? 0) + 1;
  }

  /** Counts the call, and answers with an injected fault when one is due. */
  private withFault(route: GraphRoute, _req: http.IncomingMessage): HttpReply | undefined {
    this.countCall(route);
    const i = this.faults.findIndex(
      (f) =>
        f.left > 0 &&
        (f.route === undefined || (Array.isArray(f.route) ? f.route.includes(route) : f.route === route)),
    );
    if (i < 0) return undefined;
    const f = this.faults[i];
    if (--f.left === 0) this.faults.splice(i, 1);
    const headers: Record<string, string> =
      f.retryAfter === undefined ? {} : { 'retry-after': String(f.retryAfter) };
    if (route === 'token' || route === 'devicecode') {
      return new HttpReply(
        f.status,
        {
          error: 'temporarily_unavailable',
          error_description: 'AADSTS90033: A transient error has occurred. Please try again.',
          error_codes: [90033],
        },
        headers,
      );
    }
    if (f.status === 429)
      return graphError(429, 'activityLimitReached', 'The request has been throttled', headers);
    if (f.status === 503)
      return graphError(
        503,
        'serviceNotAvailable',
        'The service is not available. Try the request again after a delay.',
        headers,
      );
    return graphError(f.status, 'generalException', 'An unspecified error has occurred.', headers);
  }

  private linkHost(req: http.IncomingMessage): string {
    const fwd = req.headers['x-forwarded-host'];
    return (Array.isArray(fwd) ? fwd[0] : fwd) ?? this.opts.graphHost ?? 'graph.emu.test';
  }

  private checkToken(req: http.IncomingMessage): AccessToken | HttpReply {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer (.+)$/.exec(h);
    const t = m ? this.accessTokens.get(m[1]) : undefined;
    if (!t || !t.valid || t.expiresAt <= Date.now()) {
      return graphError(
        401,
        'InvalidAuthenticationToken',
        m ? 'Access token has expired or is not yet valid.' : 'Access token is empty.',
      );
    }
    return t;
  }

  private graph(req: http.IncomingMessage, url: URL, body: Buffer): HttpReply {
    const method = req.method ?? 'GET';
    // drives('{id}')/items('{id}')/microsoft.graph.delta(…) is the OData spelling of drives/{id}/items/{id}/delta(…).
    const rest = url.pathname
      .slice('/v1.0'.length)
      .replace(/\/(drives|items)\((?:'|%27)(.*?)(?:'|%27)\)/g, '/$1/$2')
      .replace(/\/microsoft\.graph\.delta(?=\(|%28|$)/, '/delta');
    const route = this.routeOf(method, rest);
    const fault = this.withFault(route, req);
    if (fault) return fault;
    const tok = this.checkToken(req);
    if (tok instanceof HttpReply) return tok;
    if (method !== 'GET' && !tok.scopes.has('files.readwrite.all'))
      return graphError(
        403,
        'accessDenied',
        'Access denied: the token does not allow writing (Files.ReadWrite.All).',
      );

    const site = /^\/sites\/([^/]+?)(?::(\/.*?))?:?(\/drives|\/drive)?$/.exec(rest);
    if (site) {
      if (!tok.scopes.has('sites.read.all'))
        return graphError(403, 'accessDenied', 'Access denied: Sites.Read.All is needed.');
      return this.siteRoute(
        decodeURIComponent(site[1]),
        site[2] === undefined ? undefined : decodeURIComponent(site[2]),
        site[3] === '/drives' ? 'drives' : site[3] === '/drive' ? 'drive' : undefined,
      );
    }
    const dm = /^\/(?:me\/drive|drives\/([^/]+))(\/.*)?$/.exec(rest);
    if (!dm) return graphError(400, 'invalidRequest', 'Invalid API or resource');
    const drive = dm[1] === undefined ? this.drive : this.findDrive(decodeURIComponent(dm[1]));
    if (!drive) return graphError(404, 'itemNotFound', 'The drive could not be found.');
    const tail = dm[2] ?? '';
    if (tail === '')
      return new HttpReply(200, {
        id: drive.spelledId,
        driveType: drive.driveType,
        name: drive.name,
        owner: { user: { displayName: this.user.name } },
      });
    return this.itemRoute(req, url, drive, tail, body);
  }

  /** A drive by id; personal drive ids in any casing. */
  private findDrive(id: string): EmuDrive | undefined {
    return (
      this.drives.get(id) ?? [...this.drives.values()].find((d) => d.personal && d.id === id.toUpperCase())
    );
  }

  private routeOf(method: string, rest: string): GraphRoute {
    if (rest.startsWith('/sites/'))
      return rest.endsWith('/drives') ? 'siteDrives' : rest.endsWith('/drive') ? 'siteDrive' : 'site';
    if (/\/delta(\(|$|\?)/.test(rest) || rest.includes('/delta(')) return 'delta';
    if (rest.endsWith('/createUploadSession')) return 'createUploadSession';
    if (rest.endsWith('/content')) return method === 'PUT' ? 'upload' : 'content';
    if (rest.endsWith('/children')) return method === 'POST' ? 'createFolder' : 'children';
    if (method === 'PATCH') return 'patch';
    if (/^\/(me\/drive|drives\/[^/]+)$/.test(rest)) return 'drive';
    return 'item';
  }

  private siteRoute(
    hostOrId: string,
    path: string | undefined,
    drives: 'drives' | 'drive' | undefined,
  ): HttpReply {
    let site: Site | undefined;
    if (path !== undefined || !hostOrId.includes(',')) {
      const want = (path ?? '').replace(/^\/+|\/+$/g, '').toLowerCase();
      site = [...this.sites.values()].find(
        (s) => s.hostname.toLowerCase() === hostOrId.toLowerCase() && s.path.toLowerCase() === want,
      );
    } else site = this.sites.get(hostOrId);
    if (!site) return graphError(404, 'itemNotFound', 'Requested site could not be found');
    const webUrl = `https://${site.hostname}${site.path ? '/' + site.path : ''}`;
    const driveJson = (d: EmuDrive) => ({
      id: d.id,
      name: d.name,
      driveType: d.driveType,
      webUrl: `${webUrl}/${encodeURIComponent(d === site.drives[0] ? 'Shared Documents' : d.name)}`,
    });
    if (drives === 'drive') return new HttpReply(200, driveJson(site.drives[0]));
    if (!drives)
      return new HttpReply(200, {
        id: site.id,
        name: site.displayName,
        displayName: site.displayName,
        webUrl,
      });
    return new HttpReply(200, { value: site.drives.map(driveJson) });
  }

  private itemRoute(
    req: http.IncomingMessage,
    url: URL,
    drive: EmuDrive,
    tail: string,
    body: Buffer,
  ): HttpReply {
    const method = req.method ?? 'GET';
    // tail: /root, /items/{id}, then optionally :/{path}: and then /{action}
    let base: string;
    let rel: string | undefined;
    let action: string;
    const colon = tail.indexOf(':');
    if (colon >= 0) {
      base = tail.slice(0, colon);
      const after = tail.slice(colon + 1);
      const end = after.indexOf(':');
      rel = end >= 0 ? after.slice(0, end) : after;
      action = end >= 0 ? after.slice(end + 1) : '';
    } else {
      const m = /^(\/root|\/items\/[^/]+)(\/.*)?$/.exec(tail);
      if (!m) return graphError(400, 'invalidRequest', `Unsupported path ${tail}`);
      base = m[1];
      action = m[2] ?? '';
    }
    const baseItem =
      base === '/root'
        ? drive.items.get(drive.rootId)
        : base.startsWith('/items/')
          ? drive.get(decodeURIComponent(base.slice(7)))
          : undefined;
    if (!baseItem || baseItem.deleted)
      return graphError(404, 'itemNotFound', 'The resource could not be found.');
    const relPath =
      rel === undefined
        ? undefined
        : rel
            .split('/')
            .filter((s) => s !== '')
            .map(decodeURIComponent)
            .join('/');
    const conflict = url.searchParams.get('@microsoft.graph.conflictBehavior') ?? undefined;

    if (action.startsWith('/delta')) {
      if (baseItem.id !== drive.rootId)
        return graphError(400, 'invalidRequest', 'delta is only supported on the root folder');
      const fn = /^\/delta\(token='([^']*)'\)$/.exec(decodeURIComponent(action));
      const tok = fn ? fn[1] : (url.searchParams.get('token') ?? undefined);
      return this.delta(req, url, drive, tok);
    }
    if (action === '/createUploadSession' && method === 'POST')
      return this.createSession(req, drive, baseItem, relPath, body);
    if (action === '/content' && method === 'PUT')
      return this.putContent(drive, baseItem, relPath, body, conflict ?? 'replace');

    const target = relPath === undefined ? baseItem : drive.lookup(relPath, baseItem.id);
    if (!target || target.deleted) return graphError(404, 'itemNotFound', 'The resource could not be found.');
    if (action === '' && method === 'GET') return new HttpReply(200, drive.json(target, { withPath: true }));
    if (action === '' && method === 'PATCH') return this.patch(drive, target, body);
    if (action === '/content' && method === 'GET') {
      // A notebook (package) has no content of its own, even where it is a folder.
      if (target.kind !== 'file') return graphError(404, 'itemNotFound', 'The item has no content.');
      const t = randomBytes(24).toString('base64url');
      this.downloads.set(t, { drive, itemId: target.id, expires: Date.now() + 3600_000 });
      return new HttpReply(302, undefined, { location: `https://dl.emu.test/dl/${t}` });
    }
    if (action === '/children' && method === 'GET') return this.children(req, url, drive, target);
    if (action === '/children' && method === 'POST') return this.createFolder(drive, target, body);
    return graphError(400, 'invalidRequest', `Unsupported ${method} ${tail}`);
  }

  private delta(req: http.IncomingMessage, url: URL, drive: EmuDrive, tok: string | undefined): HttpReply {
    const host = this.linkHost(req);
    const select = url.searchParams.get('$select');
    const q = select ? `$select=${select}&` : '';
    const fresh = `https://${host}/v1.0/drives/${drive.id}/root/delta${select ? `?$select=${select}` : ''}`;
    if (tok !== undefined && this.resyncs > 0) {
      this.resyncs--;
      return graphError(
        410,
        'resyncRequired',
        "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
        { location: fresh },
      );
    }
    const rejection = tok !== undefined ? this.rejections.find((r) => r.left > 0) : undefined;
    if (rejection) {
      rejection.left--;
      return rejection.status === 404
        ? graphError(404, 'itemNotFound', 'The resource could not be found.')
        : graphError(400, 'invalidRequest', 'Invalid API or resource');
    }
    if (tok !== undefined && this.repeats > 0) {
      this.repeats--;
      // The very link asked for, again, with nothing in the page.
      return new HttpReply(200, {
        '@odata.context': `https://${host}/v1.0/$metadata#Collection(driveItem)`,
        value: [],
        '@odata.nextLink': `https://${host}${req.url ?? ''}`,
      });
    }
    const top = Number(url.searchParams.get('$top')) || this.pageSize;
    const page = drive.deltaPage(tok, top);
    if (!page)
      return graphError(
        410,
        'resyncRequired',
        "Resync required. Replace any local items with the server's version (including deletes).",
        { location: fresh },
      );
    const out: Record<string, unknown> = {
      '@odata.context': `https://${host}/v1.0/$metadata#Collection(driveItem)`,
      value: page.items.map((it) => drive.json(it, { listing: true })),
    };
    const sel = select ? `?$select=${select}` : '';
    const form = this.opts.deltaLinkForm ?? 'query';
    const link = (t: string, query: boolean) =>
      form === 'drives'
        ? `https://${host}/v1.0/drives('${drive.spelledId}')/root/microsoft.graph.delta(token='${t}')${sel}`
        : form === 'items'
          ? `https://${host}/v1.0/drives('${drive.spelledId}')/items('${drive.rootId}')/microsoft.graph.delta(token='${t}')${sel}`
          : query
            ? `https://${host}/v1.0/drives/${drive.id}/root/delta?${q}token=${t}`
            : `https://${host}/v1.0/drives/${drive.id}/root/delta(token='${t}')${sel}`;
    // By default next links in the function form, delta links in the query form: both are documented.
    if (page.next) out['@odata.nextLink'] = link(page.next, false);
    else out['@odata.deltaLink'] = link(page.delta!, true);
    return new HttpReply(200, out);
  }

  private children(req: http.IncomingMessage, url: URL, drive: EmuDrive, folder: Item): HttpReply {
    if (!folder.children) return graphError(400, 'invalidRequest', 'The item is not a folder.');
    const ids = [...folder.children.values()];
    const skip = Number(url.searchParams.get('$skiptoken') ?? 0);
    const top = Number(url.searchParams.get('$top')) || this.pageSize;
    const value = ids
      .slice(skip, skip + top)
      .map((id) => drive.json(drive.items.get(id)!, { listing: true }));
    const out: Record<string, unknown> = { value };
    if (skip + top < ids.length)
      out['@odata.nextLink'] =
        `https://${this.linkHost(req)}/v1.0/drives/${drive.id}/items/${folder.id}/children?$skiptoken=${skip + top}`;
    return new HttpReply(200, out);
  }

  private createFolder(drive: EmuDrive, parent: Item, body: Buffer): HttpReply {
    const b = JSON.parse(body.toString('utf8') || '{}') as {
      name?: string;
      folder?: unknown;
      '@microsoft.graph.conflictBehavior'?: string;
    };
    if (!b.name || !parent.children)
      return graphError(400, 'invalidRequest', 'A name and a parent folder are needed.');
    if (
      parent.children.has(b.name.toLowerCase()) &&
      (b['@microsoft.graph.conflictBehavior'] ?? 'fail') === 'fail'
    ) {
      return graphError(409, 'nameAlreadyExists', 'The specified item name already exists.');
    }
    const parentPath = drive.pathOf(parent);
    const view = drive.mkdir(parentPath ? `${parentPath}/${b.name}` : b.name);
    return new HttpReply(201, drive.json(drive.items.get(view.id)!));
  }

  private patch(drive: EmuDrive, item: Item, body: Buffer): HttpReply {
    const b = JSON.parse(body.toString('utf8') || '{}') as {
      name?: string;
      parentReference?: { id?: string };
      fileSystemInfo?: { lastModifiedDateTime?: string; createdDateTime?: string };
    };
    // Business and SharePoint keep a version of their own for a changed fileSystemInfo
    // (OneDrive/onedrive-api-docs#1378: "expected behavior"); Personal does not.
    if (b.fileSystemInfo && item.kind === 'file' && !drive.personal) item.versions = (item.versions ?? 0) + 1;
    if (b.fileSystemInfo?.lastModifiedDateTime)
      item.fsModified = new Date(b.fileSystemInfo.lastModifiedDateTime).toISOString();
    if (b.fileSystemInfo?.createdDateTime)
      item.fsCreated = new Date(b.fileSystemInfo.createdDateTime).toISOString();
    if (b.name || b.parentReference?.id) {
      const parent = b.parentReference?.id
        ? drive.items.get(b.parentReference.id)
        : drive.items.get(item.parentId!);
      if (!parent) return graphError(404, 'itemNotFound', 'The parent could not be found.');
      const parentPath = drive.pathOf(parent);
      const name = b.name ?? item.name;
      drive.move(drive.pathOf(item), parentPath ? `${parentPath}/${name}` : name);
    } else {
      item.version++;
      drive.changed(item, false);
    }
    return new HttpReply(200, drive.json(item));
  }

  /** Creates or replaces a file's content; the conflict behaviour decides what an existing name does. */
  private commitFile(
    drive: EmuDrive,
    parent: Item,
    name: string,
    content: Buffer,
    conflict: string,
    fsModified?: string,
  ): HttpReply {
    if (!parent.children) return graphError(400, 'invalidRequest', 'The parent is not a folder.');
    const existing = parent.children.get(name.toLowerCase());
    if (existing && conflict === 'fail')
      return graphError(409, 'nameAlreadyExists', 'The specified item name already exists.');
    let finalName = name;
    if (existing && conflict === 'rename') {
      for (let k = 1; parent.children.has(finalName.toLowerCase()); k++)
        finalName = name.replace(/(\.[^.]*)?$/, ` ${k}$1`);
    }
    const parentPath = drive.pathOf(parent);
    const path = parentPath ? `${parentPath}/${finalName}` : finalName;
    const view = drive.write(path, content, { modified: fsModified ? new Date(fsModified) : undefined });
    return new HttpReply(
      existing && conflict === 'replace' ? 200 : 201,
      drive.json(drive.items.get(view.id)!),
    );
  }

  private putContent(
    drive: EmuDrive,
    base: Item,
    relPath: string | undefined,
    body: Buffer,
    conflict: string,
  ): HttpReply {
    if (relPath === undefined) {
      if (base.kind !== 'file') return graphError(400, 'invalidRequest', 'The item is not a file.');
      return this.commitFile(drive, drive.items.get(base.parentId!)!, base.name, body, 'replace');
    }
    const i = relPath.lastIndexOf('/');
    const parent = i < 0 ? base : drive.lookup(relPath.slice(0, i), base.id);
    if (!parent || parent.deleted)
      return graphError(404, 'itemNotFound', 'The parent folder could not be found.');
    return this.commitFile(drive, parent, relPath.slice(i + 1), body, conflict);
  }

  private createSession(
    _req: http.IncomingMessage,
    drive: EmuDrive,
    base: Item,
    relPath: string | undefined,
    body: Buffer,
  ): HttpReply {
    const b = JSON.parse(body.toString('utf8') || '{}') as {
      item?: {
        '@microsoft.graph.conflictBehavior'?: string;
        name?: string;
        fileSystemInfo?: { lastModifiedDateTime?: string };
      };
    };
    let parent: Item | undefined;
    let name: string;
    if (relPath === undefined) {
      if (base.kind !== 'file') return graphError(400, 'invalidRequest', 'Name the file to upload.');
      parent = drive.items.get(base.parentId!);
      name = base.name;
    } else {
      const i = relPath.lastIndexOf('/');
      parent = i < 0 ? base : drive.lookup(relPath.slice(0, i), base.id);
      name = relPath.slice(i + 1);
    }
    if (!parent || parent.deleted || !parent.children)
      return graphError(404, 'itemNotFound', 'The parent folder could not be found.');
    const conflict = b.item?.['@microsoft.graph.conflictBehavior'] ?? 'replace';
    if (conflict === 'fail' && parent.children.has(name.toLowerCase()))
      return graphError(409, 'nameAlreadyExists', 'The specified item name already exists.');
    const id = randomBytes(16).toString('base64url');
    const expires = new Date(Date.now() + 3600_000).toISOString();
    this.sessions.set(id, {
      id,
      drive,
      parentId: parent.id,
      name,
      conflict,
      fsModified: b.item?.fileSystemInfo?.lastModifiedDateTime,
      parts: [],
      received: 0,
      expires,
    });
    return new HttpReply(200, {
      uploadUrl: `https://up.emu.test/up/${id}`,
      expirationDateTime: expires,
      nextExpectedRanges: ['0-'],
    });
  }

  private uploadFragment(req: http.IncomingMessage, id: string, body: Buffer): HttpReply {
    if (req.headers.authorization) {
      this.authLeaks.push(`upload ${req.method}`);
      return graphError(401, 'unauthenticated', 'Do not send an Authorization header to the upload URL.');
    }
    const s = this.sessions.get(id);
    if (!s) return graphError(404, 'itemNotFound', 'The upload session was not found.');
    const status = () => ({ expirationDateTime: s.expires, nextExpectedRanges: [`${s.received}-`] });
    if (req.method === 'GET') return new HttpReply(200, status());
    if (req.method === 'DELETE') {
      this.sessions.delete(id);
      return new HttpReply(204);
    }
    if (req.method !== 'PUT') return graphError(405, 'invalidRequest', 'Method not allowed.');
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(req.headers['content-range'] ?? ''));
    if (!m) return graphError(400, 'invalidRequest', 'Content-Range is required: bytes start-end/total.');
    const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (s.total !== undefined && s.total !== total)
      return graphError(400, 'invalidRequest', 'The total size changed between fragments.');
    if (end - start + 1 !== body.length)
      return graphError(400, 'invalidRequest', 'Content-Range does not match the body length.');
    if (start !== s.received)
      return graphError(
        416,
        'invalidRange',
        `The fragment does not start at the next expected byte ${s.received}.`,
      );
    if (body.length >= 60 * 1024 * 1024)
      return graphError(413, 'requestTooLarge', 'A fragment must be smaller than 60 MiB.');
    if (end + 1 < total && body.length % (320 * 1024) !== 0)
      return graphError(400, 'invalidRequest', 'A fragment must be a multiple of 320 KiB, except the last.');
    s.total = total;
    s.parts.push(Buffer.from(body));
    s.received = end + 1;
    if (s.received < total) return new HttpReply(202, status());
    this.sessions.delete(id);
    const parent = s.drive.items.get(s.parentId);
    if (!parent || parent.deleted) return graphError(404, 'itemNotFound', 'The parent folder was deleted.');
    const committed = this.commitFile(
      s.drive,
      parent,
      s.name,
      Buffer.concat(s.parts),
      s.conflict,
      s.fsModified,
    );
    if (this.lostCommits > 0 && committed.status < 300) {
      this.lostCommits--;
      return new HttpReply(LOST);
    }
    return committed;
  }

  /** The bytes a download of a file gives (what a backup must hold), which rewriteOnDownload makes
   *  differ from the bytes listed. */
  served(drive: EmuDrive, path: string): Buffer {
    const item = drive.lookup(path);
    if (!item?.content) throw new Error(`emulator: no file ${path}`);
    return this.servedContent(item);
  }

  private servedContent(item: Item): Buffer {
    if (!this.opts.rewriteOnDownload?.test(item.name)) return item.content!;
    // SharePoint adds its own metadata to the file on the way out: more bytes, another hash, every time the same.
    return Buffer.concat([
      item.content!,
      Buffer.from(`<sp:meta item="${item.id}" v="${item.contentVersion ?? 1}"/>`),
    ]);
  }

  private download(req: http.IncomingMessage, res: http.ServerResponse, t: string): void {
    const fault = this.withFault('download', req);
    if (fault) return this.send(res, fault);
    if (req.headers.authorization) {
      this.authLeaks.push('download');
      return this.send(
        res,
        graphError(
          401,
          'unauthenticated',
          'The download URL is pre-authenticated: do not send an Authorization header.',
        ),
      );
    }
    const d = this.downloads.get(t);
    if (!d || d.expires < Date.now())
      return this.send(res, graphError(401, 'unauthenticated', 'The download URL has expired.'));
    const item = d.drive.items.get(d.itemId);
    if (!item || item.deleted || !item.content)
      return this.send(res, graphError(404, 'itemNotFound', 'The resource could not be found.'));
    if (item.virus)
      return this.send(
        res,
        graphError(403, 'malwareDetected', 'Malware detected', {
          'x-virus-infected': item.virus,
          'x-clienterrorcode': 'VirusError',
        }),
      );
    let content = this.servedContent(item);
    if (this.corruptions > 0 && content.length > 0) {
      this.corruptions--;
      content = Buffer.from(content);
      content[content.length >> 1] ^= 0xff;
    }
    let start = 0;
    let end = content.length - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
    };
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), content.length - 1) : content.length - 1;
      if (start >= content.length && content.length > 0) {
        res.writeHead(416, { 'content-range': `bytes */${content.length}` });
        res.end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${content.length}`;
    }
    const slice = content.subarray(start, end + 1);
    headers['content-length'] = slice.length;
    const cut = this.cuts.find((c) => c.left > 0);
    if (cut && slice.length > 1) {
      if (--cut.left === 0) this.cuts = this.cuts.filter((c) => c.left > 0);
      const n = Math.min(slice.length - 1, cut.afterBytes ?? slice.length >> 1);
      res.writeHead(status, headers);
      this.bytesDownloaded += n;
      res.write(slice.subarray(0, n), () => res.socket?.destroy());
      return;
    }
    res.writeHead(status, headers);
    this.bytesDownloaded += slice.length;
    res.end(slice);
  }

  // ---- identity platform ----------------------------------------------------------------------

  private deviceCode(form: URLSearchParams): HttpReply {
    const clientId = form.get('client_id');
    if (!clientId)
      return oauthError(
        400,
        'invalid_request',
        "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        [900144],
      );
    const scopes = (form.get('scope') ?? '').split(/\s+/).filter(Boolean);
    const deviceCode = token('dc-');
    const userCode = randomBytes(5).toString('hex').toUpperCase().slice(0, 9);
    this.deviceCodes.set(deviceCode, {
      deviceCode,
      userCode,
      clientId,
      scopes,
      approved: false,
      declined: false,
      expiresAt: Date.now() + 900_000,
    });
    this.userCodes.push(userCode);
    return new HttpReply(200, {
      user_code: userCode,
      device_code: deviceCode,
      verification_uri: 'https://microsoft.com/devicelogin',
      expires_in: 900,
      interval: this.opts.deviceCodeInterval ?? 0,
      message: `To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ${userCode} to authenticate.`,
    });
  }

  private tokenGrant(form: URLSearchParams): HttpReply {
    const grant = form.get('grant_type');
    const clientId = form.get('client_id') ?? '';
    const requested = (form.get('scope') ?? '').split(/\s+/).filter(Boolean);
    if (grant === 'device_code' || grant === 'urn:ietf:params:oauth:grant-type:device_code') {
      const dc = this.deviceCodes.get(form.get('device_code') ?? '');
      if (!dc || dc.clientId !== clientId)
        return oauthError(
          400,
          'invalid_grant',
          "AADSTS70000: The provided value for the input parameter 'device_code' is not valid.",
          [70000],
        );
      if (dc.expiresAt < Date.now())
        return oauthError(
          400,
          'expired_token',
          "AADSTS70020: The provided value for the input parameter 'device_code' is expired.",
          [70020],
        );
      if (dc.declined) {
        this.deviceCodes.delete(dc.deviceCode);
        return oauthError(
          400,
          'authorization_declined',
          'AADSTS70019: The user declined the sign-in.',
          [70019],
        );
      }
      if (!dc.approved) {
        if (this.opts.autoApprove) dc.approved = true;
        return oauthError(
          400,
          'authorization_pending',
          'AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.',
          [70016],
        );
      }
      this.deviceCodes.delete(dc.deviceCode);
      return this.issue(
        clientId,
        new Set([...dc.scopes, ...requested].map((s) => s.toLowerCase())),
        requested.length ? requested : dc.scopes,
      );
    }
    if (grant === 'refresh_token') {
      const rtValue = form.get('refresh_token') ?? '';
      const rt = this.refreshTokens.get(rtValue);
      if (!rt || !rt.valid || rt.clientId !== clientId) {
        return oauthError(
          400,
          'invalid_grant',
          'AADSTS700082: The refresh token has expired due to inactivity or was revoked.',
          [700082],
        );
      }
      const missing = requested.filter(
        (s) => !OIDC_SCOPES.has(s.toLowerCase()) && !rt.granted.has(s.toLowerCase()),
      );
      if (missing.length > 0) {
        return oauthError(
          400,
          'invalid_grant',
          `AADSTS65001: The user or administrator has not consented to use the application for ${missing.join(' ')}.`,
          [65001],
          'consent_required',
        );
      }
      // Rotation: the refresh token used is spent; the new one carries the same grant.
      rt.valid = false;
      return this.issue(clientId, rt.granted, requested);
    }
    return oauthError(
      400,
      'unsupported_grant_type',
      `AADSTS70003: The app requested an unsupported grant type '${grant}'.`,
      [70003],
    );
  }

  private issue(clientId: string, granted: Set<string>, echoScopes: string[]): HttpReply {
    const lifetime = this.opts.accessTokenLifetime ?? 3600;
    const at = token('at-');
    const rt = token('rt-');
    const scopes = new Set([...echoScopes].map((s) => s.toLowerCase()));
    this.accessTokens.set(at, { scopes, expiresAt: Date.now() + lifetime * 1000, valid: true });
    this.refreshTokens.set(rt, { clientId, granted, valid: true });
    this.accessTokensIssued.push(at);
    this.refreshTokensIssued.push(rt);
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      aud: clientId,
      iss: `https://login.microsoftonline.com/${this.user.tid}/v2.0`,
      iat: now,
      nbf: now,
      exp: now + 3600,
      name: this.user.name,
      preferred_username: this.user.username,
      oid: this.user.oid,
      sub: 'emulated-subject',
      tid: this.user.tid,
      ver: '2.0',
    };
    const idToken = `${b64url({ typ: 'JWT', alg: 'none' })}.${b64url(claims)}.`;
    return new HttpReply(200, {
      token_type: 'Bearer',
      scope: echoScopes.join(' '),
      expires_in: lifetime,
      ext_expires_in: lifetime,
      access_token: at,
      refresh_token: rt,
      id_token: idToken,
      client_info: b64url({ uid: this.user.oid, utid: this.user.tid }),
    });
  }
}

export async function startGraphEmulator(opts: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const emu = new GraphEmulator(opts);
  await emu.listen();
  return emu;
}
