import { nodeCron } from '../schedule/_node-cron.js';
import { z } from 'zod';

/** Sizes are written as bytes or with a unit: 1048576, "1MiB", "64 MiB", "512KiB". */
const size = z
  .union([
    z.number().int().positive(),
    z
      .string()
      .regex(
        /^\s*\d+(\.\d+)?\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$/i,
        'expected a size such as 1048576, "1MiB" or "64 MiB"',
      ),
  ])
  .transform(parseSize);

export function parseSize(v: number | string): number {
  if (typeof v === 'number') return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v)!;
  const unit = (m[2] || 'B').toLowerCase();
  const mult: Record<string, number> = {
    b: 1,
    kib: 1024,
    mib: 1024 ** 2,
    gib: 1024 ** 3,
    kb: 1e3,
    mb: 1e6,
    gb: 1e9,
  };
  return Math.round(Number(m[1]) * mult[unit]);
}

const accountName = z
  .string()
  .regex(
    /^[a-z0-9](?:[a-z0-9-]{0,62})$/,
    'expected lower-case letters, digits and "-" (it is used in the store\'s keys), such as "family-dropbox"',
  );
const globs = z.array(z.string().min(1)).default([]);

export const objectLockSchema = z.union(
  [
    z.literal('off'),
    z.strictObject({
      mode: z.enum(['COMPLIANCE', 'GOVERNANCE']),
      /** Each object written is locked for at least this many days. */
      days: z.number().int().min(1).max(36500),
    }),
  ],
  {
    error: 'expected { mode: COMPLIANCE or GOVERNANCE, days: 1 to 36500 }, or off (no lock, said explicitly)',
  },
);

export const s3StoreSchema = z.strictObject({
  type: z.literal('s3'),
  bucket: z.string().min(3).max(63),
  region: z.string().min(1).default('us-east-1'),
  endpoint: z.url().optional(),
  forcePathStyle: z.boolean().default(false),
  prefix: z.string().default(''),
  accessKeyId: z.string().min(1).optional(),
  secretAccessKey: z.string().min(1).optional(),
  sessionToken: z.string().min(1).optional(),
  objectLock: objectLockSchema,
  /** Checksums beyond the SHA-256 every write is signed with (which the server checks): absent,
   *  Content-MD5 only where the server asks for it (AWS on locked writes); "md5" sends Content-MD5 on
   *  every write (a server that does not check the signed SHA-256); "sha256" sends
   *  x-amz-checksum-sha256 as well (B2 rejects it, Ceph ignores it). */
  checksum: z.enum(['md5', 'sha256']).optional(),
});

export const fsStoreSchema = z.strictObject({
  type: z.literal('fs'),
  /** A folder on a local disk or NAS; `~` is the home folder. */
  path: z.string().min(1),
  prefix: z.string().default(''),
});

export const storeSchema = z.discriminatedUnion('type', [s3StoreSchema, fsStoreSchema]);

/** Why `expr` is not a cron expression the daemon's scheduler (node-cron) runs; undefined when it is. */
export function cronProblem(expr: string): string | undefined {
  const v = nodeCron().validateDetailed(expr);
  if (v.valid) return undefined;
  const why = v.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  return `is not a valid cron expression (${why}); write five fields (minute hour day month weekday, such as "0 2 * * *") or six with seconds first`;
}

/** Why `tz` is not a timezone this system knows; undefined when it is. */
export function timezoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return 'is not a timezone this system knows; use an IANA name such as "Europe/Berlin" or "UTC"';
  }
}

/** A check whose message follows the value it refuses: `"0 25 * * *" is not a valid cron expression`. */
const checked = (problem: (v: string) => string | undefined) => (v: string, ctx: z.RefinementCtx) => {
  const why = problem(v);
  if (why) ctx.addIssue({ code: 'custom', message: why, params: { valueFirst: true } });
};
const cronExpression = z.string().min(1).superRefine(checked(cronProblem));

export const scheduleSchema = z.strictObject({
  cron: cronExpression.default('0 2 * * *'),
  /** Also the timezone of dates given on the command line (`--at 2026-11-20`). */
  timezone: z.string().min(1).superRefine(checked(timezoneProblem)).optional(),
});

export const keepSchema = z.strictObject({
  last: z.number().int().min(0).default(0),
  daily: z.number().int().min(0).default(14),
  weekly: z.number().int().min(0).default(8),
  monthly: z.number().int().min(0).default(24),
  yearly: z.number().int().min(0).default(5),
});

const fraction = z.number().min(0).max(1);

/** The ransomware tripwire's thresholds, without defaults: an account's overrides name only some. */
const tripwireFields = {
  enabled: z.boolean(),
  /** Shares of files are judged only when the previous snapshot held at least this many files. */
  minFiles: z.number().int().min(0),
  /** Fires when at least this share of the previous snapshot's files changed content... */
  modified: fraction,
  /** ...or was deleted (content that moved elsewhere does not count)... */
  deleted: fraction,
  /** ...or reappeared under another extension (report.docx → report.docx.locked). */
  renamed: fraction,
  /** Fires when at least this many changed files now look encrypted (incompressible where the old
   *  content was not), and they are at least `encryptedShare` of the changed files looked at. */
  encrypted: z.number().int().min(1),
  encryptedShare: fraction,
  /** Changed files whose first 4 KiB, old and new, are looked at per run. */
  samples: z.number().int().min(0).max(100_000),
  /** More file-name globs of ransom notes, beside the built-in list ("HOW_TO_DECRYPT.txt", …). */
  ransomNotes: z.array(z.string().min(1)),
};
export const tripwireOverrideSchema = z.strictObject(tripwireFields).partial();
export const tripwireSchema = z.strictObject({
  enabled: tripwireFields.enabled.default(true),
  minFiles: tripwireFields.minFiles.default(50),
  modified: tripwireFields.modified.default(0.5),
  deleted: tripwireFields.deleted.default(0.5),
  renamed: tripwireFields.renamed.default(0.2),
  encrypted: tripwireFields.encrypted.default(10),
  encryptedShare: tripwireFields.encryptedShare.default(0.5),
  samples: tripwireFields.samples.default(200),
  ransomNotes: tripwireFields.ransomNotes.default([]),
});

const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' });

export const alertsSchema = z.strictObject({
  /** Which runs alert: "failure", "partial" (some files unreadable), "stale" (a file unread 3 runs in a
   *  row; also sent where "partial" is asked for), "tripwire", "success". */
  on: z
    .array(z.enum(['failure', 'partial', 'stale', 'tripwire', 'success']))
    .default(['failure', 'partial', 'stale', 'tripwire']),
  /** A JSON POST per alert, retried on network errors, 429 and 5xx. */
  webhook: z
    .union([
      httpUrl,
      z.strictObject({
        url: httpUrl,
        /** Extra headers, such as Authorization: "Bearer ${ALERT_TOKEN}" (never logged). */
        headers: z.record(z.string(), z.string()).default({}),
        retries: z.number().int().min(0).max(10).default(3),
        timeoutSeconds: z.number().min(1).max(300).default(10),
      }),
    ])
    .optional(),
  /** A command run per alert, the alert's JSON on its stdin: a string (run by /bin/sh; ${…} in it is
   *  refused at load) or an argv list (${NAME} is passed as written: the command reads NAME from the
   *  environment it inherits, so that no secret is ever on a command line). */
  command: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** A healthchecks.io-style URL: <url>/start when a run starts, <url> when it succeeds, <url>/fail when it fails. */
  healthcheck: httpUrl.optional(),
});

export const statusSchema = z.strictObject({
  /** The daemon serves /healthz and Prometheus /metrics on this port (0: any free port, logged). */
  port: z.number().int().min(0).max(65535),
  host: z.string().min(1).default('127.0.0.1'),
});

export const reportsSchema = z.strictObject({
  /** Where run reports are written (default: <stateDir>/reports). */
  dir: z.string().min(1).optional(),
  /** Reports kept per account. */
  keep: z.number().int().min(1).max(100_000).default(200),
});

export const pruneSchema = z.strictObject({
  /** An object no snapshot names is deleted only once it has been unreferenced this long: a run
   *  going on elsewhere may be about to name it. */
  graceHours: z.number().min(0).default(24),
  /** The daemon also prunes on this schedule (default: never; run `syncguard prune` yourself). */
  cron: cronExpression.optional(),
});

/** How often a local folder's unchanged files are read anyway: "30d", or off. In days (0: never). */
const rereadError = 'expected a number of days such as "30d" (1d to 9999d), or off';
const rereadSchema = z
  .union([z.literal('off'), z.string().regex(/^[1-9]\d{0,3}d$/, rereadError)], { error: rereadError })
  .transform((v) => (v === 'off' ? 0 : Number.parseInt(v, 10)));

const accountCommon = {
  name: accountName,
  /** Only paths matching one of these globs are taken (default: everything). */
  include: globs,
  /** Paths matching any of these globs are left out. */
  exclude: globs,
  /** How many files are read at once (default: the top-level `concurrency`). */
  concurrency: z.number().int().min(1).max(64).optional(),
  /** This account's own schedule, instead of the top-level one. */
  schedule: scheduleSchema.optional(),
  /** This account's tripwire thresholds, over the top-level `tripwire`. */
  tripwire: tripwireOverrideSchema.optional(),
  /** This account's own healthcheck URL, instead of `alerts.healthcheck`. */
  healthcheck: httpUrl.optional(),
};

export const localAccountSchema = z.strictObject({
  ...accountCommon,
  provider: z.literal('local'),
  /** The folder to snapshot; `~` is the home folder. */
  path: z.string().min(1),
  /** Follow symbolic links (default: record nothing for them, and say so in the snapshot's header). */
  followSymlinks: z.boolean().default(false),
  /** This account's own `reread`, instead of the top-level one. */
  reread: rereadSchema.optional(),
});

export const dropboxAccountSchema = z.strictObject({
  ...accountCommon,
  provider: z.literal('dropbox'),
  appKey: z.string().min(1),
  appSecret: z.string().min(1).optional(),
  /** The credentials file `syncguard auth dropbox` writes (mode 0600). */
  credentials: z.string().min(1).optional(),
  /** Or the refresh token itself, from the environment: ${DROPBOX_REFRESH_TOKEN}. */
  refreshToken: z.string().min(1).optional(),
  /** Folders to take, such as "/Photos"; default: the whole Dropbox. */
  folders: z.array(z.string().min(1)).default([]),
  /** Dropbox Business: "home" (default), "team" (the team space root) or { namespaceId }. */
  root: z
    .union([z.enum(['home', 'team']), z.strictObject({ namespaceId: z.string().min(1) })])
    .default('home'),
  /** Dropbox Business: act as this team member (dbmid:…) with a team token. */
  selectUser: z.string().min(1).optional(),
  /** Send API calls here instead of dropboxapi.com (an emulator in tests, or a proxy). */
  endpoint: z.url().optional(),
});

export const onedriveAccountSchema = z.strictObject({
  ...accountCommon,
  provider: z.literal('onedrive'),
  clientId: z.string().min(1),
  /** "common", "consumers", "organizations", or a tenant id or domain. */
  tenant: z.string().min(1).default('common'),
  /** The token cache `syncguard auth onedrive` writes (mode 0600). */
  credentials: z.string().min(1),
  /** "me", or a SharePoint library { site: "contoso.sharepoint.com:/sites/finance", library: "Documents" }, or { driveId }. */
  drive: z
    .union([
      z.literal('me'),
      z.strictObject({ site: z.string().min(1), library: z.string().min(1).default('Documents') }),
      z.strictObject({ driveId: z.string().min(1) }),
    ])
    .default('me'),
  folders: z.array(z.string().min(1)).default([]),
  /** Send Graph calls here instead of graph.microsoft.com (an emulator in tests, or a proxy). */
  endpoint: z.url().optional(),
  /** Send sign-in calls here instead of login.microsoftonline.com. */
  authority: z.url().optional(),
});

export const accountSchema = z.discriminatedUnion('provider', [
  localAccountSchema,
  dropboxAccountSchema,
  onedriveAccountSchema,
]);

export const configSchema = z.strictObject({
  store: storeSchema,
  schedule: scheduleSchema.default({ cron: '0 2 * * *' }),
  keep: keepSchema.default({ last: 0, daily: 14, weekly: 8, monthly: 24, yearly: 5 }),
  /** Files read at once per account. */
  concurrency: z.number().int().min(1).max(64).default(4),
  /** Files at or above this size are stored as objects of their own; smaller ones are packed. */
  packThreshold: size.default(1024 * 1024),
  /** The size a pack is closed at. */
  packSize: size.default(16 * 1024 * 1024),
  /** Local folders: every file is read again at least this often, even when its size, times, device
   *  and inode say it did not change (about 1/N of the files each night). Cloud accounts have
   *  content hashes and need none. */
  reread: rereadSchema.default(30),
  /** Where this machine keeps run locks, run reports and caches (never secrets). */
  stateDir: z.string().min(1).default('~/.local/state/syncguard'),
  tripwire: tripwireSchema.default(tripwireSchema.parse({})),
  alerts: alertsSchema.default(alertsSchema.parse({})),
  /** The daemon's HTTP endpoint; absent: none. */
  status: statusSchema.optional(),
  reports: reportsSchema.default(reportsSchema.parse({})),
  prune: pruneSchema.default(pruneSchema.parse({})),
  accounts: z
    .array(accountSchema)
    .min(1, 'expected at least one account')
    .superRefine((accounts, ctx) => {
      const seen = new Set<string>();
      accounts.forEach((a, i) => {
        if (seen.has(a.name))
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `the account name "${a.name}" is used twice`,
          });
        seen.add(a.name);
      });
    }),
});

export type Config = z.infer<typeof configSchema>;
export type StoreConfig = z.infer<typeof storeSchema>;
export type S3StoreConfig = z.infer<typeof s3StoreSchema>;
export type FsStoreConfig = z.infer<typeof fsStoreSchema>;
export type AccountConfig = z.infer<typeof accountSchema>;
export type LocalAccountConfig = z.infer<typeof localAccountSchema>;
export type DropboxAccountConfig = z.infer<typeof dropboxAccountSchema>;
export type OnedriveAccountConfig = z.infer<typeof onedriveAccountSchema>;
export type KeepPolicy = z.infer<typeof keepSchema>;
export type ObjectLockConfig = z.infer<typeof objectLockSchema>;
export type TripwireConfig = z.infer<typeof tripwireSchema>;
export type AlertsConfig = z.infer<typeof alertsSchema>;
