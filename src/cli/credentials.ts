import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where `gatehouse login` keeps its tokens: $XDG_CONFIG_HOME/gatehouse/credentials.json
 * (default ~/.config/gatehouse/). The directory is 0700 and the file 0600; every write goes
 * to a new file that replaces the old one in one rename, so a reader never sees half a
 * file. A lock file serialises refreshes between `gatehouse token` processes running at
 * once, so one refreshes and the others use its result.
 */

export interface StoredLogin {
  /** The app's resource identifier: tokens are for it, `gatehouse token <url>` finds them by it. */
  resource: string;
  issuer: string;
  clientId: string;
  /** The authorization server metadata the login used (endpoints), so a refresh needs no discovery. */
  server: Record<string, unknown>;
  accessToken: string;
  /** Epoch ms. */
  expiresAt: number;
  refreshToken: string | undefined;
  scope: string;
  createdAt: number;
  /**
   * The header the app takes Gatehouse tokens in besides Authorization (tokens.bearerHeader,
   * from its protected-resource metadata at login); null: none; absent: a login made before
   * Gatehouse said.
   */
  tokenHeader?: string | null;
}

interface FileShape {
  version: 1;
  logins: Record<string, StoredLogin>;
}

function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const base =
    env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'gatehouse');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Credentials {
  readonly dir: string;
  readonly file: string;
  private readonly lockFile: string;

  constructor(dir = configDir()) {
    this.dir = dir;
    this.file = join(dir, 'credentials.json');
    this.lockFile = join(dir, 'credentials.lock');
  }

  private ensureDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (process.platform !== 'win32' && (statSync(this.dir).mode & 0o077) !== 0) chmodSync(this.dir, 0o700);
  }

  read(): FileShape {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, logins: {} };
      throw err;
    }
    try {
      const data = JSON.parse(text) as FileShape;
      if (data && data.version === 1 && typeof data.logins === 'object' && data.logins) return data;
    } catch {
      // fall through
    }
    throw new Error(`${this.file} is not a Gatehouse credentials file; move it away and sign in again`);
  }

  private write(data: FileShape): void {
    this.ensureDir();
    const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(data, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, this.file);
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        // gone already
      }
      throw err;
    }
  }

  /** The login whose resource covers this URL (same origin, path prefix on a segment boundary), the most specific first. */
  find(url: URL): StoredLogin | undefined {
    let best: StoredLogin | undefined;
    for (const login of Object.values(this.read().logins)) {
      if (covers(login.resource, url) && (!best || login.resource.length > best.resource.length)) best = login;
    }
    return best;
  }

  save(login: StoredLogin): Promise<void> {
    return this.locked(async () => this.saveLocked(login));
  }

  remove(resource: string): Promise<void> {
    return this.locked(async () => this.removeLocked(resource));
  }

  private unlock(): void {
    try {
      unlinkSync(this.lockFile);
    } catch {
      // already removed as stale by someone else
    }
  }

  /**
   * Holds the lock for fn (a refresh, or any change to the file): waits for another process
   * that holds it (up to 30 s); a lock older than a minute was left by a crashed process and
   * is removed.
   */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    this.ensureDir();
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const fd = openSync(this.lockFile, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        try {
          if (Date.now() - statSync(this.lockFile).mtimeMs > 60_000) this.unlock();
        } catch {
          // released meanwhile
        }
        if (Date.now() > deadline)
          throw new Error(`${this.lockFile} is held by another gatehouse process; remove it if none is running`);
        await sleep(50);
      }
    }
    try {
      return await fn();
    } finally {
      this.unlock();
    }
  }

  /** Changes inside locked(), where the lock is already ours. */
  saveLocked(login: StoredLogin): void {
    const data = this.read();
    data.logins[login.resource] = login;
    this.write(data);
  }

  removeLocked(resource: string): void {
    const data = this.read();
    if (!(resource in data.logins)) return;
    delete data.logins[resource];
    this.write(data);
  }
}

/** Whether a resource identifier covers the URL: the same origin, and the URL's path at or below the resource's. */
export function covers(resource: string, url: URL): boolean {
  let r: URL;
  try {
    r = new URL(resource);
  } catch {
    return false;
  }
  if (r.origin !== url.origin) return false;
  const base = r.pathname.replace(/\/+$/, '');
  return base === '' || url.pathname === base || url.pathname.startsWith(`${base}/`);
}
