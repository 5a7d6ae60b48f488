/**
 * The secret values a process holds, and `redact`, which blanks them out of a text. Library messages hold
 * no secret by contract; the daemon's log passes every line through `redact` as a second guard.
 */
import { readFileSync } from 'node:fs';
import type { Config } from './config/schema.js';
import { credentialsPath as dropboxCredentials } from './providers/dropbox/credentials.js';
import { credentialsPath as onedriveCredentials } from './providers/onedrive/auth.js';

export const REDACTED = '[redacted]';

/** Values shorter than this are not treated as secrets (they would blank out ordinary words). */
const MIN_SECRET = 8;

/** The secret values of a config: store keys, provider secrets and tokens (also those saved by
 *  `syncguard auth` in the accounts' credentials files), alert URLs and headers. */
export function secretsOf(config: Config, configDir: string): string[] {
  const out: Array<string | undefined> = [];
  const s = config.store as Record<string, unknown>;
  out.push(s.secretAccessKey as string | undefined, s.sessionToken as string | undefined);
  for (const a of config.accounts) {
    const acc = a as Record<string, unknown>;
    for (const k of ['appSecret', 'refreshToken', 'clientSecret'])
      if (typeof acc[k] === 'string') out.push(acc[k]);
    if (typeof acc.healthcheck === 'string') out.push(acc.healthcheck);
    if (a.provider === 'dropbox') out.push(...tokensInFile(dropboxCredentials(a, configDir)));
    if (a.provider === 'onedrive') out.push(...tokensInFile(onedriveCredentials(a, configDir)));
  }
  const alerts = config.alerts as Record<string, unknown> | undefined;
  const webhook = alerts?.webhook as string | { url: string; headers?: Record<string, string> } | undefined;
  if (typeof webhook === 'string') out.push(webhook);
  else if (webhook) out.push(webhook.url, ...Object.values(webhook.headers ?? {}));
  if (typeof alerts?.healthcheck === 'string') out.push(alerts.healthcheck);
  return [...new Set(out.filter((v): v is string => typeof v === 'string' && v.length >= MIN_SECRET))].sort(
    (a, b) => b.length - a.length,
  );
}

const TOKEN_SHAPES: Array<[RegExp, string]> = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  [
    /\b(refresh_token|access_token|client_secret|password)(["']?\s*[:=]\s*["']?)[^\s"'&,}]{8,}/gi,
    `$1$2${REDACTED}`,
  ],
];

/** `text` with every secret value and token-shaped substring replaced by [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
  for (const [re, to] of TOKEN_SHAPES) out = out.replace(re, to);
  return out;
}

/** String values under a key naming a token or a secret, in a JSON file (a credentials file, MSAL's
 *  token cache); none when the file is missing or not JSON. */
function tokensInFile(path: string): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (v: unknown, key: string) => {
    if (typeof v === 'string') {
      if (/token|secret/i.test(key)) out.push(v);
    } else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  walk(doc, '');
  return out;
}
