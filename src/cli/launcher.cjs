#!/usr/bin/env node
'use strict';
// bpfd starts once per command, and compiling its bundle (~450 KB) is a large share of a run.
// This launcher compiles the bundle with a V8 code cache written at build time. A cache made by
// another V8 (node was upgraded) is rejected by V8 itself and the bundle compiles as usual, so a
// stale cache costs speed, never correctness.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire, wrap } = require('node:module');

const file = path.join(__dirname, 'bpfd-main.cjs');
const cacheFile = `${file}.cache`;
let cachedData;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  // no cache (a development build): compile from source
}
const script = new vm.Script(wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
const bundle = { exports: {} };
script.runInThisContext()(bundle.exports, createRequire(file), bundle, file, __dirname);

// Build time only: run representative commands so that the functions they use are compiled,
// then save everything compiled so far as the cache.
const warmup = process.env.BPFD_CODE_CACHE_WARMUP;
if (warmup) {
  (async () => {
    for (const argv of JSON.parse(warmup)) await bundle.exports.cli(argv);
    fs.writeFileSync(cacheFile, script.createCachedData());
    process.exitCode = 0;
  })();
} else {
  bundle.exports.cli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
