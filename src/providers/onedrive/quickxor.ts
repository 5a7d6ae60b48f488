/**
 * OneDrive's QuickXorHash, the one content hash both OneDrive Personal and Business report
 * (https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash): byte i of the input is
 * XORed into a 160-bit circular state at bit (i * 11) mod 160, the length is XORed into the last 8
 * bytes as a little-endian uint64, and the 20 bytes are given as base64.
 *
 * Byte i lands at the same bit position as byte i + 160, and XOR is linear, so update() only XORs each
 * byte into one of 160 accumulators; digest() places the 160 accumulators into the state. The result
 * does not depend on how the input is split into chunks.
 */
export class QuickXorHash {
  private readonly acc = new Uint8Array(160);
  private pos = 0;
  private length = 0;

  update(buf: Uint8Array): this {
    const acc = this.acc;
    const n = buf.length;
    let p = this.pos;
    let i = 0;
    while (i < n) {
      const m = Math.min(n - i, 160 - p);
      for (let j = 0; j < m; j++) acc[p + j] ^= buf[i + j];
      i += m;
      p += m;
      if (p === 160) p = 0;
    }
    this.pos = p;
    this.length += n;
    return this;
  }

  /** The hash as base64, as Graph gives it in file.hashes.quickXorHash. */
  digest(): string {
    const state = new Uint8Array(20);
    for (let k = 0; k < 160; k++) {
      const b = this.acc[k];
      if (b === 0) continue;
      const bit = (k * 11) % 160;
      const idx = bit >>> 3;
      const off = bit & 7;
      state[idx] ^= (b << off) & 0xff;
      if (off !== 0) state[(idx + 1) % 20] ^= b >>> (8 - off);
    }
    let len = BigInt(this.length);
    for (let i = 0; i < 8; i++) {
      state[12 + i] ^= Number(len & 0xffn);
      len >>= 8n;
    }
    return Buffer.from(state).toString('base64');
  }
}

export function quickXorHash(data: Uint8Array): string {
  return new QuickXorHash().update(data).digest();
}
