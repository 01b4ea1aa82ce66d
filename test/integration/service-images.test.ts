import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { client, Code, serving, startService, type Service } from '../helpers/service.js';

const skip = needsRoot();

// PullBytecode and Load from an image through the service, against Debian's docker-registry
// with basic auth: the caller's BytecodeImage username/password are the registry credentials.

describe('bpfd system service: bytecode images (PullBytecode, Load with BytecodeLocation.image)', { skip }, () => {
  const user = 'svcpull';
  const password = 'pw-service-images-7f3a';
  let reg: Registry;
  let env: Env;
  let veth: VethPair;
  let svc: Service | undefined;
  before(async () => {
    reg = await startRegistry({ kind: 'basic', user, password });
    // no auth files or keys of the machine's: the credentials come from the requests alone
    env = makeEnv({ BPFD_REGISTRY_TIMEOUT: '3', HOME: '/nonexistent', DOCKER_CONFIG: '/nonexistent', REGISTRY_AUTH_FILE: '/nonexistent' });
    veth = makeVethPair();
  });
  after(async () => {
    await svc?.stop();
    env?.cleanup();
    veth?.cleanup();
    reg?.stop();
  });

  test('an image pushed by bpfd image build --push: PullBytecode caches it, Load(image) + Attach drops pings; bad references are refused', async () => {
    const tag = `${reg.host}/svc/drop:v1`;
    const auth = Buffer.from(`${user}:${password}`).toString('base64');
    const built = env.run('image', 'build', '--tag', tag, fixture('xdp_drop.o'), '--push', '--registry-auth', auth, '-o', 'json');
    assert.equal(built.status, 0, built.stderr);
    const digest: string = built.json().digest;
    // build caches what it pushed: start from an empty cache so PullBytecode must fetch it
    assert.equal(env.run('images', 'rm', digest).status, 0);
    assert.deepEqual(env.run('images', '-o', 'json').json(), []);

    svc = startService(env, { address: `unix://${env.dir}/bpfd-images.sock`, args: ['--timeout', '0'] });
    await serving(svc);
    const c = client(svc.address);
    const image = { url: tag, image_pull_policy: 0, username: user, password };

    const noCreds = await c.call('PullBytecode', { image: { url: tag } });
    assert.equal(noCreds.code, Code.PERMISSION_DENIED, noCreds.details);
    assert.match(noCreds.details, /needs credentials/);
    const wrong = await c.call('PullBytecode', { image: { ...image, password: 'not-it' } });
    assert.equal(wrong.code, Code.PERMISSION_DENIED, wrong.details);
    assert.match(wrong.details, /refused the credentials of svcpull/);

    const pulled = await c.call('PullBytecode', { image });
    assert.equal(pulled.code, 0, pulled.details);
    const cached = env.run('images', '-o', 'json').json();
    assert.deepEqual(cached.map((i: any) => [i.digest, i.references]), [[digest, [tag]]], 'PullBytecode put the image in the cache');

    // Never: from the cache only, without credentials
    const load = await c.call('Load', { bytecode: { image: { url: tag, image_pull_policy: 2 } }, info: [{ name: 'xdp_drop', program_type: 0 }], metadata: { app: 'svc-image' } });
    assert.equal(load.code, 0, load.details);
    const { info, kernel_info } = load.response.programs[0];
    assert.equal(info.bytecode.image.url, tag, 'ProgramInfo names the image');
    assert.equal(info.bytecode.file, undefined);
    assert.deepEqual(env.run('get', String(kernel_info.id), '-o', 'json').json().bytecode, { image: tag, digest });
    assert.ok(veth.ping(), 'Load only loads: pings still pass');
    const att = await c.call('Attach', { id: kernel_info.id, attach: { xdp_attach_info: { iface: veth.ifB, netns: veth.nsPathB, priority: 50, proceed_on: [2, 31] } } });
    assert.equal(att.code, 0, att.details);
    assert.equal(veth.ping(), false, 'the program from the image drops pings');
    assert.equal((await c.call('Unload', { id: kernel_info.id })).code, 0);
    assert.ok(progGone(kernel_info.id));
    assert.ok(veth.ping(), 'unloaded: pings pass again');

    // Always with the caller's credentials: the registry is asked again, and it loads
    const always = await c.call('Load', { bytecode: { image }, info: [{ name: 'xdp_drop', program_type: 0 }] });
    assert.equal(always.code, 0, always.details);
    assert.equal((await c.call('Unload', { id: always.response.programs[0].kernel_info.id })).code, 0);

    const malformed = await c.call('PullBytecode', { image: { url: 'Not A Reference!' } });
    assert.equal(malformed.code, Code.INVALID_ARGUMENT, malformed.details);
    const noUrl = await c.call('PullBytecode', { image: {} });
    assert.equal(noUrl.code, Code.INVALID_ARGUMENT);
    assert.match(noUrl.details, /url is missing/);
    const badPolicy = await c.call('Load', { bytecode: { image: { url: tag, image_pull_policy: 7 } }, info: [{ name: 'xdp_drop' }] });
    assert.equal(badPolicy.code, Code.INVALID_ARGUMENT);
    assert.match(badPolicy.details, /image_pull_policy 7 .*0 Always, 1 IfNotPresent or 2 Never/);
    const halfCreds = await c.call('PullBytecode', { image: { url: tag, username: user } });
    assert.equal(halfCreds.code, Code.INVALID_ARGUMENT);
    const missingTag = await c.call('PullBytecode', { image: { ...image, url: `${reg.host}/svc/drop:nope` } });
    assert.equal(missingTag.code, Code.NOT_FOUND, missingTag.details);
    const neverUncached = await c.call('Load', { bytecode: { image: { url: `${reg.host}/svc/other:v1`, image_pull_policy: 2 } }, info: [{ name: 'xdp_drop' }] });
    assert.equal(neverUncached.code, Code.NOT_FOUND);
    assert.match(neverUncached.details, /not in the cache/);
    const unlisted = await c.call('Load', { bytecode: { image: { url: tag, image_pull_policy: 2 } }, info: [{ name: 'nope', program_type: 0 }] });
    assert.equal(unlisted.code, Code.INVALID_ARGUMENT, unlisted.details);

    // the command line as a client: bpfd pull --remote is PullBytecode, --registry-auth its credentials
    assert.equal(env.run('images', 'rm', digest).status, 0);
    env.env.BPFD_SOCKET = svc.address;
    const anon = env.run('pull', '--remote', tag);
    assert.equal(anon.status, 3, anon.stderr);
    assert.match(anon.stderr, /needs credentials/);
    const remote = env.run('pull', '--remote', tag, '--registry-auth', auth, '-o', 'json');
    assert.equal(remote.status, 0, remote.stderr);
    assert.equal(remote.json().digest, digest);
    assert.deepEqual(remote.json().references, [tag]);
    assert.deepEqual(env.run('images', '-o', 'json').json().map((i: any) => i.digest), [digest], 'pulled into the service\'s cache');

    // and bpfd load image --remote is Load with the image, attach included, printed as in-process
    const viaCli = env.run('load', 'image', '--remote', '--image-url', tag, '--name', 'xdp_drop', '--pull-policy', 'Always', '--registry-auth', auth,
      '--iface', veth.ifB, '--netns', veth.nsPathB, '-o', 'json');
    assert.equal(viaCli.status, 0, viaCli.stderr);
    const viaCliView = viaCli.json();
    assert.deepEqual(viaCliView.bytecode, { image: tag, digest });
    assert.equal(viaCliView.links.length, 1, 'attached in the same Load');
    assert.deepEqual(env.run('get', String(viaCliView.id), '-o', 'json').json(), viaCliView, 'what the client printed is what get shows');
    assert.equal(veth.ping(), false, 'the image loaded through the CLI client drops pings');
    const noAuth = env.run('load', 'image', '--remote', '--image-url', tag, '--name', 'xdp_drop', '--pull-policy', 'Always');
    assert.equal(noAuth.status, 3, 'the service lends no credentials: the client gives its own');
    assert.match(noAuth.stderr, /needs credentials/);
    assert.equal(env.run('unload', '--remote', String(viaCliView.id)).status, 0);
    assert.ok(veth.ping(), 'unloaded: pings pass again');

    c.close();
    assert.equal(await svc.stop(), 0);
    assert.ok(!svc.log().includes(password), 'the registry password is never in the service log');
    assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'no program left behind');
    assert.deepEqual(env.pins(), []);
  });
});
