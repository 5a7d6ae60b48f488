/**
 * Content locations that failed a read check: `verify` found that the bytes an object holds at an
 * offset do not hash to what a manifest says, or that the object is missing. Such a location is never
 * reused: the next snapshot reads the file again and stores its content anew (a pack's content in a
 * new pack; a blob is replaced where the store lets it). The list is kept in a file of the state
 * folder, one per store, so that it outlives the run that found it; another machine learns it from
 * its own `verify`.
 */
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

export interface DamagedLocation {
  object: string;
  /** In a pack: where the content starts. Absent: the whole object (a blob, or a missing object). */
  offset?: number;
  /** The content a manifest expected there, when known. */
  sha256?: string;
  found: string;
  problem: string;
}

interface DamagedFile {
  format: 'syncguard-damaged-locations';
  version: 1;
  locations: DamagedLocation[];
}

const MAX_FILE_BYTES = 16 * 1024 * 1024;

export class DamagedLocations {
  private readonly map = new Map<string, DamagedLocation>();
  private changed = false;

  constructor(readonly file?: string) {}

  /** Reads the list; a missing, unreadable or oversized file is an empty list. */
  static async load(file?: string): Promise<DamagedLocations> {
    const out = new DamagedLocations(file);
    if (!file) return out;
    try {
      if ((await fsp.stat(file)).size > MAX_FILE_BYTES) return out;
      const d = JSON.parse(await fsp.readFile(file, 'utf8')) as DamagedFile;
      if (d?.format === 'syncguard-damaged-locations' && Array.isArray(d.locations))
        for (const l of d.locations)
          if (typeof l?.object === 'string') out.map.set(keyOf(l.object, l.offset), l);
    } catch {
      // Nothing known yet.
    }
    return out;
  }

  get size(): number {
    return this.map.size;
  }

  /** Whether the content at `offset` of `object` (or the whole object) failed a read check. */
  has(object: string, offset?: number): boolean {
    return this.map.has(keyOf(object, offset)) || this.map.has(keyOf(object, undefined));
  }

  add(l: DamagedLocation): void {
    const k = keyOf(l.object, l.offset);
    if (this.map.has(k)) return;
    this.map.set(k, l);
    this.changed = true;
  }

  list(): DamagedLocation[] {
    return [...this.map.values()];
  }

  /** Writes the list when something was added (a temporary file renamed into place, 0600). */
  async save(): Promise<void> {
    if (!this.file || !this.changed) return;
    await fsp.mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const d: DamagedFile = { format: 'syncguard-damaged-locations', version: 1, locations: this.list() };
    await fsp.writeFile(tmp, JSON.stringify(d), { mode: 0o600 });
    await fsp.rename(tmp, this.file);
    this.changed = false;
  }
}

function keyOf(object: string, offset: number | undefined): string {
  return `${object}#${offset ?? '*'}`;
}
