import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseOptions, type OptionRule } from '../../src/cli/args.js';

const rules: Record<string, OptionRule> = {
  path: { type: 'string' },
  output: { type: 'string', short: 'o', default: 'table' },
  metadata: { type: 'string', multiple: true },
  persist: { type: 'boolean' },
};

describe('cli option parsing (strict)', () => {
  it('reads --name value, --name=value, -o value, -ovalue, repeatable options and defaults', () => {
    assert.deepEqual(parseOptions(['--path', 'a.o', '--metadata=k=v', '--metadata', 'x=y', '-ojson', '--persist', 'pos'], rules), {
      values: { path: 'a.o', metadata: ['k=v', 'x=y'], output: 'json', persist: true },
      positionals: ['pos'],
    });
    assert.deepEqual(parseOptions(['-o', 'json'], rules).values.output, 'json');
    assert.equal(parseOptions([], rules).values.output, 'table');
    assert.equal(parseOptions(['--path', 'a', '--path', 'b'], rules).values.path, 'b', 'the last one given wins, as with node:util');
    assert.deepEqual(parseOptions(['--', '--path', '-'], rules).positionals, ['--path', '-']);
  });

  it('refuses what it cannot read, naming the option', () => {
    const refused = (args: string[], re: RegExp) => assert.throws(() => parseOptions(args, rules), (e: Error) => re.test(e.message));
    refused(['--priorty', '5'], /^Unknown option '--priorty'/);
    refused(['-x'], /^Unknown option '-x'/);
    refused(['--path'], /'--path <value>' argument missing/);
    refused(['--path', '--persist'], /'--path' argument is ambiguous.*--path=--persist/);
    refused(['--persist=yes'], /'--persist' does not take an argument/);
  });
});
