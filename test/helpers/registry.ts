import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Debian's docker-registry on 127.0.0.1 at a free port, with its own storage and config in a
 * temporary directory: no auth, htpasswd basic auth, or token auth against the small bearer
 * token server in token-server.ts (a child process, so it answers while a test blocks in
 * spawnSync). stop() kills both and removes the directory.
 */
export interface Registry {
  host: string;
  dir: string;
  storage: string;
  /** the file holding a blob in the registry's filesystem storage */
  blobFile(digest: string): string;
  /** SIGSTOP / SIGCONT: a registry that accepts connections and never answers */
  pause(): void;
  resume(): void;
  stop(): void;
}

export interface RegistryAuth {
  kind: 'basic' | 'bearer';
  user: string;
  password: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string, ok: (status: number) => boolean, what: string, proc: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url);
      await r.body?.cancel();
      if (ok(r.status)) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not come up at ${url}: ${last}`);
}

export async function startRegistry(auth?: RegistryAuth): Promise<Registry> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-registry-'));
  const storage = path.join(dir, 'storage');
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let authYaml = '';
  let token: ChildProcess | null = null;
  if (auth?.kind === 'basic') {
    const h = spawnSync('htpasswd', ['-Bbn', auth.user, auth.password], { encoding: 'utf8' });
    if (h.status !== 0) throw new Error(`htpasswd: ${h.stderr}`);
    writeFileSync(path.join(dir, 'htpasswd'), h.stdout);
    authYaml = `auth:\n  htpasswd:\n    realm: bpfd-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
  } else if (auth?.kind === 'bearer') {
    const tport = await freePort();
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const keyFile = path.join(dir, 'token.key');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const certFile = path.join(dir, 'token.crt');
    const c = spawnSync('openssl', ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=bpfd-test-token', '-days', '2', '-out', certFile], { encoding: 'utf8' });
    if (c.status !== 0) throw new Error(`openssl: ${c.stderr}`);
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'token-server.js');
    token = spawn(process.execPath, [script, String(tport), keyFile, certFile, 'bpfd-test-issuer', 'bpfd-test', auth.user, auth.password], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor(`http://127.0.0.1:${tport}/health`, (s) => s === 200, 'token server', token);
    authYaml = `auth:\n  token:\n    realm: http://127.0.0.1:${tport}/token\n    service: bpfd-test\n    issuer: bpfd-test-issuer\n    rootcertbundle: ${certFile}\n`;
  }
  const config = path.join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: ${host}\n${authYaml}`);
  const proc = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'ignore'] });
  const stop = () => {
    for (const p of [proc, token]) {
      if (!p || p.exitCode !== null) continue;
      try {
        process.kill(p.pid!, 'SIGCONT');
        p.kill('SIGKILL');
      } catch {
        /* gone already */
      }
    }
    spawnSync('sleep', ['0.1']);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`http://${host}/v2/`, (s) => s === 200 || s === 401, 'docker-registry', proc);
  } catch (e) {
    stop();
    throw e;
  }
  return {
    host,
    dir,
    storage,
    blobFile: (digest) => {
      const hex = digest.replace(/^sha256:/, '');
      return path.join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
    pause: () => process.kill(proc.pid!, 'SIGSTOP'),
    resume: () => process.kill(proc.pid!, 'SIGCONT'),
    stop,
  };
}
