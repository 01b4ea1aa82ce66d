import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { callAs, client, Code, makeUser, serving, startService, type Service, type TestUser } from '../helpers/service.js';

const skip = needsRoot();

// Since 3e0dda4 the registry credentials of the running process (BPFD_REGISTRY_AUTH, root's auth
// files) serve root alone. Here, end to end: a service that holds root's credentials for an
// htpasswd registry, and a caller of another uid (setpriv) whom the policy data lets load and pull.

describe('bpfd system service: a caller who is not root pulls with their own registry credentials, never root\'s', { skip }, () => {
  const user = 'rootpull';
  const password = 'pw-root-only-91c2';
  let reg: Registry;
  let env: Env;
  let caller: TestUser;
  let svc: Service | undefined;
  before(async () => {
    reg = await startRegistry({ kind: 'basic', user, password });
    env = makeEnv({ BPFD_REGISTRY_TIMEOUT: '3', HOME: '/nonexistent', DOCKER_CONFIG: '/nonexistent', REGISTRY_AUTH_FILE: '/nonexistent' });
    caller = makeUser();
    chmodSync(env.dir, 0o711); // the caller reaches the socket in it
  });
  after(async () => {
    await svc?.stop();
    env?.cleanup();
    caller?.cleanup();
    reg?.stop();
  });

  test('root\'s BPFD_REGISTRY_AUTH and auth file pull for root; the other uid is refused without credentials and pulls with its own', async () => {
    const tag = `${reg.host}/scoped/drop:v1`;
    const auth = Buffer.from(`${user}:${password}`).toString('base64');
    const built = env.run('image', 'build', '--tag', tag, fixture('xdp_drop.o'), '--push', '--registry-auth', auth, '-o', 'json');
    assert.equal(built.status, 0, built.stderr);
    const digest: string = built.json().digest;
    assert.equal(env.run('images', 'rm', digest).status, 0);

    // root's credentials, both ways a root process has them: the variable and an auth file
    const authFile = path.join(env.dir, 'root-auth.json');
    writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth } } }), { mode: 0o600 });
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ grants: [{ name: 'pullers', groups: [caller.name], via: ['socket'] }] }));
    svc = startService(env, {
      address: `unix://${env.dir}/bpfd-scoped.sock`,
      args: ['--timeout', '0', '--socket-group', caller.name],
      processEnv: { BPFD_REGISTRY_AUTH: auth, REGISTRY_AUTH_FILE: authFile },
    });
    await serving(svc);
    const cached = () => (env.run('images', '-o', 'json').json() as Array<{ digest: string }>).map((i) => i.digest);

    // root, without credentials in the request: the service's own serve it
    const c = client(svc.address);
    const asRoot = await c.call('PullBytecode', { image: { url: tag } });
    assert.equal(asRoot.code, 0, asRoot.details);
    assert.deepEqual(cached(), [digest]);
    c.close();
    assert.equal(env.run('images', 'rm', digest).status, 0);

    // the other uid, without credentials: anonymous, which the registry refuses; nothing cached
    const pull = callAs(caller, svc.address, 'PullBytecode', { image: { url: tag } });
    assert.equal(pull.code, Code.PERMISSION_DENIED, pull.details);
    assert.match(pull.details, /needs credentials/);
    const load = callAs(caller, svc.address, 'Load', { bytecode: { image: { url: tag, image_pull_policy: 0 } }, info: [{ name: 'xdp_drop', program_type: 0 }] });
    assert.equal(load.code, Code.PERMISSION_DENIED, load.details);
    assert.match(load.details, /needs credentials/);
    assert.deepEqual(cached(), [], 'root\'s credentials fetched nothing for the other uid');

    // with its own (BytecodeImage username and password): pulled, and loaded
    const own = callAs(caller, svc.address, 'PullBytecode', { image: { url: tag, username: user, password } });
    assert.equal(own.code, 0, own.details);
    assert.deepEqual(cached(), [digest]);
    const loaded = callAs(caller, svc.address, 'Load', { bytecode: { image: { url: tag, image_pull_policy: 0, username: user, password } }, info: [{ name: 'xdp_drop', program_type: 0 }] });
    assert.equal(loaded.code, 0, loaded.details);
    const id: number = loaded.response.programs[0].kernel_info.id;
    assert.deepEqual(env.run('get', String(id), '-o', 'json').json().owner, { uid: caller.uid, username: caller.name });
    assert.equal(callAs(caller, svc.address, 'Unload', { id }).code, 0);

    const log = env.run('policy', 'log', '-o', 'json').json() as Array<{ subject: { uid: number }; action: string; allow: boolean }>;
    assert.ok(log.some((d) => d.subject.uid === caller.uid && d.action === 'pull' && d.allow), 'the policy allowed the pull: the registry, not the policy, refused it');
    assert.equal(await svc.stop(), 0);
    assert.ok(!svc.log().includes(password), 'no password in the service log');
  });
});
