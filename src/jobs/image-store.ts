// Result images by content: a PNG is stored once under its SHA-256, whichever jobs return it.
// Names come only from hashes this process computed (never from a request).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ImageStore {
  /** Stores the bytes (once) and returns their SHA-256 (hex). */
  put(png: Buffer): string;
  get(sha256: string): Buffer;
  remove(sha256: string): void;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** <dir>/<sha256>.png, written to a temporary name, synced, then renamed (never half a file). */
export class FileImageStore implements ImageStore {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  pathOf(sha256: string): string {
    if (!HEX64.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
    return path.join(this.dir, `${sha256}.png`);
  }

  put(png: Buffer): string {
    const sha = sha256Hex(png);
    const file = this.pathOf(sha);
    if (fs.existsSync(file)) return sha;
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      fs.writeSync(fd, png);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    return sha;
  }

  get(sha256: string): Buffer {
    const png = fs.readFileSync(this.pathOf(sha256));
    if (sha256Hex(png) !== sha256) throw new Error(`result image ${sha256} is corrupt on disk`);
    return png;
  }

  remove(sha256: string): void {
    fs.rmSync(this.pathOf(sha256), { force: true });
  }
}

/** For a database in memory: nothing touches the disk. */
export class MemoryImageStore implements ImageStore {
  private readonly images = new Map<string, Buffer>();

  put(png: Buffer): string {
    const sha = sha256Hex(png);
    if (!this.images.has(sha)) this.images.set(sha, Buffer.from(png));
    return sha;
  }

  get(sha256: string): Buffer {
    const png = this.images.get(sha256);
    if (!png) throw new Error(`no result image ${sha256}`);
    return Buffer.from(png);
  }

  remove(sha256: string): void {
    this.images.delete(sha256);
  }

  get size(): number {
    return this.images.size;
  }
}
