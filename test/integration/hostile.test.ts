import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kernelProgIds, makeEnv, needsRoot, ROOT, type Env } from '../helpers/bpfd.js';
import { newProgramsNamed } from '../helpers/kernel-leaks.js';

// Every mutant the fuzzer (test/fuzz) found on the way stays in fixtures/hostile/ with a sidecar
// naming its program, how it was made, what went wrong then and, where known, what bpfd must
// answer now. Each is loaded through the executable and must leave nothing behind.
const dir = path.join(ROOT, 'fixtures', 'hostile');
const cases = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => ({ file: path.join(dir, f.replace(/\.json$/, '.o')), ...JSON.parse(readFileSync(path.join(dir, f), 'utf8')) }));

describe('regression mutants from the fuzzer', { skip: needsRoot() }, () => {
  let env: Env;
  before(() => (env = makeEnv()));
  after(() => env?.cleanup());

  for (const c of cases) {
    test(`${path.basename(c.file)}: ${c.problem}`, () => {
      const before = kernelProgIds();
      const r = env.run('load', 'file', '--path', c.file, '--name', c.program, '-o', 'json');
      assert.ok([0, 1, 2].includes(r.status), `exit ${r.status}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout + r.stderr, /internal error/i);
      if (c.expect) {
        assert.equal(r.status, c.expect.status, r.stderr);
        assert.match(r.stderr, new RegExp(c.expect.message));
        if (c.expect.gate !== false) assert.match(r.stderr, /is not a valid BPF object: /);
      }
      if (r.status === 0) assert.equal(env.run('unload', String(r.json().id)).status, 0);
      assert.deepEqual(env.pins(), [], 'no pins left');
      assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'no record left');
      // other suites load programs at the same time: only one of this name would be ours
      if (r.status !== 0) assert.deepEqual(newProgramsNamed(before, c.program, env.bpffs), [], 'nothing loaded');
    });
  }
});
