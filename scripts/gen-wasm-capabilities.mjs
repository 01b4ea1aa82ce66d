#!/usr/bin/env node
// Writes policies/capabilities.json: the builtins of the installed `opa` that its wasm compiler
// implements inside the module itself. Compiling the shipped policy against this file means the
// module never calls back into JavaScript for a builtin, so the engine can provide none and refuse
// any module that asks for one.
//
// OPA does not publish that list, so we measure it: compile one probe rule per builtin to wasm and
// read the module's `builtins()` export, which names every builtin the module expects the host to
// implement. A builtin that compiles and is absent from that list is native.
//
// Usage: node scripts/gen-wasm-capabilities.mjs  (OPA env var or ~/go/bin/opa or opa on PATH)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(import.meta.url);
const { loadPolicySync } = require('@open-policy-agent/opa-wasm');
const opa = process.env.OPA ?? (existsSync(path.join(os.homedir(), 'go/bin/opa')) ? path.join(os.homedir(), 'go/bin/opa') : 'opa');

const current = JSON.parse(execFileSync(opa, ['capabilities', '--current'], { encoding: 'utf8' }));
// The ABI versions are what the JS SDK can run; take them from the SDK rather than guess.
const sdkCaps = JSON.parse(readFileSync(path.join(root, 'node_modules/@open-policy-agent/opa-wasm/capabilities.json'), 'utf8'));

// Operators are planned as comparisons/arithmetic, not calls by name: probe them in infix form.
function probeBody(b) {
  const n = b.decl?.args?.length ?? 0;
  const a = (i) => `input.a${i}`;
  if (b.name === 'assign') return `x := ${a(0)}\nx != null`;
  if (b.name === 'eq') return `x = ${a(0)}\nx != null`;
  if (b.name === 'internal.member_2') return `${a(0)} in ${a(1)}`;
  if (b.name === 'internal.member_3') return `${a(0)}, ${a(1)} in ${a(2)}`;
  if (b.infix) {
    return b.decl?.result?.type === 'boolean' && !['and', 'or'].includes(b.name)
      ? `${a(0)} ${b.infix} ${a(1)}`
      : `x := ${a(0)} ${b.infix} ${a(1)}\nx != null`;
  }
  const args = Array.from({ length: n }, (_, i) => a(i)).join(', ');
  return `x := ${b.name}(${args})\nx != null`;
}

let candidates = current.builtins.filter((b) => !b.name.startsWith('internal.') || b.name.startsWith('internal.member'));
const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-caps-'));
let nonNative = null;
try {
  // Some builtins cannot be called this way (deprecated in Rego v1, relations, wrong arity for
  // variadics): drop whatever the compiler rejects and retry until the probe compiles.
  for (let attempt = 0; attempt < 300 && nonNative === null; attempt++) {
    const lines = ['package probe', ''];
    const lineOf = new Map();
    candidates.forEach((b, i) => {
      lineOf.set(lines.length + 1, b.name);
      lines.push(`r${i} if {`, ...probeBody(b).split('\n').map((l) => `\t${l.trim()}`), '}', '');
    });
    writeFileSync(path.join(dir, 'probe.rego'), lines.join('\n'));
    const entries = candidates.flatMap((_, i) => ['-e', `probe/r${i}`]);
    try {
      execFileSync(opa, ['build', '-t', 'wasm', ...entries, '-o', path.join(dir, 'b.tar.gz'), path.join(dir, 'probe.rego')], {
        stdio: ['ignore', 'pipe', 'pipe'],
        encoding: 'utf8',
      });
    } catch (e) {
      const out = String(e.stdout) + String(e.stderr);
      const bad = new Set();
      for (const m of out.matchAll(/probe\.rego:(\d+):/g)) {
        const line = Number(m[1]);
        // errors point at a line of the rule: walk back to its head
        let head = line;
        while (head > 0 && !lineOf.has(head)) head--;
        const name = lineOf.get(head);
        if (name) bad.add(name);
      }
      if (bad.size === 0) throw new Error(`opa build failed and no probe line was named:\n${out}`);
      candidates = candidates.filter((b) => !bad.has(b.name));
      continue;
    }
    execFileSync('tar', ['-xzf', path.join(dir, 'b.tar.gz'), '-C', dir, '/policy.wasm'], { stdio: 'ignore' });
    const policy = loadPolicySync(readFileSync(path.join(dir, 'policy.wasm')));
    const ex = policy.wasmInstance.exports;
    const mem = new Uint8Array(policy.mem.buffer);
    let p = ex.opa_json_dump(ex.builtins());
    let s = '';
    while (mem[p] !== 0) s += String.fromCharCode(mem[p++]);
    nonNative = new Set(Object.keys(JSON.parse(s)));
  }
  if (nonNative === null) throw new Error('the probe did not compile after 300 attempts');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const native = candidates.filter((b) => !nonNative.has(b.name));
const caps = {
  builtins: native,
  future_keywords: current.future_keywords,
  features: current.features,
  wasm_abi_versions: sdkCaps.wasm_abi_versions,
};
const out = path.join(root, 'policies', 'capabilities.json');
writeFileSync(out, JSON.stringify(caps, null, 2) + '\n');
console.log(`${out}: ${native.length} native builtins (${nonNative.size} need a host implementation, ${current.builtins.length - candidates.length} not probeable)`);
