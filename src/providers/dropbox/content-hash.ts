import { createHash, type Hash } from 'node:crypto';

/** Dropbox hashes content in blocks of 4 MiB (https://www.dropbox.com/developers/reference/content-hash). */
export const CONTENT_HASH_BLOCK = 4 * 1024 * 1024;

/**
 * Dropbox's `content_hash`: SHA-256 over the concatenated raw SHA-256 digests of each 4 MiB block,
 * lowercase hex. An empty file has no blocks, so its hash is SHA-256 of nothing. Streaming: feed
 * chunks of any size; the result does not depend on how the input was cut.
 */
export class DropboxContentHasher {
  private overall: Hash = createHash('sha256');
  private block: Hash = createHash('sha256');
  private inBlock = 0;

  update(buf: Uint8Array): this {
    let off = 0;
    while (off < buf.length) {
      const n = Math.min(CONTENT_HASH_BLOCK - this.inBlock, buf.length - off);
      this.block.update(buf.subarray(off, off + n));
      this.inBlock += n;
      off += n;
      if (this.inBlock === CONTENT_HASH_BLOCK) {
        this.overall.update(this.block.digest());
        this.block = createHash('sha256');
        this.inBlock = 0;
      }
    }
    return this;
  }

  /** The hash in lowercase hex. Call once. */
  digest(): string {
    if (this.inBlock > 0) this.overall.update(this.block.digest());
    return this.overall.digest('hex');
  }
}

export function dropboxContentHash(data: Uint8Array): string {
  return new DropboxContentHasher().update(data).digest();
}
