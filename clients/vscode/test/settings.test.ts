import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { modelMissing, needsRestart, serverLaunch, serverSettings } from '../src/settings';

const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'));

test('python -m tandem when a Python interpreter is set, with extra args and env', () => {
  const launch = serverLaunch(
    { pythonPath: ' /venv/bin/python ', path: 'ignored', args: ['-v'], env: { TANDEM_MODEL: '/m.gguf' } },
    { PATH: '/usr/bin', HOME: '/home/u', UNSET: undefined },
  );
  assert.equal(launch.command, '/venv/bin/python');
  assert.deepEqual(launch.args, ['-m', 'tandem', '-v']);
  assert.equal(launch.env.TANDEM_MODEL, '/m.gguf');
  assert.equal(launch.env.PATH, '/usr/bin');
  assert.equal(launch.env.PYTHONUNBUFFERED, '1');
  assert.ok(!('UNSET' in launch.env));
});

test('the tandem-ls executable by default; an empty path means the default', () => {
  assert.deepEqual(serverLaunch({}, {}).command, 'tandem-ls');
  assert.deepEqual(serverLaunch({ path: '  ' }, {}).command, 'tandem-ls');
  const launch = serverLaunch({ path: '/opt/tandem-ls', args: ['--log-file', '/tmp/t.log'] }, {});
  assert.equal(launch.command, '/opt/tandem-ls');
  assert.deepEqual(launch.args, ['--log-file', '/tmp/t.log']);
});

test('settings reach the server as the nested tandem section, without client keys', () => {
  const section = {
    offline: true,
    local: { modelPath: '/m.gguf', nGpuLayers: null },
    completion: { debounceMs: 20, enabled: true },
    routing: { completion: ['local', 'ollama'] },
    server: { pythonPath: '/venv/bin/python' },
    trace: { server: 'verbose' },
    get: () => 1, // WorkspaceConfiguration's methods
    has: () => true,
  };
  assert.deepEqual(serverSettings(section), {
    offline: true,
    local: { modelPath: '/m.gguf', nGpuLayers: null },
    completion: { debounceMs: 20, enabled: true },
    routing: { completion: ['local', 'ollama'] },
  });
  assert.deepEqual(serverSettings(undefined), {});
  assert.deepEqual(serverSettings(['not', 'an', 'object']), {});
});

test('only launch settings restart the server; the rest are pulled live', () => {
  const changed = (...sections: string[]) => (s: string) => sections.some((c) => c === s || c.startsWith(`${s}.`));
  assert.equal(needsRestart(changed('tandem.server.pythonPath')), true);
  assert.equal(needsRestart(changed('tandem.server.env')), true);
  assert.equal(needsRestart(changed('tandem.local.modelPath')), false);
  assert.equal(needsRestart(changed('tandem.offline')), false);
  assert.equal(needsRestart(changed('editor.fontSize')), false);
});

test('a model is missing only with no model path and no TANDEM_MODEL', () => {
  assert.equal(modelMissing('', {}), true);
  assert.equal(modelMissing('  ', { TANDEM_MODEL: '' }), true);
  assert.equal(modelMissing(undefined, {}), true);
  assert.equal(modelMissing('/m.gguf', {}), false);
  assert.equal(modelMissing('', { TANDEM_MODEL: '/m.gguf' }), false);
});

test('every contributed setting is documented and has a default; server settings are in the tandem section', () => {
  const groups: { properties: Record<string, { default?: unknown; markdownDescription?: string; description?: string }> }[] =
    pkg.contributes.configuration;
  const keys = groups.flatMap((g) => Object.keys(g.properties));
  assert.ok(keys.length > 60, `only ${keys.length} settings`);
  for (const group of groups) {
    for (const [key, prop] of Object.entries(group.properties)) {
      assert.ok(key.startsWith('tandem.'), key);
      assert.ok('default' in prop, `${key} has no default`);
      assert.ok((prop.markdownDescription ?? prop.description ?? '').length > 10, `${key} is not documented`);
    }
  }
  for (const key of ['tandem.offline', 'tandem.local.modelPath', 'tandem.completion.debounceMs', 'tandem.server.pythonPath']) {
    assert.ok(keys.includes(key), key);
  }
});
