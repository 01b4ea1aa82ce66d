import { runFuzz, summary } from './harness.js';

/**
 * `npm run fuzz -- --count N [--seed S] [--concurrency C] [--spawn-all]`: the CI fuzz run, longer.
 * Failing mutants are kept under fixtures/hostile/ with what failed, for a regression test.
 */
const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    console.error(`fuzz: --${name} needs a whole number, got ${args[i + 1]}`);
    process.exit(2);
  }
  return v;
};
const known = new Set(['--count', '--seed', '--concurrency', '--spawn-all', '--sample-every']);
for (const a of args) {
  if (a.startsWith('--') && !known.has(a)) {
    console.error(`fuzz: unknown option ${a} (options: ${[...known].join(', ')})`);
    process.exit(2);
  }
}
if (process.getuid?.() !== 0) {
  console.error('fuzz: run as root (sudo npm run fuzz): mutants that pass are loaded into the kernel');
  process.exit(2);
}
// Ctrl-C stops after the mutants at hand, so every worker still unloads and cleans up.
const stop = { requested: false };
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => (stop.requested = true));
const report = await runFuzz({
  stop,
  seed: opt('seed', 2026),
  count: opt('count', 2000),
  concurrency: opt('concurrency', 3),
  sampleEvery: opt('sample-every', 8),
  spawnAll: args.includes('--spawn-all'),
  keepFailures: true,
  log: (l) => console.log(l),
});
for (const line of summary(report)) console.log(line);
process.exit(report.failures.length ? 1 : 0);
