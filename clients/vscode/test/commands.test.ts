import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { COMMANDS, explainRequest, explanation, refactorMessage, refactorRequest, SERVER } from '../src/commands';

const root = join(__dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const range = { start: { line: 2, character: 0 }, end: { line: 5, character: 0 } };

test('every contributed command is bound by the extension, and the other way round', () => {
  const contributed: string[] = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
  const bound: string[] = Object.values(COMMANDS);
  assert.deepEqual(contributed, bound.sort());
  const source = readFileSync(join(root, 'src', 'extension.ts'), 'utf8');
  for (const [name, id] of Object.entries(COMMANDS)) {
    assert.match(source, new RegExp(`registerCommand\\(COMMANDS\\.${name}\\b`), `${id} is not registered`);
  }
  for (const menu of Object.values(pkg.contributes.menus) as { command: string }[][]) {
    for (const item of menu) assert.ok(contributed.includes(item.command), item.command);
  }
});

test("the extension's command ids never collide with the server's (the client registers those too)", () => {
  const ours: Set<string> = new Set(Object.values(COMMANDS));
  for (const id of Object.values(SERVER)) assert.ok(!ours.has(id), id);
});

test('Explain sends the range; Ask Cloud adds cloud: true', () => {
  assert.deepEqual(explainRequest('file:///a.py', range), {
    command: 'tandem.explain',
    arguments: [{ uri: 'file:///a.py', range }],
  });
  assert.deepEqual(explainRequest('file:///a.py', range, true).arguments, [{ uri: 'file:///a.py', range, cloud: true }]);
});

test('Refactor sends the instruction; no instruction, no request', () => {
  assert.deepEqual(refactorRequest('file:///a.py', range, '  add type hints '), {
    command: 'tandem.refactor',
    arguments: [{ uri: 'file:///a.py', range, task: 'rewrite', instruction: 'add type hints' }],
  });
  assert.equal(refactorRequest('file:///a.py', range, undefined), undefined);
  assert.equal(refactorRequest('file:///a.py', range, '   '), undefined);
  assert.deepEqual(refactorRequest('file:///a.py', range, 'x', true)?.arguments, [
    { uri: 'file:///a.py', range, task: 'rewrite', instruction: 'x', cloud: true },
  ]);
});

test('results: applied refactors say nothing, failures say why; empty explanations are errors', () => {
  assert.equal(refactorMessage({ applied: true, changes: 1 }), undefined);
  assert.equal(refactorMessage({ applied: false, message: 'no safe edit' }), 'no safe edit');
  assert.equal(refactorMessage(null), 'the server gave no answer');
  assert.deepEqual(explanation({ markdown: '# x' }), { markdown: '# x' });
  assert.deepEqual(explanation({ markdown: '', error: 'no model' }), { error: 'no model' });
  assert.deepEqual(explanation({ markdown: '' }), { error: 'the model gave an empty explanation' });
});
