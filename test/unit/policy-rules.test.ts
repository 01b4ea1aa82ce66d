import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { evaluate } from '../../src/policy/engine.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { example, existing, fixtureProgram, loadInput, policyEnv, subject, type PolicyEnv } from '../helpers/policy.js';

// Every rule of the shipped policy, evaluated by the compiled wasm/bpfd.wasm with the netops
// example data and program facts read from fixtures/bytecode.

const root = subject({ uid: 0, gid: 0, groups: ['root'], username: 'root' });
const contractor = subject({ groups: ['netops', 'contractors'] });

let env: PolicyEnv;
before(() => {
  env = policyEnv({ data: example('netops') });
});
after(() => env.cleanup());

async function decide(input: PolicyInput | unknown) {
  const d = await evaluate(input, env.paths);
  return d;
}

async function assertDenied(input: PolicyInput | unknown, fragment: string | RegExp) {
  const d = await decide(input);
  assert.equal(d.allow, false, `expected a deny, got: ${JSON.stringify(d.reasons)}`);
  const hit = d.reasons.some((r) => (typeof fragment === 'string' ? r.includes(fragment) : fragment.test(r)));
  assert.ok(hit, `no reason matches ${fragment}: ${JSON.stringify(d.reasons)}`);
}

describe('shipped policy (compiled) with the netops example data', () => {
  it('allows a granted group member to load and attach the counting fixture', async () => {
    const d = await decide(loadInput());
    assert.deepEqual({ allow: d.allow, reasons: d.reasons }, { allow: true, reasons: ['allowed by grant "netops"'] });
  });

  it('allows root by default, and denies root when the data turns that off', async () => {
    const d = await decide(loadInput({ subject: root, attach: { iface: 'lo', netns: null, priority: 500, proceed_on: [] } }));
    assert.deepEqual(d.reasons, ['uid 0 (root) is allowed by default']);
    const off = policyEnv({ data: { root_allowed: false } });
    try {
      const d2 = await evaluate(loadInput({ subject: root }), off.paths);
      assert.equal(d2.allow, false);
      assert.match(d2.reasons[0], /^uid 0 \(root\) has no grant/);
    } finally {
      off.cleanup();
    }
  });

  it('denies a user without a grant, saying how to get one', () => {
    return assertDenied(loadInput({ subject: subject({ groups: ['users'] }) }), 'uid 1001 (alice) has no grant in the policy data');
  });

  it('grants by uid (monitoring-agent) within its interface and band', async () => {
    const agent = subject({ uid: 2001, groups: [], username: 'agent' });
    assert.equal((await decide(loadInput({ subject: agent, attach: { iface: 'eth0', netns: null, priority: 950, proceed_on: [] } }))).allow, true);
    await assertDenied(loadInput({ subject: agent, attach: { iface: 'eth1', netns: null, priority: 950, proceed_on: [] } }), 'interface "eth1" is not granted (granted: eth0)');
    await assertDenied(loadInput({ subject: agent, action: 'pull', program: { image: 'registry.example.com/net/x:1' } }), 'action "pull" is not granted');
  });

  it('checks the interface pattern, the priority range and the program type', async () => {
    await assertDenied(loadInput({ attach: { iface: 'lo', netns: null, priority: 150, proceed_on: [] } }), 'interface "lo" is not granted (granted: eth*, veth*)');
    await assertDenied(loadInput({ attach: { iface: 'eth0', netns: null, priority: 950, proceed_on: [] } }), 'priority 950 is outside the granted range 100..899');
    await assertDenied(loadInput({ program: { ...fixtureProgram('xdp_pass'), type: 'tc' } }), 'program type "tc" is not granted (granted: xdp)');
    assert.equal((await decide(loadInput({ attach: { iface: 'veth-lab', netns: null, priority: 899, proceed_on: [] } }))).allow, true);
  });

  it('limits the instruction count', () => {
    return assertDenied(loadInput({ program: { ...fixtureProgram('xdp_count'), insn_count: 5000 } }), 'program has 5000 instructions, the grant allows at most 4096');
  });

  it('allows pulls only from the granted registry path', async () => {
    assert.equal((await decide({ subject: subject(), action: 'pull', program: { image: 'registry.example.com/net/fw:2' } })).allow, true);
    await assertDenied({ subject: subject(), action: 'pull', program: { image: 'docker.io/evil/x:1' } }, 'image "docker.io/evil/x:1" is not granted');
  });

  it("refuses acting on someone else's program without manage_others", async () => {
    const program = fixtureProgram('xdp_pass');
    await assertDenied({ subject: subject(), action: 'unload', program, owner: { uid: 1002, username: 'bob' } }, 'the program belongs to uid 1002');
    assert.equal((await decide({ subject: subject(), action: 'unload', program, owner: { uid: 1001, username: 'alice' } })).allow, true);
    const lead = subject({ groups: ['netops-leads'] });
    assert.equal((await decide({ subject: lead, action: 'detach', program, owner: { uid: 1002, username: 'bob' } })).allow, true);
  });

  it('keeps the reserved band for its holders, root included', async () => {
    const at = (priority: number) => ({ iface: 'eth0', netns: null, priority, proceed_on: [] });
    await assertDenied(loadInput({ subject: root, attach: at(10) }), 'priority 10 is in the band 0..99 reserved for application "firewall", group "secops" (early drop of hostile traffic)');
    assert.equal((await decide(loadInput({ subject: root, attach: at(10), application: 'firewall' }))).allow, true);
    assert.equal((await decide(loadInput({ subject: { ...root, groups: ['secops'] }, attach: at(10) }))).allow, true);
  });

  it('orders applications against the programs already on the interface', async () => {
    const others = [existing('fw_drop', 120, 'firewall'), existing('mon', 300, 'monitoring'), ...Array.from({ length: 8 }, (_, i) => existing(`p${i}`, 400 + i))];
    const at = (priority: number) => ({ iface: 'eth0', netns: null, priority, proceed_on: [] });
    await assertDenied(loadInput({ application: 'monitoring', existing: others, attach: at(110) }), '"fw_drop" ("firewall") is at priority 120: use a priority of 120 or above');
    assert.equal((await decide(loadInput({ application: 'monitoring', existing: others, attach: at(120) }))).allow, true, 'a tie runs after what is there');
    await assertDenied(loadInput({ application: 'ratelimit', existing: others, attach: at(300) }), '"mon" ("monitoring") is already at priority 300: use a priority below 300');
    assert.equal((await decide(loadInput({ application: 'ratelimit', existing: others, attach: at(299) }))).allow, true);
  });

  it('forbids bpf_redirect* to contractors, found in the bytecode itself', async () => {
    const redirect = fixtureProgram('xdp_redirect');
    await assertDenied(loadInput({ subject: contractor, program: redirect }), 'helper bpf_redirect is forbidden to group "contractors" (rule "bpf_redirect*")');
    assert.equal((await decide(loadInput({ subject: contractor }))).allow, true, 'the counting fixture calls no redirect helper');
    assert.equal((await decide(loadInput({ program: redirect }))).allow, true, 'netops members may redirect');
    await assertDenied(loadInput({ subject: contractor, program: { ...redirect, helpers: [], kfuncs: ['bpf_obj_new_impl'] } }), 'kfunc bpf_obj_new_impl is forbidden');
  });

  it('applies the licence rule to loads', async () => {
    await assertDenied(loadInput({ program: { ...fixtureProgram('xdp_count'), license: 'Proprietary' } }), 'licence "Proprietary" is not allowed (allowed: GPL, GPL v2, Dual BSD/GPL, Dual MIT/GPL)');
    assert.equal((await decide(loadInput({ program: fixtureProgram('xdp_redirect') }))).allow, true, 'Dual MIT/GPL is allowed');
  });

  it('denies malformed input with a reason per problem', async () => {
    await assertDenied({ subject: { uid: 'root' }, action: 'load', program: {} }, 'invalid input: subject.uid must be a number');
    await assertDenied({ subject: subject(), action: 'reboot' }, 'invalid input: action must be one of load, attach, detach, unload, pull, share (got "reboot")');
    await assertDenied({ subject: subject(), action: 'attach', program: fixtureProgram('xdp_pass'), attach: { iface: 'eth0', priority: 'first' } }, 'invalid input: attach.priority must be a number');
    await assertDenied({ subject: subject(), action: 'load' }, 'invalid input: program facts are required to load or attach');
  });

  it('treats a data document with the wrong types as granting nothing', async () => {
    const bad = policyEnv({ data: { grants: 'everyone', root_allowed: 'yes' } });
    try {
      const d = await evaluate(loadInput(), bad.paths);
      assert.equal(d.allow, false);
      assert.match(d.reasons[0], /has no grant/);
    } finally {
      bad.cleanup();
    }
  });

  it('ships examples that the policy accepts: lab and root-only', async () => {
    for (const [name, input, allow] of [
      ['lab', loadInput({ subject: subject({ groups: ['students'] }), attach: { iface: 'veth1', netns: null, priority: 600, proceed_on: [] } }), true],
      ['lab', loadInput({ subject: subject({ groups: ['students'] }), program: fixtureProgram('xdp_redirect'), attach: { iface: 'veth1', netns: null, priority: 600, proceed_on: [] } }), false],
      ['root-only', loadInput({ subject: root }), true],
      ['root-only', loadInput(), false],
    ] as const) {
      const e = policyEnv({ data: example(name) });
      try {
        assert.equal((await evaluate(input, e.paths)).allow, allow, `${name}: ${JSON.stringify(input.subject)}`);
      } finally {
        e.cleanup();
      }
    }
  });
});
