// Type-checks and compiles everything for the tests (tsc → build/), then bundles the CLI into one
// CommonJS file, dist/bpfd.cjs. bpfd starts once per command, so start-up is most of what a user
// waits for: Node's ESM loader costs ~8 ms more than CommonJS before any code runs, resolving a
// few hundred small files costs more still, and lmdb's and msgpackr's native-addon discovery
// spawns a libc probe (detect-libc → child_process) that the shims below avoid.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
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

// Where the bundle's run-time dependencies are, relative to dist/, found once here: resolving a
// package by name at run time walks node_modules and parses package.json "exports" (~5 ms for
// lmdb, its prebuilt addon, koffi's addon and ordered-binary). Each shim tries this path first
// and resolves by name only when it is gone (bpfd installed with another node_modules layout).
const resolveHere = createRequire(root + 'package.json').resolve;

// An expression for the shims: the absolute path of `spec` (joined with `more`) where the build
// found it, or null when it is not there (not installed for this platform, or moved since).
const fixedPath = (spec, ...more) => {
  let relative;
  try {
    relative = path.join(path.relative(root + 'dist', resolveHere(spec)), ...more);
  } catch {
    return 'null';
  }
  return `((p) => (require('node:fs').existsSync(p) ? p : null))(require('node:path').join(__dirname, ${JSON.stringify(relative)}))`;
};

// Modules replaced inside the bundle. Each keeps the original behaviour reachable at run time.
const shims = {
  // lmdb finds its addon relative to its own file, which no longer exists once bundled, and
  // through a resolver that probes libc with a child process: load the prebuilt addon directly,
  // and fall back to the real resolver for anything unusual (a source build, another libc).
  'node-gyp-build-optional-packages': `
    const path = require('node:path');
    const fs = require('node:fs');
    module.exports = function loadAddon() {
      const lmdbDir = ${fixedPath('lmdb', '..', '..')} ?? path.dirname(require.resolve(['lmdb'][0])).replace(/[\\\\/]dist$/, '');
      const musl = fs.existsSync('/lib/ld-musl-' + (process.arch === 'x64' ? 'x86_64' : process.arch) + '.so.1');
      if (!musl && !fs.existsSync(path.join(lmdbDir, 'build', 'Release'))) {
        try {
          const platform = '@lmdb/lmdb-' + process.platform + '-' + process.arch;
          const builtFor = ${fixedPath(`@lmdb/lmdb-${process.platform}-${process.arch}/package.json`, '..')};
          const prebuilt = builtFor?.endsWith(platform) ? builtFor : path.dirname(require.resolve(platform + '/package.json'));
          for (const name of ['node.abi' + process.versions.modules + '.glibc.node', 'node.napi.glibc.node']) {
            const file = path.join(prebuilt, name);
            if (fs.existsSync(file)) return require(file);
          }
        } catch { /* no prebuilt package: the real resolver says why */ }
      }
      return require('node-gyp-build-optional-packages')(lmdbDir);
    };`,
  // koffi's platform package reads node's own ELF header to tell glibc from musl before loading
  // its addon; on glibc load the addon directly and leave anything else to the package.
  '@koromix/koffi-linux-x64': `
    const path = require('node:path');
    const fs = require('node:fs');
    let addon = null;
    if (!fs.existsSync('/lib/ld-musl-x86_64.so.1')) {
      try {
        addon = require(${fixedPath('@koromix/koffi-linux-x64/package.json', '..', 'linux_x64', 'koffi.node')} ??
          path.join(path.dirname(require.resolve(['@koromix/koffi-linux-x64/package.json'][0])), 'linux_x64', 'koffi.node'));
      } catch { /* the package decides */ }
    }
    module.exports = addon ?? require(['@koromix/koffi-linux-x64'][0]);`,
  // msgpackr's optional native string extractor only speeds up large decodes, which bpfd never
  // does; loading it costs the same libc probe.
  'msgpackr-extract': 'module.exports = null;',
  // lmdb's key codec compiles a string reader with new Function from the source text of one of
  // its own functions, which must keep its original variable names: bundling renames them, and
  // string keys then never decode (an endless loop). So it stays a file of its own in node_modules.
  'ordered-binary': `module.exports = require(${fixedPath('ordered-binary')} ?? ['ordered-binary'][0]);`,
  // The SDK's yaml builtins load a large parser at import; bpfd's policies compile with
  // wasm-native builtins only, so load it the first time a custom policy really calls one.
  yaml: `
    let real = null;
    const yaml = () => (real ??= require('yaml'));
    module.exports = { parse: (...a) => yaml().parse(...a), stringify: (...a) => yaml().stringify(...a) };`,
};

// msgpackr defines its stream classes when imported; bpfd never streams msgpack, so they extend a
// placeholder and node:stream (~2 ms of start-up) is not loaded for them.
const msgpackrStream = `
  class Transform { constructor() { throw new Error('msgpackr streams are not available in bpfd'); } }
  module.exports = { Transform };`;

// koffi picks its platform package through a createRequire'd `require`, which the bundler cannot
// see, so the package was resolved by name at run time and the koffi shim above never applied.
// Dropping that local `require` leaves plain require calls: the bundler routes the x64 one to the
// shim and keeps the other platforms' packages external.
const koffiStatic = /[\\/]koffi[\\/]src[\\/]koffi[\\/]src[\\/]static\.js$/;
const koffiLocalRequire = 'const require = createRequire(import.meta.url);';

const shimPlugin = {
  name: 'bpfd-shims',
  setup(b) {
    b.onLoad({ filter: koffiStatic }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes(koffiLocalRequire)) throw new Error(`build: ${args.path} changed; revisit the koffi shim in scripts/build.mjs`);
      return { contents: source.replace(koffiLocalRequire, ''), loader: 'js' };
    });
    b.onResolve({ filter: /^stream$/ }, (args) => (/[\\/]msgpackr[\\/]/.test(args.importer) ? { path: 'msgpackr-stream', namespace: 'bpfd-stream-shim' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'bpfd-stream-shim' }, () => ({ contents: msgpackrStream, loader: 'js' }));
    const filter = new RegExp(`^(${Object.keys(shims).join('|')})$`);
    b.onResolve({ filter }, (args) => (args.namespace === 'bpfd-shim' ? { path: args.path, external: true } : { path: args.path, namespace: 'bpfd-shim' }));
    b.onLoad({ filter: /.*/, namespace: 'bpfd-shim' }, (args) => ({ contents: shims[args.path], loader: 'js', resolveDir: root }));
  },
};

rmSync(root + 'dist', { recursive: true, force: true });
await build({
  entryPoints: [root + 'src/app/main.ts'],
  outfile: root + 'dist/bpfd-main.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // koffi's addons for other platforms: required at run time only where they apply.
  external: ['@koromix/*'],
  plugins: [shimPlugin],
  minifyWhitespace: true,
  minifySyntax: true,
  banner: { js: 'const __bpfd_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
  define: {
    __BPFD_VERSION__: JSON.stringify(pkg.version),
    __BPFD_COMMIT__: JSON.stringify(commit),
    'import.meta.url': '__bpfd_import_meta_url',
  },
  logLevel: 'warning',
});
copyFileSync(root + 'src/cli/launcher.cjs', root + 'dist/bpfd.cjs');
chmodSync(root + 'dist/bpfd.cjs', 0o755);

// The V8 code cache (see src/cli/launcher.cjs), made by running commands that touch most of the
// code a user's commands run, in a throwaway runtime and state dir. None of them changes the
// kernel: load is a --dry-run.
const scratch = mkdtempSync(path.join(os.tmpdir(), 'bpfd-build-'));
const warmup = [
  ['--help'],
  ['version'],
  ['list'],
  ['list', '-o', 'json'],
  ['get', '1'],
  ['load', 'file', '--path', root + 'fixtures/bytecode/xdp_count.o', '--name', 'xdp_count', '--iface', 'lo', '--priority', '40', '--dry-run'],
  ['policy', 'log', '--limit', '1'],
];
try {
  execFileSync(process.execPath, [root + 'dist/bpfd.cjs'], {
    stdio: 'ignore',
    env: {
      ...process.env,
      BPFD_CODE_CACHE_WARMUP: JSON.stringify(warmup),
      BPFD_RUNTIME_DIR: path.join(scratch, 'run'),
      BPFD_STATE_DIR: path.join(scratch, 'state'),
    },
  });
} catch (e) {
  console.warn(`build: the code-cache warm-up failed (${e.message}); bpfd works, only its start-up is slower`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (!existsSync(root + 'dist/bpfd-main.cjs.cache')) console.warn('build: no code cache was written');
