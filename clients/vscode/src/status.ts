// The server's status ($/tandem/status, tandem.status) -> what the status bar shows.
// No `vscode` import: unit-tested with node --test.

export interface ServerStatus {
  summary?: string[];
  backend?: string;
  offline?: boolean | 'auto';
  model?: { state?: string; message?: string; name?: string; gpu_offload?: boolean };
  routing?: { escalation?: boolean; escalateTo?: string | null; chains?: Record<string, string[]> };
}

export type Severity = 'information' | 'warning' | 'error';

export interface StatusView {
  /** Status bar text, e.g. "tandem: local ready". */
  text: string;
  /** Language status detail, e.g. "Qwen2.5-Coder-0.5B, GPU". */
  detail: string;
  severity: Severity;
  busy: boolean;
}

const BUSY = new Set(['loading', 'downloading', 'not loaded']);

/** Where completions come from: the first backend of the completion chain. */
function where(status: ServerStatus): string {
  const first = status.routing?.chains?.completion?.[0];
  let text = first ?? (status.backend === 'llama_cpp' || !status.backend ? 'local' : status.backend);
  if (status.routing?.escalation && status.routing.escalateTo) {
    text += `+${status.routing.escalateTo}`;
  }
  if (status.offline === true) text += ', offline';
  else if (status.offline === 'auto') text += ', no network';
  return text;
}

export function statusView(status: ServerStatus | undefined): StatusView {
  if (!status) {
    return { text: 'tandem: starting', detail: 'starting the server', severity: 'information', busy: true };
  }
  const state = status.model?.state ?? 'unknown';
  const gpu = status.model?.gpu_offload ? ' GPU' : '';
  const text = `tandem: ${where(status)} ${state}${gpu}`;
  const name = status.model?.name;
  const detail = name ? `${name}${status.model?.gpu_offload ? ', GPU' : ', CPU'}` : (status.model?.message ?? '');
  const severity: Severity =
    state === 'unavailable' ? 'error' : state === 'ready' || state === 'not used' ? 'information' : 'warning';
  return { text, detail, severity, busy: BUSY.has(state) };
}

/** The problem to put in front of the user with its fix, if the model cannot load. */
export function modelProblem(status: ServerStatus | undefined): string | undefined {
  if (status?.model?.state !== 'unavailable') return undefined;
  return status.model.message || 'the model could not be loaded';
}
