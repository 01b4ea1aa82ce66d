import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import type { PolicyInput } from '../../src/policy/input.js';
import { addFuel, FUEL_GET_EXPORT, FUEL_SET_EXPORT, fuelExportKind, hasFuelExport, LEGACY_FUEL_EXPORT, WasmRewriteError } from '../../src/policy/wasm-fuel.js';
import { DEFAULT_FUEL } from '../../src/policy/module.js';
import { example, existing, fixtureProgram, LEGACY_POLICY, loadInput, SHIPPED_POLICY, SHIPPED_POLICY_OPA, subject, TEST_POLICIES } from '../helpers/policy.js';
import { body, budgetOf, I32_TO_I32, module, name, section, TO_I32, uleb, vec, VOID } from '../helpers/wasm.js';

// The fuel rewrite against the real modules (the shipped policy, every test policy) and against
// small hand-assembled ones that isolate one case each: a bare loop, recursion without any loop,
// an imported global ahead of the new one, a module with neither globals nor exports.

// loadPolicySync is only on the CommonJS export.
const opa = createRequire(import.meta.url)('@open-policy-agent/opa-wasm') as typeof import('@open-policy-agent/opa-wasm');
const BUDGET = 1_000_000n;

// loop br 0 end: spins forever
const SPIN = [0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b];
// calls(n) = n == 0 ? 1 : calls(n - 1) + calls(n - 1): 2^n, with 2^(n+1) - 1 calls and no loop
const DOUBLE = [0x20, 0x00, 0x45, 0x04, 0x7f, 0x41, 0x01, 0x05, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x01, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x01, 0x6a, 0x0b, 0x0b];
// global.get 1 end: the module's own global, after the imported one
const GET_OWN_GLOBAL = [0x23, 0x01, 0x0b];

/** spin, double and own (reads its defined global, 42), with an imported global in front. */
function handMade(): Uint8Array {
  return module(
    section(1, vec([VOID, I32_TO_I32, TO_I32])),
    section(2, vec([[...name('env'), ...name('g'), 0x03, 0x7f, 0x00]])),
    section(3, vec([[0x00], [0x01], [0x02]])),
    section(6, vec([[0x7f, 0x01, 0x41, 42, 0x0b]])),
    section(7, vec([[...name('spin'), 0x00, 0x00], [...name('double'), 0x00, 0x01], [...name('own'), 0x00, 0x02]])),
    section(10, vec([body(SPIN), body(DOUBLE), body(GET_OWN_GLOBAL)])),
  );
}

function instantiate(bytes: Uint8Array) {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {
    env: { g: new WebAssembly.Global({ value: 'i32', mutable: false }, 7) },
  });
  return { ex: instance.exports as Record<string, (...a: number[]) => number>, fuel: budgetOf(instance.exports) };
}

// Every module opa built: the shipped policy before its budget was added, and the test policies.
const wasmFiles = () => readdirSync(TEST_POLICIES).filter((f) => f.endsWith('.wasm')).map((f) => path.join(TEST_POLICIES, f));

describe('wasm fuel rewrite', () => {
  it('walks every instruction of the shipped module and of every test policy into a valid module', () => {
    for (const file of wasmFiles()) {
      const original = readFileSync(file);
      const { bytes, stats } = addFuel(original, BUDGET);
      assert.ok(WebAssembly.validate(bytes), `${file}: the fuelled module does not validate`);
      assert.ok(stats.functions > 700 && stats.instructions > 30_000 && stats.loops > 300, `${file}: ${JSON.stringify(stats)}`);
      assert.ok(stats.charged > 0 && stats.charged < stats.functions, `${file}: leaf functions are not charged at entry`);
      assert.ok(hasFuelExport(bytes) && !hasFuelExport(original));
      const exports = WebAssembly.Module.exports(new WebAssembly.Module(bytes));
      assert.deepEqual(exports.filter((e) => e.name.startsWith('bpfd_')), [{ name: FUEL_SET_EXPORT, kind: 'function' }, { name: FUEL_GET_EXPORT, kind: 'function' }]);
      assert.ok(!exports.some((e) => e.kind === 'global' && e.name === LEGACY_FUEL_EXPORT), 'the budget global stays internal');
    }
  });

  it('stops a loop when the budget runs out, and leaves 0 in the global', () => {
    const { ex, fuel } = instantiate(addFuel(handMade(), BUDGET).bytes);
    fuel.value = 1000n;
    assert.throws(() => ex.spin(), (e: unknown) => e instanceof WebAssembly.RuntimeError && /unreachable/.test(e.message));
    assert.equal(fuel.value, 0n);
  });

  it('charges every call of a function that calls others, so recursion without loops stops too', () => {
    const { ex, fuel } = instantiate(addFuel(handMade(), BUDGET).bytes);
    fuel.value = BUDGET;
    assert.equal(ex.double(10), 1024);
    assert.equal(BUDGET - fuel.value, 2047n, 'one charge per call');
    fuel.value = BUDGET;
    assert.throws(() => ex.double(40), WebAssembly.RuntimeError); // 2^41 calls
    assert.equal(fuel.value, 0n);
  });

  it('stops a call tree that grows without loops or recursion (each function calls the next twice)', () => {
    // f0 calls f1 twice, f1 calls f2 twice, ..., f39 does nothing: 2^40 calls, no cycle, no loop.
    const depth = 40;
    const bodies = Array.from({ length: depth }, (_, i) => body(i === depth - 1 ? [0x0b] : [0x10, ...uleb(i + 1), 0x10, ...uleb(i + 1), 0x0b]));
    const tree = module(section(1, vec([VOID])), section(3, vec(bodies.map(() => [0x00]))), section(7, vec([[...name('tree'), 0x00, 0x00]])), section(10, vec(bodies)));
    const { bytes, stats } = addFuel(tree, BUDGET);
    assert.ok(stats.charged > 0 && stats.charged < depth, `the functions near the leaves stay uncharged: ${JSON.stringify(stats)}`);
    const { ex, fuel } = instantiate(bytes);
    fuel.value = BUDGET;
    assert.throws(() => ex.tree(), WebAssembly.RuntimeError);
    assert.equal(fuel.value, 0n);
  });

  it('puts the budget after imported and defined globals, moving no existing index', () => {
    const { ex, fuel } = instantiate(addFuel(handMade(), BUDGET).bytes);
    fuel.value = 5n;
    assert.equal(ex.own(), 42, 'global 1 is still the module-defined global');
    assert.equal(fuel.value, 5n, 'a leaf function is not charged');
    assert.equal(typeof fuel.value, 'bigint');
  });

  it('starts with the initial budget, which pays for instantiation', () => {
    const { fuel } = instantiate(addFuel(handMade(), 123n).bytes);
    assert.equal(fuel.value, 123n);
  });

  it('adds the global and export sections to a module that has neither', () => {
    const bytes = addFuel(module(section(1, vec([VOID])), section(3, vec([[0x00]])), section(10, vec([body(SPIN)]))), BUDGET).bytes;
    assert.ok(WebAssembly.validate(bytes));
    const { fuel } = instantiate(bytes);
    assert.equal(fuel.value, BUDGET);
  });

  it('refuses what it cannot walk, saying why', () => {
    const shipped = readFileSync(SHIPPED_POLICY);
    const rejects = (bytes: Uint8Array, message: RegExp, unsupported: boolean) =>
      assert.throws(() => addFuel(bytes, BUDGET), (e: unknown) => e instanceof WasmRewriteError && message.test(e.message) && e.unsupported === unsupported);
    rejects(Buffer.from('not wasm at all'), /not a WebAssembly binary/, false);
    rejects(shipped.subarray(0, 4096), /unexpected end of data/, false);
    const simd = [0x41, 0x00, 0xfd, 0x0c, ...new Array(16).fill(0), 0x1a, 0x0b]; // v128.const
    rejects(module(section(1, vec([VOID])), section(3, vec([[0x00]])), section(10, vec([body(simd)]))), /unsupported instruction 0xfd at byte \d+ \(function 0\)/, true);
    const cut = [0x03, 0x40, 0x0c, 0x00, 0x0b]; // loop without the body's final end
    rejects(module(section(1, vec([VOID])), section(3, vec([[0x00]])), section(10, vec([body(cut)]))), /function 0 has no final end/, false);
    rejects(addFuel(handMade(), BUDGET).bytes, /already exports bpfd_fuel_set/, true);
    rejects(readFileSync(LEGACY_POLICY), /already exports bpfd_fuel$/, true);
  });

  it('ships wasm/bpfd.wasm as exactly the module opa built plus the budget (npm run policy:build)', () => {
    const expected = addFuel(readFileSync(SHIPPED_POLICY_OPA), DEFAULT_FUEL).bytes;
    assert.ok(Buffer.from(expected).equals(readFileSync(SHIPPED_POLICY)), 'wasm/bpfd.wasm is stale: run npm run policy:build');
    assert.equal(fuelExportKind(readFileSync(SHIPPED_POLICY)), 'accessors');
  });

  it('tells a budget built by an older bpfd (an exported global) from the accessors, and from none', () => {
    assert.equal(fuelExportKind(readFileSync(LEGACY_POLICY)), 'global');
    assert.ok(hasFuelExport(readFileSync(LEGACY_POLICY)));
    assert.equal(fuelExportKind(readFileSync(SHIPPED_POLICY_OPA)), null);
  });
});

describe('fuelled shipped policy', () => {
  const contractor = subject({ groups: ['netops', 'contractors'] });
  const root = subject({ uid: 0, gid: 0, groups: ['root'], username: 'root' });
  const at = (priority: number, iface = 'eth0') => ({ iface, netns: null, priority, proceed_on: [] });
  const others = [existing('fw_drop', 120, 'firewall'), existing('mon', 300, 'monitoring'), ...Array.from({ length: 8 }, (_, i) => existing(`p${i}`, 400 + i))];
  const inputs: unknown[] = [
    loadInput(),
    loadInput({ subject: root }),
    loadInput({ subject: root, attach: at(10) }),
    loadInput({ subject: contractor, program: fixtureProgram('xdp_redirect') }),
    loadInput({ attach: at(950, 'lo') }),
    loadInput({ application: 'monitoring', existing: others, attach: at(110) }),
    loadInput({ application: 'ratelimit', existing: others, attach: at(299) }),
    loadInput({ program: { ...fixtureProgram('xdp_count'), license: 'Proprietary', insn_count: 5000 } }),
    { subject: subject(), action: 'pull', program: { image: 'docker.io/evil/x:1' } },
    { subject: subject(), action: 'unload', program: fixtureProgram('xdp_pass'), owner: { uid: 1002, username: 'bob' } },
    { subject: { uid: 'root' }, action: 'reboot' },
    {},
  ];

  it('decides every input exactly as the module opa built, under every example data document', () => {
    const original = readFileSync(SHIPPED_POLICY_OPA);
    const fuelled = readFileSync(SHIPPED_POLICY);
    for (const data of ['netops', 'lab', 'root-only'].map(example).concat([{}])) {
      const plain = opa.loadPolicySync(original);
      const withFuel = opa.loadPolicySync(fuelled);
      const fuel = budgetOf((withFuel.wasmInstance as WebAssembly.Instance).exports);
      plain.setData(data as object);
      fuel.value = BUDGET;
      withFuel.setData(data as object);
      for (const input of inputs) {
        fuel.value = BUDGET;
        const want: unknown = plain.evaluate(input as PolicyInput, 'bpfd/authz/decision');
        assert.deepEqual(withFuel.evaluate(input as PolicyInput, 'bpfd/authz/decision'), want, JSON.stringify(input));
        assert.ok(fuel.value > 0n && BUDGET - fuel.value < 100_000n, `spent ${BUDGET - fuel.value}`);
      }
    }
  });
});
