import { existsSync, readFileSync } from 'node:fs';
import { BpfdError, denied, failed, invalidInput, notFound } from '../base/errors.js';
import type { Credential } from './auth.js';
import { apiHost, isLoopback } from './reference.js';

export interface ClientOptions {
  registry: string;
  repository: string;
  credential: Credential | null;
  /** how long a request may wait for the registry to answer (and between body chunks) */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** stops every request in flight and any later one (a pull the policy denied meanwhile) */
  signal?: AbortSignal;
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH';
  accept?: string[];
  body?: Uint8Array;
  contentType?: string;
  /** push needs a token for push,pull */
  push?: boolean;
  /** statuses the caller handles itself, beyond 2xx */
  allow?: number[];
}

/** A response whose body the caller reads; `touch` keeps the idle timeout from firing while data flows. */
export interface RegistryResponse {
  res: Response;
  touch(): void;
  done(): void;
}

/** Hosts where plain HTTP is allowed besides loopback: `insecure` in /etc/bpfd/registries.json. */
export function insecureRegistries(env: NodeJS.ProcessEnv = process.env): string[] {
  const file = env.BPFD_REGISTRIES_CONFIG || '/etc/bpfd/registries.json';
  if (!existsSync(file)) return [];
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { insecure?: unknown };
    return Array.isArray(doc.insecure) ? doc.insecure.filter((x): x is string => typeof x === 'string') : [];
  } catch (e) {
    throw invalidInput(`${file} is not valid JSON: ${(e as Error).message.split('\n')[0]}`, ['it holds {"insecure": ["host:port", …]}']);
  }
}

/** The challenge of a 401: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return { scheme: '', params: {} };
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) params[p[1].toLowerCase()] = p[2] ?? p[3];
  return { scheme: m[1].toLowerCase(), params };
}

/**
 * The distribution API of one repository, on the runtime's fetch (Node 20 and Bun alike).
 * Basic and bearer auth are answered when the registry asks for them; the Authorization
 * header goes only to the registry's own host (and the token realm it names), never along a
 * redirect to another host.
 */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  readonly base: string;
  readonly #credential: Credential | null;
  readonly #timeoutMs: number;
  #auth: string | null = null;
  #authScope: 'pull' | 'push' | null = null;
  readonly #insecure: boolean;
  readonly #signal: AbortSignal | undefined;

  constructor(o: ClientOptions) {
    this.#signal = o.signal;
    this.registry = o.registry;
    this.repository = o.repository;
    this.#credential = o.credential;
    this.#timeoutMs = o.timeoutMs;
    const host = apiHost(o.registry);
    this.#insecure = isLoopback(o.registry) || insecureRegistries(o.env).includes(o.registry);
    this.base = `${this.#insecure ? 'http' : 'https'}://${host}`;
  }

  /** A request to /v2/<repository>/<rest>, answering an auth challenge once. */
  async request(rest: string, o: RequestOptions = {}): Promise<RegistryResponse> {
    const url = rest.startsWith('http') ? rest : `${this.base}/v2/${this.repository}/${rest}`;
    const scope = o.push ? 'push' : 'pull';
    if (this.#authScope === 'pull' && scope === 'push') this.#auth = null;
    let r = await this.#send(url, o);
    if (r.res.status === 401) {
      r.done();
      await r.res.body?.cancel();
      await this.#authenticate(r.res.headers.get('www-authenticate') ?? '', scope);
      r = await this.#send(url, o);
      if (r.res.status === 401) {
        r.done();
        await r.res.body?.cancel();
        throw denied(`registry ${this.registry} refused the credentials${this.#credential ? ` of ${this.#credential.username} (from ${this.#credential.source})` : ''} for ${this.repository}`, [
          this.#credential ? 'check the user name and password' : 'give credentials with --registry-auth, BPFD_REGISTRY_AUTH or a containers auth.json',
        ]);
      }
    }
    const ok = (r.res.status >= 200 && r.res.status < 300) || (o.allow ?? []).includes(r.res.status);
    if (!ok) {
      r.done();
      const text = o.method === 'HEAD' ? '' : (await r.res.text().catch(() => '')).slice(0, 300);
      const what = `${o.method ?? 'GET'} ${new URL(url).pathname}`;
      if (r.res.status === 404) throw notFound(`registry ${this.registry}: ${what}: not found`);
      if (r.res.status === 403) throw denied(`registry ${this.registry}: ${what}: forbidden`, [text].filter(Boolean));
      throw failed(`registry ${this.registry}: ${what}: HTTP ${r.res.status}`, [text].filter(Boolean));
    }
    return r;
  }

  async #send(url: string, o: RequestOptions): Promise<RegistryResponse> {
    const ctrl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ctrl.abort(), this.#timeoutMs);
    };
    const stop = () => ctrl.abort();
    const done = () => {
      clearTimeout(timer);
      this.#signal?.removeEventListener('abort', stop);
    };
    touch();
    if (this.#signal?.aborted) stop();
    else this.#signal?.addEventListener('abort', stop, { once: true });
    const ownHost = new URL(this.base).host;
    let target = url;
    try {
      for (let hop = 0; hop < 6; hop++) {
        const headers: Record<string, string> = {};
        if (o.accept) headers.accept = o.accept.join(', ');
        if (o.contentType) headers['content-type'] = o.contentType;
        // credentials are for the registry itself: a redirect elsewhere (blob storage) gets none
        if (this.#auth && new URL(target).host === ownHost) headers.authorization = this.#auth;
        const res = await fetch(target, { method: o.method ?? 'GET', headers, body: o.body as unknown as BodyInit | undefined, redirect: 'manual', signal: ctrl.signal });
        const loc = res.headers.get('location');
        if (res.status >= 300 && res.status < 400 && loc && ![304].includes(res.status)) {
          await res.body?.cancel();
          const next = new URL(loc, target);
          if (next.protocol === 'http:' && new URL(target).protocol === 'https:') throw failed(`registry ${this.registry} redirected to plain HTTP (${next.host}); refused`);
          target = next.toString();
          continue;
        }
        return { res, touch, done };
      }
      throw failed(`registry ${this.registry}: too many redirects`);
    } catch (e) {
      done();
      throw this.#networkError(e);
    }
  }

  #networkError(e: unknown): BpfdError {
    if (e instanceof BpfdError) return e;
    if (this.#signal?.aborted) return failed(`the request to registry ${this.registry} was stopped`);
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (err.name === 'AbortError' || err.name === 'TimeoutError') {
      return failed(`registry ${this.registry} did not answer within ${this.#timeoutMs / 1000} s`, ['check that it is up and reachable; BPFD_REGISTRY_TIMEOUT sets the wait in seconds']);
    }
    const code = err.cause?.code ?? '';
    const why = code || err.cause?.message || err.message;
    return failed(`cannot reach registry ${this.registry} (${this.base}): ${why}`, [
      this.#insecure ? 'check that it is running' : `it is asked over HTTPS; a plain-HTTP registry must be listed in /etc/bpfd/registries.json ("insecure")`,
    ]);
  }

  async #authenticate(challenge: string, scope: 'pull' | 'push'): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    if (scheme === 'basic') {
      if (!this.#credential) throw denied(`registry ${this.registry} needs credentials for ${this.repository}`, ['give them with --registry-auth, BPFD_REGISTRY_AUTH or a containers auth.json']);
      this.#auth = this.#credential.basicHeader();
      this.#authScope = scope;
      return;
    }
    if (scheme !== 'bearer' || !params.realm) throw failed(`registry ${this.registry} asks for an authentication bpfd does not know ('${challenge.split(' ')[0]}')`);
    const realm = new URL(params.realm);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && (this.#insecure || isLoopback(realm.host)))) {
      throw failed(`registry ${this.registry} names a token service over plain HTTP (${realm.host}); refused`);
    }
    if (params.service) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', `repository:${this.repository}:${scope === 'push' ? 'pull,push' : 'pull'}`);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const ctrl = this.#signal ? AbortSignal.any([timeout, this.#signal]) : timeout;
    let res: Response;
    try {
      res = await fetch(realm, {
        headers: this.#credential ? { authorization: this.#credential.basicHeader() } : {},
        redirect: 'error',
        signal: ctrl,
      });
    } catch (e) {
      const err = e as Error;
      if (this.#signal?.aborted) throw failed(`the request to the token service of registry ${this.registry} was stopped`);
      if (err.name === 'AbortError' || err.name === 'TimeoutError') throw failed(`the token service of registry ${this.registry} (${realm.host}) did not answer within ${this.#timeoutMs / 1000} s`);
      throw failed(`cannot reach the token service of registry ${this.registry} (${realm.host}): ${(err as { cause?: { code?: string } }).cause?.code ?? err.message}`);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw denied(`registry ${this.registry}: the token service refused${this.#credential ? ` the credentials of ${this.#credential.username} (from ${this.#credential.source})` : ' an anonymous token'} for ${this.repository}`, [
        this.#credential ? 'check the user name and password' : 'give credentials with --registry-auth, BPFD_REGISTRY_AUTH or a containers auth.json',
      ]);
    }
    if (!res.ok) throw failed(`registry ${this.registry}: the token service answered HTTP ${res.status}`);
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw failed(`registry ${this.registry}: the token service answered without a token`);
    this.#auth = `Bearer ${token}`;
    this.#authScope = scope;
  }
}
