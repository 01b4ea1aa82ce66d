// Adds bpfd's evaluation budget (src/policy/wasm-fuel.ts) to a policy module ahead of time, so a
// cold `bpfd load` does not spend ~20 ms rewriting it. bpfd adds it at load to any module that
// lacks it, so this is only about start-up time. Usage: node scripts/add-fuel.mjs IN.wasm OUT.wasm
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node scripts/add-fuel.mjs IN.wasm OUT.wasm');
  process.exit(2);
}
let fuel, policy;
try {
  fuel = await import(root + 'build/src/policy/wasm-fuel.js');
  policy = await import(root + 'build/src/policy/module.js');
} catch {
  console.error('add-fuel: build bpfd first (npm run build)');
  process.exit(1);
}
const { bytes, stats } = fuel.addFuel(readFileSync(input), policy.DEFAULT_FUEL);
writeFileSync(output, bytes);
console.log(`${output}: budget added (${stats.loops} loops, ${stats.charged} of ${stats.functions} functions charged at entry)`);
