import { Dropbox, DropboxAuth } from 'dropbox';
import type { DropboxAccountConfig } from '../../config/schema.js';
import { SyncguardError } from '../../errors.js';
import { dropboxFetch } from './api.js';
import { classify, isDropboxResponseError } from './classify.js';
import { credentialsPath, saveCredentials } from './credentials.js';

export interface DropboxAuthOptions {
  account: DropboxAccountConfig;
  /** The config file's folder: a relative `credentials` path is resolved against it. */
  configDir: string;
  /** Asks the user a question and resolves with the answer (the CLI reads a line from the terminal). */
  prompt: (question: string) => Promise<string>;
  /** Shows a line to the user. Never given a secret. */
  print: (line: string) => void;
  fetch?: typeof fetch;
}

/**
 * `syncguard auth dropbox --account NAME`: the OAuth flow of a command-line app (authorization code with
 * PKCE, offline access, no redirect URI: Dropbox shows the code to paste). Saves the refresh token in
 * the account's credentials file, mode 0600, written atomically. The app secret is not needed: PKCE
 * proves the code was asked for by this process.
 */
export async function runDropboxAuth(opts: DropboxAuthOptions): Promise<{ credentialsPath: string }> {
  const { account, print } = opts;
  const f = dropboxFetch(opts.fetch ?? globalThis.fetch, account.endpoint);
  const auth = new DropboxAuth({ clientId: account.appKey, fetch: f });
  // No `scope`: the token gets the permissions enabled on the app in the App Console.
  const url = String(
    await auth.getAuthenticationUrl(
      undefined as unknown as string,
      undefined,
      'code',
      'offline',
      undefined,
      'none',
      true,
    ),
  ).replaceAll(' ', '%20');
  print(`To let syncguard read the Dropbox of account "${account.name}":`);
  print(`  1. Open this address in a browser and sign in to that Dropbox account:`);
  print(`     ${url}`);
  print(`  2. Click "Allow". Dropbox then shows an access code.`);
  const code = (await opts.prompt('  3. Paste the access code here: ')).trim();
  if (!/^[A-Za-z0-9_~.-]{8,}$/.test(code)) {
    throw new SyncguardError(
      'USAGE',
      `that does not look like a Dropbox access code (letters, digits, "-" and "_"): run \`syncguard auth dropbox --account ${account.name}\` again and paste the code Dropbox shows`,
    );
  }
  let result: { access_token?: string; refresh_token?: string; account_id?: string; scope?: string };
  try {
    result = (await auth.getAccessTokenFromCode(undefined as unknown as string, code)).result;
  } catch (e) {
    if (
      isDropboxResponseError(e) &&
      e.status === 400 &&
      (e.error as { error?: unknown })?.error === 'invalid_grant'
    ) {
      throw new SyncguardError(
        'PROVIDER_AUTH',
        `Dropbox did not accept the access code (a code works once, for a few minutes): run \`syncguard auth dropbox --account ${account.name}\` again and paste the new code`,
      );
    }
    throw classify(e, {
      account: account.name,
      what: 'exchanging the access code',
      redact: (s) => s.split(code).join('[redacted]'),
    });
  }
  if (!result.refresh_token) {
    throw new SyncguardError(
      'PROVIDER_AUTH',
      `Dropbox answered without a refresh token, so unattended runs could not sign in: check that the app key ${account.appKey} belongs to a scoped-access app, then run \`syncguard auth dropbox --account ${account.name}\` again`,
    );
  }
  try {
    const dbx = new Dropbox({ accessToken: result.access_token, fetch: f, selectUser: account.selectUser });
    const me = (await dbx.usersGetCurrentAccount()).result;
    print(`Linked to the Dropbox account of ${me.name.display_name}${me.email ? ` <${me.email}>` : ''}.`);
  } catch {
    print(
      "Linked (the account's name could not be read: the app may lack the account_info.read permission).",
    );
  }
  const path = credentialsPath(account, opts.configDir);
  await saveCredentials(path, {
    version: 1,
    provider: 'dropbox',
    appKey: account.appKey,
    refreshToken: result.refresh_token,
    accountId: result.account_id,
    scope: result.scope,
    obtainedAt: new Date().toISOString(),
  });
  print(`Saved the authorization to ${path} (readable by you only).`);
  if (account.refreshToken) {
    print(
      `Note: the config gives account "${account.name}" a refreshToken, which is used instead of this file; remove it from the config to use the file.`,
    );
  }
  return { credentialsPath: path };
}
