/**
 * The folder and S3 bucket of one end-to-end describe block: made before its tests, with the config
 * written into the folder, and removed after them.
 */
import { promises as fsp } from 'node:fs';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll } from 'vitest';
import { s3Env, tempDir, uniqueBucket, writeConfig, type CliOptions, type S3Access } from './cli.js';
import { rawClient, removeBucket } from './s3-client.js';

export interface S3Workspace {
  /** The folder the CLI runs in; syncguard.yaml and ./state are in it. */
  dir: string;
  bucket: string;
  /** A client of the test S3 server, to look at what syncguard stored. */
  raw: S3Client;
  /** Runs the CLI in `dir` with the S3 keys (and `env`) in its environment. */
  cli: CliOptions;
}

export interface S3WorkspaceOptions {
  /** The config file, given the bucket (s3StoreYaml, configYaml). */
  config(bucket: string): string;
  /** More of the CLI's environment (tokens), read when the workspace is made. */
  env?(): Record<string, string>;
  timeoutMs?: number;
}

/**
 * Registers the hooks that make and remove the workspace of the enclosing describe block; its fields
 * are there from the block's first test on. `s3` may be null only in a block that is skipped then.
 */
export function s3Workspace(
  s3: S3Access | null | undefined,
  label: string,
  o: S3WorkspaceOptions,
): S3Workspace {
  const w = {} as S3Workspace;
  beforeAll(async () => {
    if (!s3) throw new Error(`${label}: no S3 server (the describe block should be skipped)`);
    w.dir = await tempDir(label);
    w.raw = rawClient(s3);
    w.bucket = uniqueBucket(label);
    await writeConfig(w.dir, o.config(w.bucket));
    w.cli = { cwd: w.dir, env: { ...s3Env(s3), ...o.env?.() }, timeoutMs: o.timeoutMs ?? 60_000 };
  });
  afterAll(async () => {
    if (w.raw) {
      await removeBucket(w.raw, w.bucket);
      w.raw.destroy();
    }
    if (w.dir) await fsp.rm(w.dir, { recursive: true, force: true });
  });
  return w;
}
