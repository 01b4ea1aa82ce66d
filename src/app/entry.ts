// The executable's entry point (scripts/compile.mjs): cli/ and api/ are one layer and know
// nothing of each other, so the service front end is wired in here, above both, and then the
// command line starts as src/cli/entry.ts starts it.
import './wire.js';
import '../cli/entry.js';
