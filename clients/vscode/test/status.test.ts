import assert from 'node:assert/strict';
import { test } from 'node:test';

import { modelProblem, statusView } from '../src/status';

test('before the first status: starting, busy', () => {
  const view = statusView(undefined);
  assert.equal(view.text, 'tandem: starting');
  assert.equal(view.busy, true);
});

test('a local model on the GPU, ready', () => {
  const view = statusView({
    backend: 'llama_cpp',
    offline: false,
    model: { state: 'ready', name: 'Qwen2.5-Coder-0.5B', gpu_offload: true },
    routing: { chains: { completion: ['local'] }, escalation: false },
  });
  assert.equal(view.text, 'tandem: local ready GPU');
  assert.equal(view.detail, 'Qwen2.5-Coder-0.5B, GPU');
  assert.equal(view.severity, 'information');
  assert.equal(view.busy, false);
});

test('offline, escalation, network loss and loading are all visible', () => {
  const base = { model: { state: 'loading' }, routing: { chains: { completion: ['ollama', 'local'] } } };
  assert.equal(statusView({ ...base, offline: true }).text, 'tandem: ollama, offline loading');
  assert.equal(statusView({ ...base, offline: 'auto' }).text, 'tandem: ollama, no network loading');
  assert.equal(statusView({ ...base, offline: true }).busy, true);
  const cloud = statusView({
    model: { state: 'ready' },
    routing: { chains: { completion: ['local'] }, escalation: true, escalateTo: 'anthropic' },
  });
  assert.equal(cloud.text, 'tandem: local+anthropic ready');
});

test('a model that cannot load is an error with its message', () => {
  const status = { model: { state: 'unavailable', message: 'model file not found: /x.gguf' } };
  const view = statusView(status);
  assert.equal(view.severity, 'error');
  assert.equal(view.detail, 'model file not found: /x.gguf');
  assert.equal(modelProblem(status), 'model file not found: /x.gguf');
  assert.equal(modelProblem({ model: { state: 'ready' } }), undefined);
  assert.equal(modelProblem(undefined), undefined);
});
