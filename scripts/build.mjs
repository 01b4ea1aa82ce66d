// `npm run build`: type-checks and compiles everything for node's test runner (tsc → build/),
// then compiles bpfd into one executable, dist/bpfd, with Bun (scripts/compile.mjs). Node stays
// the toolchain; Bun is only the runtime inside the executable, from the exactly pinned npm
// package @oven/bun-linux-x64, so `npm ci` brings it and nothing downloads anything else.
//
// What the compile keeps, and why (figures from `npm run bench`, which builds the variants with
// the switches of scripts/compile.mjs and prints them side by side):
// - bytecode (`--bytecode`, which needs the CommonJS output format): JavaScriptCore starts from
//   precompiled bytecode instead of parsing ~1 MB of bundled source each run.
// - whitespace and syntax minification, not identifiers (ordered-binary needs its own names):
//   less source to embed and to scan for the functions that bytecode does not cover.
// - the yaml shim: the policy SDK's yaml builtins otherwise evaluate a large parser in every
//   command that consults the policy.
// Dropped with Node: the V8 code-cache launcher (bytecode does its job), the build-time paths
// into node_modules (the addons are inside the executable), msgpackr's stream placeholder (Bun's
// node:stream is part of the runtime, not loaded from files).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

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

/** The Bun binary that npm installed (devDependency @oven/bun-linux-x64). */
const bunBinary = () => path.join(path.dirname(createRequire(root + 'package.json').resolve('@oven/bun-linux-x64/package.json')), 'bin', 'bun');

rmSync(root + 'dist', { recursive: true, force: true });
mkdirSync(root + 'dist');
execFileSync(bunBinary(), [root + 'scripts/compile.mjs', root + 'dist/bpfd', pkg.version, commit, ...process.argv.slice(2)], {
  stdio: 'inherit',
  // Bun's own install cache and telemetry stay out of the build
  env: { ...process.env, BUN_INSTALL_CACHE_DIR: path.join(root, 'build', '.bun-cache'), DO_NOT_TRACK: '1' },
});
