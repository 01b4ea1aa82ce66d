// Type-checks and compiles everything for the tests (tsc → build/), then bundles the CLI into
// dist/ with esbuild: one file plus lazily loaded chunks, because bpfd starts for every command
// and module resolution of hundreds of small files would dominate its start-up.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, chmodSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(root + 'package.json', 'utf8'));
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch {
  /* not a git checkout */
}

rmSync(root + 'build', { recursive: true, force: true });
execFileSync(process.execPath, [root + 'node_modules/typescript/bin/tsc', '-p', root + 'tsconfig.json'], { stdio: 'inherit' });

rmSync(root + 'dist', { recursive: true, force: true });
await build({
  entryPoints: { bpfd: root + 'src/cli/main.ts' },
  outdir: root + 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['koffi', 'lmdb', '@open-policy-agent/opa-wasm'],
  banner: { js: '#!/usr/bin/env node' },
  define: { __BPFD_VERSION__: JSON.stringify(pkg.version), __BPFD_COMMIT__: JSON.stringify(commit) },
  logLevel: 'warning',
});
chmodSync(root + 'dist/bpfd.mjs', 0o755);
