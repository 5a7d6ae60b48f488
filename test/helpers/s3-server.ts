import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

/**
 * The real S3 server the tests run against (Ceph RADOS Gateway with Object Lock, scripts/s3-server.sh).
 * When S3_ENDPOINT is set (as .ci/run does), that server is used as it is. Otherwise this starts one
 * for the test run and stops it afterwards, so `npm test` works on its own (it installs Debian's
 * packages the first time, which needs root).
 */
const script = fileURLToPath(new URL('../../scripts/s3-server.sh', import.meta.url));
const env = {
  ...process.env,
  CEPH_DIR: process.env.CEPH_DIR ?? '/tmp/syncguard-test-s3',
  S3_PORT: process.env.S3_PORT ?? '7481',
  CEPH_MON_PORT: process.env.CEPH_MON_PORT ?? '3311',
};
let started = false;

export async function setup(project: TestProject): Promise<void> {
  let endpoint = process.env.S3_ENDPOINT;
  let accessKeyId = process.env.AWS_ACCESS_KEY_ID ?? 'test';
  let secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY ?? 'testsecret';
  if (!endpoint && process.env.SYNCGUARD_NO_S3 !== '1') {
    execFileSync('bash', [script, 'start'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    started = true;
    const file = readFileSync(`${env.CEPH_DIR}/s3.env`, 'utf8');
    const get = (k: string) => new RegExp(`^export ${k}=(.*)$`, 'm').exec(file)?.[1];
    endpoint = get('S3_ENDPOINT');
    accessKeyId = get('AWS_ACCESS_KEY_ID') ?? accessKeyId;
    secretAccessKey = get('AWS_SECRET_ACCESS_KEY') ?? secretAccessKey;
  }
  project.provide('s3', endpoint ? { endpoint, accessKeyId, secretAccessKey } : null);
}

export async function teardown(): Promise<void> {
  if (started && existsSync(`${env.CEPH_DIR}/run`))
    execFileSync('bash', [script, 'purge'], { env, stdio: 'inherit' });
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: { endpoint: string; accessKeyId: string; secretAccessKey: string } | null;
  }
}
