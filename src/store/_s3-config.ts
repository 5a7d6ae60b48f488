/**
 * What an S3 store is, known from its config alone: the checks, description and features that
 * `S3Store` and the lazy factory in `index.ts` share. No AWS SDK here, so that a command can name
 * its store before (or without) loading the SDK.
 */
import type { S3StoreConfig } from '../config/schema.js';
import { SyncguardError } from '../errors.js';
import type { StoreFeatures } from './types.js';
import { normalisePrefix } from './_util.js';

export interface S3Identity {
  bucket: string;
  prefix: string;
  region: string;
  description: string;
  features: StoreFeatures;
}

/** Throws CONFIG for a config no S3 store can be made from. */
export function s3Identity(config: S3StoreConfig): S3Identity {
  if (!!config.accessKeyId !== !!config.secretAccessKey) {
    throw new SyncguardError(
      'CONFIG',
      'store: give both accessKeyId and secretAccessKey, or neither (to use the AWS credential chain)',
    );
  }
  const prefix = normalisePrefix(config.prefix);
  const region = config.region ?? 'us-east-1';
  const locked = config.objectLock !== 'off';
  return {
    bucket: config.bucket,
    prefix,
    region,
    features: { objectLock: locked, versioned: locked },
    description: `s3://${config.bucket}/${prefix}${config.endpoint ? ` at ${withoutUserinfo(config.endpoint)}` : ` in ${region}`}`,
  };
}

function withoutUserinfo(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid endpoint)';
  }
}
