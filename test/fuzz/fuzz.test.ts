import assert from 'node:assert/strict';
import { test } from 'node:test';
import { needsRoot } from '../helpers/bpfd.js';
import { runFuzz, summary } from './harness.js';

// CI's share of the fuzzing: 2,000 mutants of every fixture object through the executable's
// load file (see harness.ts for which go through it), with a fixed seed so a failure here is a
// failure on every machine. BPFD_FUZZ_SEED and BPFD_FUZZ_COUNT vary it; npm run fuzz runs more.
test('hostile objects: no signal, no hang, no internal error, nothing left behind', { skip: needsRoot() }, async () => {
  const report = await runFuzz({
    seed: Number(process.env.BPFD_FUZZ_SEED ?? 2026),
    count: Number(process.env.BPFD_FUZZ_COUNT ?? 2000),
    concurrency: 3,
    log: (l) => console.log(l),
  });
  for (const line of summary(report)) console.log(line);
  assert.deepEqual(report.failures, [], 'every failure above names its seed and index: npm run fuzz -- --seed S --count N keeps it under fixtures/hostile/');
  assert.ok(report.loaded > 0 && report.inProcessRefused > 0, 'the mutants reached both the gate and the kernel');
  assert.ok(report.evaluated > 0 && report.layers > 0, 'the mutants reached policy eval --object and the image layer extractor');
});
