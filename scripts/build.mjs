// `npm run build`: type-checks and compiles everything for node's test runner (tsc → build/),
// then compiles bpfd into one executable, dist/bpfd, with Bun (scripts/compile.mjs). Node stays
// the toolchain; Bun is only the runtime inside the executable, from the exactly pinned npm
// package @oven/bun-linux-x64, so `npm ci` brings it and nothing downloads anything else.
//
// What the compile keeps, and why. Measured by building each variant with the switches of
// scripts/compile.mjs and running them interleaved, medians of 21 whole processes on the shared
// 2-core machine (loaded by other test runs, so the absolute figures are high; the differences
// are what counts): version / list / load --dry-run in ms.
//   all steps                      40 /  54 / 111
//   --no-bytecode                 103 / 141 / 249
//   --no-minify                    42 /  69 / 123
//   --no-shims (the yaml shim)     39 /  62 / 145
// - bytecode (which needs the CommonJS output format): JavaScriptCore starts from precompiled
//   bytecode instead of parsing ~1 MB of bundled source in every command. The largest step.
// - whitespace and syntax minification, not identifiers (ordered-binary compiles code from the
//   source of one of its own functions, which must keep its variable names): less to load.
// - the yaml shim: the policy SDK's yaml builtins otherwise evaluate a large parser in every
//   command that consults the policy, though no shipped rule calls them.
// - the JIT policy (tier-up thresholds x100 until the service serves): a load with --iface spent
//   ~3.5 ms less of its own time (31 against 34.5 ms, wall less its prog-load and link syscalls,
//   medians of 15, interleaved; x10 saved ~3 ms, x1000 ~2.5 ms), version ~0.7 ms and list
//   ~1.3 ms less. BUN_JSC_useJIT=0 gave the same load figure: short commands gain nothing from
//   the JIT. Measured later, on another 2-core machine of this kind, unloaded.
// Dropped with Node: the V8 code-cache launcher (bytecode does its job), the build-time paths
// into node_modules and the resolve-by-name fallbacks (the addons are inside the executable,
// required by fixed paths at build time), and msgpackr's stream placeholder (node:stream is part
// of Bun's runtime, not files to read).
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
