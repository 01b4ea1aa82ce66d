// Runs every compiled test file under build/test with node's test runner, one file at a time.
// Unit tests (build/test/unit) run together. Every other file touches the kernel, and several
// of them compare kernel-wide state before and after (no new program, no new link), so each runs
// holding a machine-wide lock: two checkouts testing at once on one machine take turns file by
// file instead of seeing each other's programs. Node 20's --test takes files, not globs.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const root = new URL('../build/test', import.meta.url).pathname;
const KERNEL_LOCK = '/tmp/bpfd-kernel-tests.lock';
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(p);
  }
};
walk(root);
const only = process.argv.slice(2);
const chosen = (only.length ? files.filter((f) => only.some((o) => f.includes(o))) : files).sort();
if (chosen.length === 0) {
  console.error(`no test files found under ${root}${only.length ? ` matching ${only.join(', ')}` : ''}`);
  process.exit(1);
}
const unit = chosen.filter((f) => f.startsWith(path.join(root, 'unit') + path.sep));
const kernel = chosen.filter((f) => !unit.includes(f));

const totals = { pass: 0, fail: 0, skipped: 0, files: 0 };
let failedRun = false;

/** Runs one node --test invocation, echoing its output and adding its counts to the totals. */
function runTests(argv) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      tail = (tail + chunk.toString()).slice(-4096);
    });
    child.on('close', (code, signal) => {
      for (const key of ['pass', 'fail', 'skipped']) {
        const m = tail.match(new RegExp(`^# ${key} (\\d+)$`, 'm'));
        if (m) totals[key] += Number(m[1]);
      }
      totals.files++;
      if (code !== 0) failedRun = true;
      if (signal) console.error(`test run ended by ${signal}: ${argv.join(' ')}`);
      resolve();
    });
  });
}

const node = [process.execPath, '--test', '--test-concurrency=1'];
if (unit.length) await runTests([...node, ...unit]);
for (const f of kernel) await runTests(['flock', KERNEL_LOCK, ...node, f]);

console.log(`\n${chosen.length} test files`);
console.log(`tests: ${totals.pass} passed, ${totals.fail} failed, ${totals.skipped} skipped`);
process.exit(failedRun || totals.fail > 0 ? 1 : 0);
