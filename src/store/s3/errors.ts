import { SyncguardError, abortError, isSyncguardError, type ErrorCode } from '../../errors.js';

export interface Translation {
  /** What was being done ('put', 'get', ...). */
  op: string;
  /** The object or bucket, as shown to the user. */
  where: string;
  signal?: AbortSignal;
  /** The request carried Object Lock headers (a bare InvalidRequest then means the bucket has none). */
  sentLock?: boolean;
  /** Removes secrets from a message. */
  scrub: (text: string) => string;
}

/** The one place AWS errors become SyncguardErrors. The AWS error is not kept as the cause: it
 *  would carry the raw response out of the store. */
export function translate(e: unknown, how: Translation): SyncguardError {
  const { op, where, signal } = how;
  if (isSyncguardError(e)) return e;
  if (signal?.aborted) return abortError(signal);
  const err = e as { message?: string; code?: string };
  const name = nameOf(e);
  const http = status(e);
  const message = err.message && err.message !== name && err.message !== 'UnknownError' ? err.message : '';
  const detail = how.scrub(`${name}${http ? ` HTTP ${http}` : ''}${message ? `: ${message}` : ''}`);
  const say = (code: ErrorCode, text: string, retryable?: boolean) =>
    new SyncguardError(
      code,
      `${op} ${where}: ${text} (${detail})`,
      retryable === undefined ? {} : { retryable },
    );

  if (name === 'AbortError') return new SyncguardError('ABORTED', `${op} ${where} was aborted`);
  if (
    [
      'InvalidAccessKeyId',
      'SignatureDoesNotMatch',
      'InvalidToken',
      'ExpiredToken',
      'TokenRefreshRequired',
      'CredentialsProviderError',
      'InvalidClientTokenId',
    ].includes(name)
  ) {
    return say(
      'STORE_AUTH',
      'the store refused the credentials: check accessKeyId and secretAccessKey in the config (or the AWS credential chain)',
    );
  }
  if (name === 'RequestTimeTooSkewed')
    return say('STORE_AUTH', "this machine's clock is too far from the server's: set the clock right (NTP)");
  if (http === 403 || name === 'AccessDenied') {
    if (/object ?lock|worm|retention|protected/i.test(message))
      return say('STORE_LOCKED', 'Object Lock refuses it while the object is retained');
    // A HEAD has no body to say why: a wrong secret and a missing permission look the same.
    return say(
      'STORE_AUTH',
      'access denied: check the credentials in the config, and that they may use this bucket',
    );
  }
  if (name === 'NoSuchBucket')
    return say('NOT_FOUND', 'the bucket does not exist: run `syncguard init` to create it');
  if (http === 404 || ['NoSuchKey', 'NotFound', 'NoSuchVersion', 'NoSuchUpload'].includes(name))
    return say('NOT_FOUND', 'it does not exist');
  if (http === 412 || name === 'PreconditionFailed')
    return say('STORE_CONFLICT', 'it exists already: objects are written once');
  // AWS: another conditional write to the key is under way; retrying gives 412 or success.
  if (name === 'ConditionalRequestConflict')
    return say('STORE_CONFLICT', 'another write to it is under way', true);
  if (['BadDigest', 'InvalidDigest', 'XAmzContentSHA256Mismatch'].includes(name)) {
    return say('INTEGRITY', 'the server received other bytes than were sent (damaged in transit)', true);
  }
  // AWS says "Bucket is missing Object Lock Configuration"; Ceph sends a bare InvalidRequest.
  if (name === 'InvalidRequest' && (/object ?lock/i.test(message) || how.sentLock)) {
    return say(
      'STORE_NO_LOCK',
      'the bucket has no Object Lock: run `syncguard init` to check the bucket, or write `objectLock: off` in the config',
    );
  }
  if (
    http === 301 ||
    name === 'PermanentRedirect' ||
    name === 'AuthorizationHeaderMalformed' ||
    name === 'IllegalLocationConstraintException'
  ) {
    return say('STORE_ERROR', 'the bucket is in another region: set store.region in the config');
  }
  if (http === 501 || name === 'NotImplemented')
    return say('STORE_ERROR', 'the server does not implement this (NotImplemented)');
  if (http === 503 || name === 'SlowDown' || name === 'ServiceUnavailable')
    return say('STORE_UNAVAILABLE', 'the server asks to slow down or is unavailable');
  if (
    (http !== undefined && http >= 500) ||
    [
      'InternalError',
      'RequestTimeout',
      'RequestTimeoutException',
      'OperationAborted',
      'TimeoutError',
    ].includes(name)
  ) {
    return say('STORE_UNAVAILABLE', 'the server failed; it will be tried again');
  }
  if (http === undefined && err.code !== undefined) {
    return say(
      'STORE_UNAVAILABLE',
      `the server cannot be reached (${err.code ?? name}): check store.endpoint and the network`,
    );
  }
  return say('STORE_ERROR', 'the server refused it');
}

export function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export function nameOf(e: unknown): string {
  const x = e as { name?: string; Code?: string };
  return (x?.name && x.name !== 'Error' ? x.name : x?.Code) ?? x?.name ?? 'Error';
}
