import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dropboxContentHash } from '../../src/providers/dropbox/content-hash.js';
import { DropboxNamespace, type Metadata } from './dropbox-tree.js';

export { DropboxNamespace, dbxTime, type DropboxNode, type NamespaceOptions } from './dropbox-tree.js';

/**
 * An HTTP emulator of the Dropbox API v2, for tests driven through the real SDK (api-brief §1.10):
 * OAuth (PKCE code exchange, refresh, revocation), list_folder / continue with paging, cursors and
 * resets, download with Range and Dropbox-API-Result, upload and upload sessions, get_metadata,
 * create_folder_v2, users/get_current_account with root_info, Dropbox-API-Path-Root and
 * Dropbox-API-Select-User, and the documented errors (401 expired/invalid token, 409 endpoint errors,
 * 422 path root errors, 429 with Retry-After). Faults can be injected per route.
 */

export type Fault =
  /** Answer with this status: 429 as too_many_requests with Retry-After, 503 with Retry-After, else text. */
  | { kind: 'status'; status: number; retryAfter?: number }
  /** Close the connection: before answering, or (downloads) after `afterBytes` bytes of the body. */
  | { kind: 'cut'; afterBytes?: number }
  /** Do the work, then close the connection instead of answering (the client never hears of it). */
  | { kind: 'drop-response' }
  /** list_folder/continue: 409 reset. */
  | { kind: 'reset' }
  /** list_folder/continue: 400, the cursor is not accepted. */
  | { kind: 'bad-cursor' }
  /** files/download: flip one byte of the body; Dropbox-API-Result stays right. */
  | { kind: 'corrupt' }
  /** 401 expired_access_token, whatever the token. */
  | { kind: 'expired-token' };

export interface DropboxEmulatorOptions {
  appKey?: string;
  /** Set when the app has a secret; a refresh that sends another one is refused. */
  appSecret?: string;
  /** expires_in of access tokens, seconds (default 14400, as Dropbox). */
  accessTokenTtlS?: number;
  /** Retry-After of injected 429s, seconds (default 0, so tests stay fast). */
  retryAfterS?: number;
  /** A Dropbox Business team: a team space root namespace and members (dbmid:…) a team token can act as. */
  team?: { members?: string[] };
  /**
   * The team-space layout ("Namespace Guide", "DBX Team Files Guide"; needs `team`): the team space
   * root holds each member's own folder at root_info.home_path (the member's home namespace, mounted
   * there, visible to that member only) and the team folders, each a namespace of its own mounted at
   * `/<name>`. A recursive list_folder of the root walks into the mounted namespaces, a path below a
   * mount lives in that namespace, and Dropbox-API-Path-Root `namespace_id` reaches a team folder
   * directly. `rootInfoTag` is the tag users/get_current_account gives root_info: `team` (the team
   * space as first introduced) or `user` (the updated team space of 2023–2024, where root_info says
   * `user` though root_namespace_id differs from home_namespace_id: dropbox-sdk-python #486).
   * Off (the default): the team root is a namespace of its own that holds neither.
   */
  teamSpace?: { folders?: string[]; rootInfoTag?: 'team' | 'user' };
  /** Bytes per write of a download body (default 64 KiB). */
  downloadChunk?: number;
  /** path_display keeps stale ancestor casing, as on the real service (default on); see NamespaceOptions. */
  casingDrift?: boolean;
  /**
   * A commit (files/upload, upload_session/finish, one finish_batch_v2) holds the namespace's write
   * lock this long; a commit that arrives meanwhile gets 429 too_many_write_operations, as Dropbox
   * answers concurrent commits into one namespace ("Performance guide": batch commits, and do not
   * commit in parallel). Default 25 ms; 0 turns it off.
   */
  writeLockMs?: number;
}

export interface EmulatedAccount {
  accountId: string;
  memberId?: string;
  email: string;
  displayName: string;
  home: DropboxNamespace;
}

export interface RecordedRequest {
  route: string;
  /** X-Forwarded-Host: which Dropbox host the client meant. */
  host?: string;
  pathRoot?: string;
  selectUser?: string;
  range?: string;
  arg?: unknown;
  /** The status answered; undefined when the connection was closed instead. */
  status?: number;
}

export interface DropboxEmulator {
  url: string;
  port: number;
  appKey: string;
  /** The user signed in by default (and member 0 of the team, when there is one). */
  user: EmulatedAccount;
  /** The user's home namespace: what a plain token sees. */
  home: DropboxNamespace;
  /** The team space, when `team` was given. */
  teamRoot?: DropboxNamespace;
  /** With `teamSpace`: each team folder's namespace, by its name. */
  teamFolders: Map<string, DropboxNamespace>;
  /** The team gets a new team space (as when a team adopts the team-space layout): root_namespace_id
   *  changes, and a Path-Root header naming the old one meets 422 invalid_root. Returns the new space. */
  replaceTeamRoot(): DropboxNamespace;
  members: Map<string, EmulatedAccount>;
  namespaces: Map<string, DropboxNamespace>;
  /** A refresh token for the user (or, with team: true, for the team), as the OAuth flow would give. */
  issueRefreshToken(opts?: { team?: boolean; appKey?: string }): string;
  revokeRefreshToken(token: string): void;
  /** Every access token issued so far answers 401 expired_access_token from now on. */
  expireAccessTokens(): void;
  /** The next `times` calls of `route` ("files/download", "oauth2/token", …) meet this fault. */
  inject(route: string, fault: Fault, times?: number): void;
  clearFaults(): void;
  count(route: string): number;
  /** Commits refused with too_many_write_operations because another held the write lock. */
  readonly contention: number;
  counts(): Record<string, number>;
  resetCounts(): void;
  requests: RecordedRequest[];
  /** What the user does in the browser: opens the authorize URL, clicks Allow, reads the code. */
  authorize(url: string): string;
  /** A fetch that sends any Dropbox URL to this emulator (path and query kept). */
  fetch: typeof fetch;
  close(): Promise<void>;
}

interface RefreshRecord {
  token: string;
  appKey: string;
  team: boolean;
  account: EmulatedAccount;
  revoked: boolean;
  scope: string;
}
interface AccessRecord {
  rt: RefreshRecord;
  expiresAt: number;
  expired: boolean;
}
interface CodeRecord {
  appKey: string;
  challenge?: string;
  method?: string;
  offline: boolean;
  used: boolean;
  expiresAt: number;
}
/** A namespace mounted at a folder of another (a member folder, a team folder in a team space). */
interface Mount {
  /** The mount folder's path in the parent namespace, as displayed: "/Finance". */
  at: string;
  ns: DropboxNamespace;
  /** A member folder is seen by its member only. */
  owner?: EmulatedAccount;
}
interface Session {
  ns: DropboxNamespace;
  chunks: Buffer[];
  size: number;
  closed: boolean;
}
interface Cursor {
  ns: string;
  gen: number;
  scope: string;
  rec: boolean;
  pos: number;
  after?: number;
  /** Listed through a mount of the namespace the call is made in: the mount folder's path. */
  via?: string;
  /** Mounted namespaces the listing walked into, and where their change logs stood. */
  mounts?: Array<{ at: string; id: string; gen: number; pos: number }>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(String(status));
  }
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new HttpError(status, body, headers);
/** A 409 endpoint error: error_summary is the tags joined by '/', then '/..', as Dropbox writes it. */
function endpointError(error: Record<string, unknown>, summary: string): HttpError {
  return json(409, { error_summary: summary + '/..', error });
}
const badRequest = (route: string, what: string) =>
  new HttpError(400, `Error in call to API function "${route}": ${what}`);
const notFound = () => endpointError({ '.tag': 'path', path: { '.tag': 'not_found' } }, 'path/not_found');
const headerSafe = (v: unknown) =>
  JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
const b64url = (b: Buffer) => b.toString('base64url');
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export async function startDropboxEmulator(opts: DropboxEmulatorOptions = {}): Promise<DropboxEmulator> {
  const appKey = opts.appKey ?? 'emu-app-key';
  const ttl = opts.accessTokenTtlS ?? 14400;
  const chunkSize = opts.downloadChunk ?? 64 * 1024;
  const namespaces = new Map<string, DropboxNamespace>();
  let nsCounter = 1_000_000;
  const newNamespace = () => {
    const ns = new DropboxNamespace(String(++nsCounter), { casingDrift: opts.casingDrift });
    namespaces.set(ns.id, ns);
    return ns;
  };
  const user: EmulatedAccount = {
    accountId: 'dbid:AADemuUser0000000000000000000000001',
    email: 'ada@example.com',
    displayName: 'Ada Lovelace',
    home: newNamespace(),
  };
  const members = new Map<string, EmulatedAccount>();
  const mounts = new Map<DropboxNamespace, Mount[]>();
  const teamFolders = new Map<string, DropboxNamespace>();
  /** The team space's layout in a (new) team root: member folders and team folders mounted. */
  const layOutTeamSpace = (root: DropboxNamespace) => {
    if (!opts.teamSpace) return;
    const list: Mount[] = [];
    for (const m of members.values()) list.push({ at: '/' + m.displayName, ns: m.home, owner: m });
    for (const [name, ns] of teamFolders) list.push({ at: '/' + name, ns });
    for (const m of list) root.mkdir(m.at);
    mounts.set(root, list);
  };
  let teamRoot: DropboxNamespace | undefined;
  if (opts.team) {
    teamRoot = newNamespace();
    for (const name of opts.teamSpace?.folders ?? []) teamFolders.set(name, newNamespace());
    user.memberId = 'dbmid:AADemuMember0';
    members.set(user.memberId, user);
    (opts.team.members ?? []).forEach((memberId, i) => {
      members.set(memberId, {
        accountId: `dbid:AADemuMember${i + 1}`,
        memberId,
        email: `member${i + 1}@example.com`,
        displayName: `Member ${i + 1}`,
        home: newNamespace(),
      });
    });
    layOutTeamSpace(teamRoot);
  }

  const refreshTokens = new Map<string, RefreshRecord>();
  const accessTokens = new Map<string, AccessRecord>();
  const codes = new Map<string, CodeRecord>();
  const sessions = new Map<string, Session>();
  const faults = new Map<string, Array<{ fault: Fault; left: number }>>();
  const writeLockMs = opts.writeLockMs ?? 25;
  const writeLocks = new Map<DropboxNamespace, number>();
  /** Holds the namespace's write lock for one commit, or answers 429 too_many_write_operations. */
  async function withWriteLock<T>(ns: DropboxNamespace, fn: () => T): Promise<T> {
    if (writeLockMs <= 0) return fn();
    if ((writeLocks.get(ns) ?? 0) > Date.now()) {
      contention++;
      throw json(
        429,
        {
          error_summary: 'too_many_write_operations/..',
          error: { reason: { '.tag': 'too_many_write_operations' }, retry_after: 0 },
        },
        { 'Retry-After': '0' },
      );
    }
    writeLocks.set(ns, Date.now() + writeLockMs + 1000);
    try {
      const out = fn();
      await new Promise((r) => setTimeout(r, writeLockMs));
      return out;
    } finally {
      writeLocks.delete(ns);
    }
  }
  let contention = 0;
  const callCounts = new Map<string, number>();
  const requests: RecordedRequest[] = [];

  const issueRefreshToken = (o: { team?: boolean; appKey?: string; account?: EmulatedAccount } = {}) => {
    const token = 'rt-' + b64url(randomBytes(24));
    refreshTokens.set(token, {
      token,
      appKey: o.appKey ?? appKey,
      team: o.team ?? false,
      account: o.account ?? user,
      revoked: false,
      scope: 'account_info.read files.content.read files.content.write files.metadata.read',
    });
    return token;
  };
  const issueAccessToken = (rt: RefreshRecord) => {
    const token = 'sl.' + b64url(randomBytes(32));
    accessTokens.set(token, { rt, expiresAt: Date.now() + ttl * 1000, expired: false });
    return token;
  };

  const takeFault = (route: string): Fault | undefined => {
    const list = faults.get(route);
    const f = list?.[0];
    if (!f) return undefined;
    if (--f.left <= 0) list.shift();
    return f.fault;
  };

  const rootInfo = (a: EmulatedAccount) =>
    teamRoot
      ? {
          '.tag': opts.teamSpace?.rootInfoTag ?? 'team',
          root_namespace_id: teamRoot.id,
          home_namespace_id: a.home.id,
          home_path: '/' + a.displayName,
        }
      : { '.tag': 'user', root_namespace_id: a.home.id, home_namespace_id: a.home.id };

  const encodeCursor = (c: Cursor) => 'AAE' + Buffer.from(JSON.stringify(c)).toString('base64url');
  const decodeCursor = (route: string, s: unknown): Cursor => {
    try {
      if (typeof s !== 'string' || !s.startsWith('AAE')) throw new Error();
      return JSON.parse(Buffer.from(s.slice(3), 'base64url').toString()) as Cursor;
    } catch {
      throw badRequest(route, 'Invalid "cursor" parameter: the cursor is not valid');
    }
  };

  /** Which account a call acts as, and in which namespace its paths live. */
  function context(route: string, req: IncomingMessage): { account: EmulatedAccount; ns: DropboxNamespace } {
    const authz = req.headers.authorization;
    if (!authz?.startsWith('Bearer '))
      throw badRequest(route, 'Must provide HTTP header "Authorization" or URL parameter "authorization".');
    const rec = accessTokens.get(authz.slice(7));
    if (!rec || rec.rt.revoked)
      throw json(401, { error_summary: 'invalid_access_token/', error: { '.tag': 'invalid_access_token' } });
    if (rec.expired || Date.now() >= rec.expiresAt)
      throw json(401, { error_summary: 'expired_access_token/', error: { '.tag': 'expired_access_token' } });
    const select = req.headers['dropbox-api-select-user'] as string | undefined;
    let account = rec.rt.account;
    if (rec.rt.team) {
      if (!select)
        throw badRequest(
          route,
          'This API function operates on a single Dropbox account, but the OAuth 2 access token you provided is for an entire Dropbox Business team. Since your API app key has team member file access permissions, you can operate on a team member\'s Dropbox by providing the "Dropbox-API-Select-User" HTTP header or "select_user" URL parameter to specify the exact user <https://www.dropbox.com/developers/documentation/http/teams>.',
        );
      const member = members.get(select);
      if (!member)
        throw json(401, { error_summary: 'invalid_select_user/', error: { '.tag': 'invalid_select_user' } });
      account = member;
    } else if (select) {
      throw badRequest(
        route,
        'Unexpected select user header "Dropbox-API-Select-User": the access token belongs to a single user, not a team.',
      );
    }
    const rootHeader = req.headers['dropbox-api-path-root'] as string | undefined;
    if (!rootHeader) return { account, ns: account.home };
    let root: { '.tag'?: string; root?: string; namespace_id?: string };
    try {
      root = JSON.parse(rootHeader);
    } catch {
      throw badRequest(
        route,
        'Invalid value in HTTP header "Dropbox-API-Path-Root": could not decode input as JSON',
      );
    }
    const info = rootInfo(account);
    if (root['.tag'] === 'home') return { account, ns: account.home };
    if (root['.tag'] === 'root') {
      if (root.root !== info.root_namespace_id)
        throw json(422, {
          error_summary: 'invalid_root/..',
          error: { '.tag': 'invalid_root', invalid_root: info },
        });
      return { account, ns: namespaces.get(info.root_namespace_id)! };
    }
    if (root['.tag'] === 'namespace_id') {
      const reachable =
        root.namespace_id === account.home.id ||
        root.namespace_id === teamRoot?.id ||
        [...teamFolders.values()].some((f) => f.id === root.namespace_id);
      const ns = reachable ? namespaces.get(root.namespace_id!) : undefined;
      if (!ns) throw json(422, { error_summary: 'no_permission/', error: { '.tag': 'no_permission' } });
      return { account, ns };
    }
    throw badRequest(route, 'Invalid value in HTTP header "Dropbox-API-Path-Root": unknown tag');
  }

  const pathArg = (route: string, arg: { path?: unknown }, allowRoot: boolean): string => {
    const p = arg?.path;
    if (typeof p !== 'string') throw badRequest(route, "request body: missing required field 'path'");
    if (p === '/')
      throw badRequest(
        route,
        'request body: path: Specify the root folder as an empty string rather than as "/".',
      );
    if (p === '' && !allowRoot)
      throw badRequest(route, 'request body: path: The root folder is unsupported.');
    if (p !== '' && !p.startsWith('/') && !p.startsWith('id:'))
      throw badRequest(
        route,
        `request body: path: '${p}' did not match pattern '(/(.|[\\r\\n])*|id:.*)|(rev:[0-9a-f]{9,})|(ns:[0-9]+(/.*)?)'`,
      );
    return p;
  };

  const mountsOf = (ns: DropboxNamespace, account: EmulatedAccount) =>
    (mounts.get(ns) ?? []).filter((m) => !m.owner || m.owner === account);
  /** Another member's folder in the team space: not listed, not reachable. */
  const hiddenFrom = (ns: DropboxNamespace, account: EmulatedAccount) => {
    const hidden = (mounts.get(ns) ?? []).filter((m) => m.owner && m.owner !== account);
    return (lower: string) =>
      hidden.some((m) => lower === m.at.toLowerCase() || lower.startsWith(m.at.toLowerCase() + '/'));
  };
  /** Where a path argument lives: what is below a mount folder lives in the mounted namespace. */
  function locate(
    ns: DropboxNamespace,
    account: EmulatedAccount,
    arg: string,
  ): { ns: DropboxNamespace; arg: string; prefix: string } {
    for (const m of mountsOf(ns, account)) {
      if (arg.startsWith('id:') ? m.ns.byId.has(arg) : arg.toLowerCase().startsWith(m.at.toLowerCase() + '/'))
        return { ns: m.ns, arg: arg.startsWith('id:') ? arg : arg.slice(m.at.length), prefix: m.at };
    }
    if (!arg.startsWith('id:') && hiddenFrom(ns, account)(arg.toLowerCase())) throw notFound();
    return { ns, arg, prefix: '' };
  }
  /** Metadata of a mounted namespace's entry as seen from the namespace it is mounted in; a mount
   *  folder carries its sharing_info (FolderMetadata.sharing_info.shared_folder_id). */
  function seenFrom(
    parent: DropboxNamespace,
    account: EmulatedAccount,
    prefix: string,
    meta: Metadata,
  ): Metadata {
    const out: Metadata = prefix
      ? {
          ...meta,
          path_lower: prefix.toLowerCase() + meta.path_lower,
          path_display: prefix + String(meta.path_display),
        }
      : meta;
    const m =
      out['.tag'] === 'folder'
        ? mountsOf(parent, account).find((x) => x.at.toLowerCase() === out.path_lower)
        : undefined;
    if (m) {
      out.shared_folder_id = m.ns.id;
      out.sharing_info = {
        read_only: false,
        shared_folder_id: m.ns.id,
        traverse_only: false,
        no_access: false,
      };
    }
    return out;
  }

  /** Everything in the namespaces a listing walks into, as seen from where they are mounted. */
  const mountedEntries = (c: Cursor): Metadata[] =>
    (c.mounts ?? []).flatMap((m) => {
      const mounted = namespaces.get(m.id)!;
      return mounted.listPage('', true, 0, Infinity).entries.map((e) => ({
        ...e,
        path_lower: m.at.toLowerCase() + e.path_lower,
        path_display: m.at + String(e.path_display),
      }));
    });

  /** CommitInfo applied to new content: files/upload and upload_session/finish. */
  function commit(
    route: string,
    at: { ns: DropboxNamespace; account: EmulatedAccount },
    info: Record<string, unknown>,
    data: Buffer,
    wrap: (e: Record<string, unknown>, s: string) => HttpError,
  ): Metadata {
    const where = locate(at.ns, at.account, pathArg(route, info, false));
    const { ns, arg: path } = where;
    const seen = (m: Metadata) => seenFrom(at.ns, at.account, where.prefix, m);
    if (!path.startsWith('/') || path.endsWith('/') || path.includes('//'))
      throw wrap({ '.tag': 'malformed_path' }, 'malformed_path');
    const mode =
      typeof info.mode === 'string'
        ? info.mode
        : ((info.mode as { '.tag'?: string } | undefined)?.['.tag'] ?? 'add');
    const cm = info.client_modified;
    if (cm !== undefined && (typeof cm !== 'string' || !TIMESTAMP.test(cm))) {
      throw badRequest(
        route,
        `HTTP header "Dropbox-API-Arg": client_modified: time data '${typeof cm === 'string' ? cm : JSON.stringify(cm)}' does not match format '%Y-%m-%dT%H:%M:%SZ'`,
      );
    }
    const segments = path.split('/').slice(1);
    for (let i = 1; i < segments.length; i++) {
      const anc = ns.get(segments.slice(0, i).join('/'));
      if (anc?.tag === 'file')
        throw wrap({ '.tag': 'conflict', conflict: { '.tag': 'file_ancestor' } }, 'conflict/file_ancestor');
    }
    let target = path;
    const existing = ns.get(path);
    if (existing?.tag === 'folder')
      throw wrap({ '.tag': 'conflict', conflict: { '.tag': 'folder' } }, 'conflict/folder');
    if (existing) {
      const same = existing.contentHash === dropboxContentHash(data);
      if (mode === 'add') {
        if (same && !info.strict_conflict) return seen(ns.metadata(existing));
        if (!info.autorename)
          throw wrap({ '.tag': 'conflict', conflict: { '.tag': 'file' } }, 'conflict/file');
        const dot = path.lastIndexOf('.') > path.lastIndexOf('/') ? path.lastIndexOf('.') : path.length;
        for (let i = 1; ns.get(target); i++) target = `${path.slice(0, dot)} (${i})${path.slice(dot)}`;
      } else if (mode === 'update') {
        const rev = (info.mode as { update?: string }).update;
        if (rev !== existing.rev)
          throw wrap({ '.tag': 'conflict', conflict: { '.tag': 'file' } }, 'conflict/file');
      } else if (mode !== 'overwrite') {
        throw badRequest(route, `mode: unknown tag '${mode}'`);
      }
    }
    return seen(
      ns.metadata(
        ns.put(target, data, { clientModified: typeof cm === 'string' ? new Date(cm) : undefined }),
      ),
    );
  }

  const checkHash = (
    arg: { content_hash?: unknown },
    data: Buffer,
    wrap: (e: Record<string, unknown>, s: string) => HttpError,
  ) => {
    if (typeof arg.content_hash === 'string' && arg.content_hash !== dropboxContentHash(data)) {
      throw wrap({ '.tag': 'content_hash_mismatch' }, 'content_hash_mismatch');
    }
  };

  const sessionLookup = (
    route: string,
    cursor: { session_id?: string; offset?: number } | undefined,
    wrap: (e: Record<string, unknown>, s: string) => HttpError,
  ): Session => {
    const s = cursor?.session_id ? sessions.get(cursor.session_id) : undefined;
    if (!s) throw wrap({ '.tag': 'not_found' }, 'not_found');
    if (cursor!.offset !== s.size)
      throw wrap({ '.tag': 'incorrect_offset', correct_offset: s.size }, 'incorrect_offset');
    if (s.closed) throw wrap({ '.tag': 'closed' }, 'closed');
    return s;
  };

  type Handler = (ctx: {
    route: string;
    req: IncomingMessage;
    res: ServerResponse;
    // The Dropbox-API-Arg header or JSON body as the client sent it: each route checks its fields.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    arg: any;
    body: Buffer;
    fault?: Fault;
    drop: boolean;
  }) => unknown;

  const rpc: Record<string, Handler> = {
    'users/get_current_account': ({ route, req }) => {
      const { account } = context(route, req);
      const [given, ...rest] = account.displayName.split(' ');
      return {
        account_id: account.accountId,
        name: {
          given_name: given,
          surname: rest.join(' '),
          familiar_name: given,
          display_name: account.displayName,
          abbreviated_name: given[0] + (rest[0]?.[0] ?? ''),
        },
        email: account.email,
        email_verified: true,
        disabled: false,
        locale: 'en',
        referral_link: 'https://db.tt/emulator',
        is_paired: false,
        account_type: { '.tag': teamRoot ? 'business' : 'basic' },
        root_info: rootInfo(account),
        country: 'GB',
        ...(teamRoot
          ? { team: { id: 'dbtid:AADemuTeam', name: 'Emulated Team' }, team_member_id: account.memberId }
          : {}),
      };
    },
    'files/get_metadata': ({ route, req, arg }) => {
      const { ns: top, account } = context(route, req);
      const { ns, arg: path, prefix } = locate(top, account, pathArg(route, arg, false));
      const node = ns.resolve(path);
      if (!node || node === 'root') throw notFound();
      return seenFrom(top, account, prefix, ns.metadata(node));
    },
    'files/list_folder': ({ route, req, arg }) => {
      const { ns: top, account } = context(route, req);
      const where = locate(top, account, pathArg(route, arg, true));
      const { ns, arg: path, prefix } = where;
      const limit = arg.limit ?? 2000;
      if (!Number.isInteger(limit) || limit < 1 || limit > 2000)
        throw badRequest(route, `request body: limit: ${limit} is not within range [1, 2000]`);
      const node = ns.resolve(path);
      if (!node) throw notFound();
      if (node !== 'root' && node.tag !== 'folder')
        throw endpointError({ '.tag': 'path', path: { '.tag': 'not_folder' } }, 'path/not_folder');
      const scope = node === 'root' ? '' : node.pathLower;
      const recursive = arg.recursive === true;
      const pos = ns.log.length;
      const page = ns.listPage(scope, recursive, 0, limit);
      // A recursive listing walks into the namespaces mounted below its folder (after its own entries).
      const inner = recursive
        ? mountsOf(ns, account).filter((m) => scope === '' || m.at.toLowerCase().startsWith(scope + '/'))
        : [];
      const cursor: Cursor = {
        ns: ns.id,
        gen: ns.generation,
        scope,
        rec: recursive,
        pos,
        ...(page.more ? { after: page.lastSeq } : {}),
        ...(prefix ? { via: prefix } : {}),
        ...(inner.length > 0
          ? {
              mounts: inner.map((m) => ({
                at: m.at,
                id: m.ns.id,
                gen: m.ns.generation,
                pos: m.ns.log.length,
              })),
            }
          : {}),
      };
      const all = page.more ? page.entries : [...page.entries, ...mountedEntries(cursor)];
      const entries =
        arg.include_non_downloadable_files === false ? all.filter((e) => e.is_downloadable !== false) : all;
      return {
        entries: entries
          .map((e) => seenFrom(top, account, prefix, e))
          .filter((e) => !hiddenFrom(top, account)(e.path_lower)),
        cursor: encodeCursor(cursor),
        has_more: page.more,
      };
    },
    'files/list_folder/continue': ({ route, req, arg, fault }) => {
      const { ns: top, account } = context(route, req);
      const c = decodeCursor(route, arg?.cursor);
      const ns = c.via
        ? (mountsOf(top, account).find((m) => m.at.toLowerCase() === c.via!.toLowerCase())?.ns ?? top)
        : top;
      const hidden = hiddenFrom(top, account);
      const seen = (entries: Metadata[]) =>
        entries.map((e) => seenFrom(top, account, c.via ?? '', e)).filter((e) => !hidden(e.path_lower));
      const stale =
        c.ns !== ns.id ||
        c.gen !== ns.generation ||
        (c.mounts ?? []).some((m) => namespaces.get(m.id)?.generation !== m.gen);
      if (fault?.kind === 'bad-cursor' || (stale && c.ns === ns.id && ns.staleCursorAnswer === 'bad-request'))
        throw badRequest(route, 'Invalid "cursor" parameter: the cursor is not valid');
      if (fault?.kind === 'reset' || stale) throw endpointError({ '.tag': 'reset' }, 'reset');
      if (c.after !== undefined) {
        const page = ns.listPage(c.scope, c.rec, c.after, 2000);
        const next: Cursor = { ...c, after: page.more ? page.lastSeq : undefined };
        const entries = page.more ? page.entries : [...page.entries, ...mountedEntries(c)];
        return { entries: seen(entries), cursor: encodeCursor(next), has_more: page.more };
      }
      const page = ns.changesSince(c.pos, c.scope, c.rec, 2000);
      const entries = [...page.entries];
      const mountsNext = (c.mounts ?? []).map((m) => {
        const changes = namespaces.get(m.id)!.changesSince(m.pos, '', true, Infinity);
        entries.push(...changes.entries.map((e) => seenFrom(ns, account, m.at, e)));
        return { ...m, pos: changes.next };
      });
      return {
        entries: seen(entries),
        cursor: encodeCursor({ ...c, pos: page.next, mounts: c.mounts && mountsNext }),
        has_more: page.more,
      };
    },
    'files/list_folder/get_latest_cursor': ({ route, req, arg }) => {
      const { ns } = context(route, req);
      const node = ns.resolve(pathArg(route, arg, true));
      if (!node) throw notFound();
      const scope = node === 'root' ? '' : node.pathLower;
      return {
        cursor: encodeCursor({
          ns: ns.id,
          gen: ns.generation,
          scope,
          rec: arg.recursive === true,
          pos: ns.log.length,
        }),
      };
    },
    /** Commits many closed sessions in one call, under one write lock; answers per entry, in order. */
    'files/upload_session/finish_batch_v2': ({ route, req, arg }) => {
      const { ns, account } = context(route, req);
      const entries = (arg?.entries ?? []) as Array<{
        cursor?: { session_id?: string; offset?: number };
        commit?: Record<string, unknown>;
      }>;
      if (entries.length > 1000)
        throw badRequest(route, `request body: entries: ${entries.length} items, at most 1000 allowed`);
      return withWriteLock(ns, () => ({
        entries: entries.map((e) => {
          const failure = (f: Record<string, unknown>) => ({ '.tag': 'failure', failure: f });
          const s = e.cursor?.session_id ? sessions.get(e.cursor.session_id) : undefined;
          if (!s || s.ns !== ns)
            return failure({ '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_found' } });
          if (e.cursor!.offset !== s.size)
            return failure({
              '.tag': 'lookup_failed',
              lookup_failed: { '.tag': 'incorrect_offset', correct_offset: s.size },
            });
          if (!s.closed) return failure({ '.tag': 'lookup_failed', lookup_failed: { '.tag': 'not_closed' } });
          try {
            const meta = commit(route, { ns, account }, e.commit ?? {}, Buffer.concat(s.chunks), (err) =>
              json(409, { '.tag': 'path', path: err }),
            );
            sessions.delete(e.cursor!.session_id!);
            return { ...meta, '.tag': 'success' };
          } catch (err) {
            if (err instanceof HttpError && err.status === 409)
              return failure(err.body as Record<string, unknown>);
            throw err;
          }
        }),
      }));
    },
    'files/create_folder_v2': ({ route, req, arg }) => {
      const { ns: top, account } = context(route, req);
      const where = locate(top, account, pathArg(route, arg, false));
      const { ns, arg: path } = where;
      const existing = ns.resolve(path);
      if (existing && existing !== 'root') {
        throw endpointError(
          { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': existing.tag } } },
          `path/conflict/${existing.tag}`,
        );
      }
      const segments = path.split('/').slice(1);
      for (let i = 1; i < segments.length; i++) {
        if (ns.get(segments.slice(0, i).join('/'))?.tag === 'file')
          throw endpointError(
            { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file_ancestor' } } },
            'path/conflict/file_ancestor',
          );
      }
      return { metadata: seenFrom(top, account, where.prefix, ns.metadata(ns.mkdir(path)!)) };
    },
  };

  const upload: Record<string, Handler> = {
    'files/upload': ({ route, req, arg, body }) => {
      const { ns, account } = context(route, req);
      const wrap = (e: Record<string, unknown>, s: string) =>
        s === 'content_hash_mismatch'
          ? endpointError(e, s)
          : endpointError(
              { '.tag': 'path', reason: e, upload_session_id: 'pid_upload_session:emu' },
              `path/${s}`,
            );
      if (body.length > 150 * 1024 * 1024)
        throw endpointError({ '.tag': 'payload_too_large' }, 'payload_too_large');
      checkHash(arg, body, wrap);
      return withWriteLock(ns, () => commit(route, { ns, account }, arg, body, wrap));
    },
    'files/upload_session/start': ({ route, req, arg, body }) => {
      const { ns } = context(route, req);
      checkHash(arg, body, endpointError);
      const id = 'pid_upload_session:' + b64url(randomBytes(12));
      sessions.set(id, { ns, chunks: [body], size: body.length, closed: arg?.close === true });
      return { session_id: id };
    },
    'files/upload_session/append_v2': ({ route, req, arg, body }) => {
      context(route, req);
      const s = sessionLookup(route, arg?.cursor, endpointError);
      checkHash(arg, body, endpointError);
      s.chunks.push(body);
      s.size += body.length;
      if (arg.close === true) s.closed = true;
      return null;
    },
    'files/upload_session/finish': ({ route, req, arg, body }) => {
      const { ns, account } = context(route, req);
      const lookup = (e: Record<string, unknown>, s: string) =>
        endpointError({ '.tag': 'lookup_failed', lookup_failed: e }, `lookup_failed/${s}`);
      const s = sessions.get(arg?.cursor?.session_id);
      if (!s || s.ns !== ns) throw lookup({ '.tag': 'not_found' }, 'not_found');
      if (arg.cursor.offset !== s.size)
        throw lookup({ '.tag': 'incorrect_offset', correct_offset: s.size }, 'incorrect_offset');
      // A closed session is finished with no more data.
      if (s.closed && body.length > 0) throw lookup({ '.tag': 'closed' }, 'closed');
      checkHash(arg, body, endpointError);
      // The data sent with finish joins the session before the commit, and a commit that fails keeps
      // it: "Data has already been appended to the upload session. Please retry with empty data body
      // and updated offset" (UploadSessionFinishError.path).
      s.chunks.push(body);
      s.size += body.length;
      return withWriteLock(ns, () => {
        const meta = commit(route, { ns, account }, arg.commit ?? {}, Buffer.concat(s.chunks), (e, tag) =>
          endpointError({ '.tag': 'path', path: e }, `path/${tag}`),
        );
        sessions.delete(arg.cursor.session_id);
        return meta;
      });
    },
  };

  async function download({ route, req, res, arg, fault }: Parameters<Handler>[0]): Promise<void> {
    const { ns: top, account } = context(route, req);
    const where = locate(top, account, pathArg(route, arg, false));
    const ns = where.ns;
    const node = ns.resolve(where.arg);
    if (!node || node === 'root') throw notFound();
    if (node.tag !== 'file')
      throw endpointError({ '.tag': 'path', path: { '.tag': 'not_file' } }, 'path/not_file');
    if (!node.downloadable) throw endpointError({ '.tag': 'unsupported_file' }, 'unsupported_file');
    if (node.restricted)
      throw endpointError(
        { '.tag': 'path', path: { '.tag': 'restricted_content' } },
        'path/restricted_content',
      );
    const content = node.content!;
    let start = 0;
    let end = content.length - 1;
    let status = 200;
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Dropbox-API-Result': headerSafe(seenFrom(top, account, where.prefix, ns.metadata(node))),
      ETag: `W/"${node.rev}"`,
      'Accept-Ranges': 'bytes',
    };
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range);
      if (!m || (m[1] === '' && m[2] === ''))
        throw new HttpError(416, 'Invalid range', { 'Content-Range': `bytes */${content.length}` });
      if (m[1] === '') start = Math.max(0, content.length - Number(m[2]));
      else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
      }
      if (start >= content.length && content.length > 0)
        throw new HttpError(416, 'Requested range not satisfiable', {
          'Content-Range': `bytes */${content.length}`,
        });
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${content.length}`;
    }
    let body = content.subarray(start, end + 1);
    if (fault?.kind === 'corrupt' && body.length > 0) {
      body = Buffer.from(body);
      body[body.length >> 1] ^= 0xff;
    }
    headers['Content-Length'] = String(body.length);
    res.writeHead(status, headers);
    const cutAt =
      fault?.kind === 'cut' ? Math.min(fault.afterBytes ?? body.length >> 1, body.length) : Infinity;
    for (let off = 0; off < body.length; off += chunkSize) {
      const piece = body.subarray(off, Math.min(off + chunkSize, body.length, cutAt));
      if (piece.length > 0 && !res.write(piece)) await new Promise((r) => res.once('drain', r));
      if (off + chunkSize >= cutAt) {
        await new Promise((r) => setTimeout(r, 5));
        req.socket.destroy();
        return;
      }
    }
    res.end();
  }

  function oauthToken(req: IncomingMessage, url: URL, body: Buffer): unknown {
    const params = new URLSearchParams(url.search);
    if (/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '') && body.length > 0) {
      for (const [k, v] of new URLSearchParams(body.toString())) params.set(k, v);
    }
    const basic = req.headers.authorization?.startsWith('Basic ')
      ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString()
      : undefined;
    if (basic) {
      const i = basic.indexOf(':');
      params.set('client_id', basic.slice(0, i));
      params.set('client_secret', basic.slice(i + 1));
    }
    const oauthErr = (error: string, description: string) =>
      json(400, { error, error_description: description });
    const clientId = params.get('client_id');
    const secret = params.get('client_secret');
    if (clientId !== appKey) throw oauthErr('invalid_client', 'Invalid client_id or client_secret');
    if (secret !== null && secret !== opts.appSecret)
      throw oauthErr('invalid_client', 'Invalid client_id or client_secret');
    const grant = params.get('grant_type');
    if (grant === 'refresh_token') {
      const rec = refreshTokens.get(params.get('refresh_token') ?? '');
      if (!rec || rec.revoked) throw oauthErr('invalid_grant', 'refresh token is invalid or revoked');
      if (rec.appKey !== clientId) throw oauthErr('invalid_grant', 'refresh token was issued to another app');
      return { access_token: issueAccessToken(rec), token_type: 'bearer', expires_in: ttl };
    }
    if (grant === 'authorization_code') {
      const code = params.get('code') ?? '';
      const rec = codes.get(code);
      if (!rec || rec.used || Date.now() > rec.expiresAt)
        throw oauthErr('invalid_grant', "code doesn't exist or has expired");
      if (rec.appKey !== clientId) throw oauthErr('invalid_grant', 'code was issued to another app');
      if (rec.challenge !== undefined) {
        const verifier = params.get('code_verifier');
        if (!verifier)
          throw oauthErr('invalid_request', 'No code_verifier given: the authorization used PKCE');
        const computed =
          rec.method === 'plain' ? verifier : b64url(createHash('sha256').update(verifier).digest());
        if (computed !== rec.challenge) throw oauthErr('invalid_grant', 'invalid code verifier');
      } else if (secret === null) {
        throw oauthErr('invalid_client', 'No client_secret given: the authorization did not use PKCE');
      }
      rec.used = true;
      const rt = issueRefreshToken();
      const r = refreshTokens.get(rt)!;
      return {
        access_token: issueAccessToken(r),
        token_type: 'bearer',
        expires_in: ttl,
        ...(rec.offline ? { refresh_token: rt } : {}),
        scope: r.scope,
        uid: '12345',
        account_id: user.accountId,
      };
    }
    throw oauthErr('unsupported_grant_type', `grant_type "${grant}" is not supported`);
  }

  function authorize(href: string): string {
    const url = new URL(href);
    const p = url.searchParams;
    if (p.get('client_id') !== appKey) throw new HttpError(400, 'Invalid client_id');
    if (p.get('response_type') !== 'code')
      throw new HttpError(400, 'response_type must be "code" for this app');
    const challenge = p.get('code_challenge') ?? undefined;
    const method = p.get('code_challenge_method') ?? (challenge ? 'plain' : undefined);
    if (challenge && method !== 'S256' && method !== 'plain')
      throw new HttpError(400, 'Invalid code_challenge_method');
    const code = b64url(randomBytes(30));
    codes.set(code, {
      appKey,
      challenge,
      method,
      offline: p.get('token_access_type') === 'offline',
      used: false,
      expiresAt: Date.now() + 10 * 60_000,
    });
    return code;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const route = url.pathname.replace(/^\/(2\/)?/, '');
    callCounts.set(route, (callCounts.get(route) ?? 0) + 1);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const record: RecordedRequest = {
      route,
      host: req.headers['x-forwarded-host'] as string | undefined,
      pathRoot: req.headers['dropbox-api-path-root'] as string | undefined,
      selectUser: req.headers['dropbox-api-select-user'] as string | undefined,
      range: req.headers.range,
    };
    requests.push(record);
    if (requests.length > 5000) requests.splice(0, requests.length - 5000);
    const writeHead = res.writeHead.bind(res);
    res.writeHead = (status: number, ...rest: unknown[]) => {
      record.status = status;
      return (writeHead as (...a: unknown[]) => ServerResponse)(status, ...rest);
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- see `arg` in Handler
    let arg: any;
    const argHeader =
      (req.headers['dropbox-api-arg'] as string | undefined) ?? url.searchParams.get('arg') ?? undefined;
    try {
      if (argHeader !== undefined) arg = JSON.parse(argHeader);
      else if (
        upload[route] === undefined &&
        route !== 'files/download' &&
        body.length > 0 &&
        url.pathname.startsWith('/2/')
      )
        arg = JSON.parse(body.toString());
    } catch {
      throw badRequest(route, 'could not decode input as JSON');
    }
    record.arg = arg;

    const fault = takeFault(route);
    if (fault?.kind === 'status') {
      const ra = String(fault.retryAfter ?? opts.retryAfterS ?? 0);
      if (fault.status === 429)
        throw json(
          429,
          {
            error_summary: 'too_many_requests/..',
            error: { reason: { '.tag': 'too_many_requests' }, retry_after: Number(ra) },
          },
          { 'Retry-After': ra },
        );
      throw new HttpError(
        fault.status,
        fault.status === 503 ? 'Service Unavailable' : 'Internal Server Error',
        fault.status === 503 ? { 'Retry-After': ra } : {},
      );
    }
    if (fault?.kind === 'cut' && route !== 'files/download') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'expired-token')
      throw json(401, { error_summary: 'expired_access_token/', error: { '.tag': 'expired_access_token' } });

    const drop = fault?.kind === 'drop-response';
    const send = (status: number, payload: string | Buffer, headers: Record<string, string>) => {
      if (drop) {
        req.socket.destroy();
        return;
      }
      res.writeHead(status, { 'Content-Length': String(Buffer.byteLength(payload)), ...headers });
      res.end(payload);
    };
    const ctx = { route, req, res, arg, body, fault, drop };
    if (route === 'oauth2/authorize') {
      const code = authorize(url.href);
      send(
        200,
        `<!doctype html><title>API Request Authorized</title><p>Enter this code into syncguard to finish the process.</p><input id="code" readonly value="${code}">`,
        { 'Content-Type': 'text/html; charset=utf-8' },
      );
      return;
    }
    if (route === 'oauth2/token') {
      send(200, JSON.stringify(oauthToken(req, url, body)), { 'Content-Type': 'application/json' });
      return;
    }
    if (route === 'files/download') {
      await download(ctx);
      return;
    }
    const handler = rpc[route] ?? upload[route];
    if (!handler) throw new HttpError(400, `Unknown API function: "${route}"`);
    const result = await handler(ctx);
    send(200, JSON.stringify(result ?? null), { 'Content-Type': 'application/json' });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      if (e instanceof HttpError) {
        const text = typeof e.body === 'string';
        const payload = text ? e.body : JSON.stringify(e.body);
        res.writeHead(e.status, {
          'Content-Type': text ? 'text/plain; charset=utf-8' : 'application/json',
          ...e.headers,
        });
        res.end(payload);
        return;
      }
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`emulator error: ${(e as Error).message}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;

  const emuFetch: typeof fetch = (input, init = {}) => {
    const u = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    const headers = new Headers(init.headers);
    headers.set('X-Forwarded-Host', u.host);
    return fetch(new URL(u.pathname + u.search, base), { ...init, headers });
  };

  return {
    url: base,
    port,
    appKey,
    user,
    home: user.home,
    get teamRoot() {
      return teamRoot;
    },
    replaceTeamRoot() {
      if (!teamRoot) throw new Error('the emulator was started without a team');
      teamRoot = newNamespace();
      layOutTeamSpace(teamRoot);
      return teamRoot;
    },
    members,
    namespaces,
    teamFolders,
    issueRefreshToken: (o = {}) => issueRefreshToken(o),
    revokeRefreshToken(token) {
      const rec = refreshTokens.get(token);
      if (rec) rec.revoked = true;
    },
    expireAccessTokens() {
      for (const rec of accessTokens.values()) rec.expired = true;
    },
    inject(route, fault, times = 1) {
      const list = faults.get(route) ?? [];
      list.push({ fault, left: times });
      faults.set(route, list);
    },
    clearFaults: () => faults.clear(),
    count: (route) => callCounts.get(route) ?? 0,
    get contention() {
      return contention;
    },
    counts: () => Object.fromEntries(callCounts),
    resetCounts: () => callCounts.clear(),
    requests,
    authorize,
    fetch: emuFetch,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
