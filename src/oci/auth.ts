import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { invalidInput } from '../base/errors.js';

/**
 * A user name and password for one registry. The password is kept out of JSON, string
 * conversion and util.inspect, so that a credential logged or stored by mistake shows nothing.
 */
export class Credential {
  readonly username: string;
  readonly #password: string;
  /** where it came from, for messages: a file path or the flag */
  readonly source: string;
  constructor(username: string, password: string, source: string) {
    this.username = username;
    this.#password = password;
    this.source = source;
  }
  get password(): string {
    return this.#password;
  }
  basicHeader(): string {
    return `Basic ${Buffer.from(`${this.username}:${this.#password}`).toString('base64')}`;
  }
  toJSON() {
    return { username: this.username, source: this.source };
  }
  toString() {
    return `credential for ${this.username} (from ${this.source})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }
}

/** `--registry-auth` / BPFD_REGISTRY_AUTH: base64 of user:password. */
export function parseRegistryAuth(b64: string, source: string): Credential {
  const text = Buffer.from(b64.trim(), 'base64').toString('utf8');
  const colon = text.indexOf(':');
  // never echo the value: it is a password
  if (!/^[A-Za-z0-9+/=_-]+$/.test(b64.trim()) || colon <= 0) {
    throw invalidInput(`${source} is not base64 of USER:PASSWORD`, ['make it with: printf %s "user:password" | base64 -w0']);
  }
  return new Credential(text.slice(0, colon), text.slice(colon + 1), source);
}

/** The credential files other container tools use, in the order they look at them. */
export function authFileCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || os.homedir();
  const out: string[] = [];
  if (env.REGISTRY_AUTH_FILE) out.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) out.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  out.push(path.join(home, '.config', 'containers', 'auth.json'));
  if (env.DOCKER_CONFIG) out.push(path.join(env.DOCKER_CONFIG, 'config.json'));
  out.push(path.join(home, '.docker', 'config.json'));
  return out;
}

/**
 * The credential for `registry/repository` from the first credentials file that exists, or null.
 * Entries may name a registry, a registry with a repository prefix (containers' auth.json), or
 * a URL (Docker's older `https://host/v1/` keys); the longest match wins.
 */
export function credentialFromFiles(registry: string, repository: string, env: NodeJS.ProcessEnv = process.env): Credential | null {
  const file = authFileCandidates(env).find((f) => existsSync(f));
  if (!file) return null;
  let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw invalidInput(`credentials file ${file} is not valid JSON: ${(e as Error).message.split('\n')[0]}`, ['fix it, or point REGISTRY_AUTH_FILE at another file']);
  }
  const auths = doc.auths ?? {};
  const keyOf = (k: string) => k.replace(/^https?:\/\//, '').replace(/\/+$/, '').replace(/\/v[12]$/, '');
  const wanted = registry === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [registry];
  let best: { len: number; entry: { auth?: string; username?: string; password?: string } } | null = null;
  for (const [k, entry] of Object.entries(auths)) {
    const key = keyOf(k);
    for (const reg of wanted) {
      const full = `${reg}/${repository}`;
      if (key === reg || full === key || full.startsWith(`${key}/`)) {
        if (!best || key.length > best.len) best = { len: key.length, entry };
      }
    }
  }
  if (!best) return null;
  const { auth, username, password } = best.entry;
  if (auth) {
    const text = Buffer.from(auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon <= 0) throw invalidInput(`credentials file ${file}: the entry for ${registry} has an "auth" that is not base64 of USER:PASSWORD`);
    return new Credential(text.slice(0, colon), text.slice(colon + 1), file);
  }
  if (username && password) return new Credential(username, password, file);
  return null;
}

/**
 * The credential a request uses: the flag or variable first, then the files. With `ownOnly`,
 * only what the request itself gave: the variable and the files are the running process's
 * (root's, in the service), which a caller who is not root must not borrow.
 */
export function credentialFor(registry: string, repository: string, explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, ownOnly = false): Credential | null {
  if (explicit) return parseRegistryAuth(explicit, '--registry-auth');
  if (ownOnly) return null;
  if (env.BPFD_REGISTRY_AUTH) return parseRegistryAuth(env.BPFD_REGISTRY_AUTH, 'BPFD_REGISTRY_AUTH');
  return credentialFromFiles(registry, repository, env);
}
