import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import type { Log } from '../../log.js';
import { expandHome } from '../../util.js';

/** What `syncguard auth dropbox` saves. Dropbox refresh tokens do not rotate and do not expire until revoked. */
export interface DropboxCredentials {
  version: 1;
  provider: 'dropbox';
  /** The app the token was issued to: a refresh token only works with its own app key. */
  appKey: string;
  refreshToken: string;
  accountId?: string;
  scope?: string;
  obtainedAt: string;
}

/** The credentials file of an account: `credentials` from the config (relative to the config's folder,
 *  `~` expanded), else ~/.config/syncguard/<account>.json. */
export function credentialsPath(
  account: Pick<DropboxAccountConfig, 'name' | 'credentials'>,
  configDir: string,
): string {
  return account.credentials
    ? expandHome(account.credentials, configDir)
    : join(homedir(), '.config', 'syncguard', `${account.name}.json`);
}

const authHint = (name: string) => `run \`syncguard auth dropbox --account ${name}\``;

/** The refresh token to use: `refreshToken` from the config wins; else the credentials file. */
export async function loadRefreshToken(
  account: Pick<DropboxAccountConfig, 'name' | 'credentials' | 'refreshToken' | 'appKey'>,
  configDir: string,
  log: Log,
): Promise<string> {
  if (account.refreshToken) return account.refreshToken;
  const path = credentialsPath(account, configDir);
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new SyncguardError(
        'PROVIDER_AUTH',
        `no Dropbox authorization saved for account "${account.name}" (${path} does not exist): ${authHint(account.name)}`,
      );
    }
    throw new SyncguardError(
      'PROVIDER_AUTH',
      `cannot read the Dropbox credentials of account "${account.name}" at ${path} (${code ?? 'error'}): check its permissions, or ${authHint(account.name)}`,
    );
  }
  let creds: Partial<DropboxCredentials>;
  try {
    creds = JSON.parse(text) as Partial<DropboxCredentials>;
  } catch {
    creds = {};
  }
  if (creds.provider !== 'dropbox' || typeof creds.refreshToken !== 'string' || creds.refreshToken === '') {
    throw new SyncguardError(
      'PROVIDER_AUTH',
      `${path} is not a Dropbox credentials file written by syncguard: ${authHint(account.name)}`,
    );
  }
  if (creds.appKey && creds.appKey !== account.appKey) {
    throw new SyncguardError(
      'PROVIDER_AUTH',
      `${path} holds an authorization for the Dropbox app ${creds.appKey}, but account "${account.name}" uses appKey ${account.appKey}: ${authHint(account.name)} again`,
    );
  }
  try {
    const st = await fsp.stat(path);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      log(
        'warn',
        `${path} can be read by other users (mode ${(st.mode & 0o777).toString(8)}); it holds a Dropbox refresh token: chmod 600 it`,
      );
    }
  } catch {
    /* read a moment ago; nothing to warn about */
  }
  return creds.refreshToken;
}

/** Writes the file atomically (temp file with mode 0600, fsync, rename), creating its folder with mode 0700. */
export async function saveCredentials(path: string, creds: DropboxCredentials): Promise<void> {
  await fsp.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await fsp.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(JSON.stringify(creds, null, 2) + '\n', 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.chmod(tmp, 0o600);
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  // The rename is durable once the folder entry is on disk.
  const dir = await fsp.open(dirname(path), 'r').catch(() => undefined);
  if (dir) {
    await dir.sync().catch(() => {});
    await dir.close();
  }
}
