// The extension's commands and the server commands they send. No `vscode` import:
// unit-tested with node --test. extension.ts binds them to the editor.

/** Command ids contributed in package.json (the server's own ids are tandem.*). */
export const COMMANDS = {
  explain: 'tandem-ls.explain',
  refactor: 'tandem-ls.refactor',
  askCloud: 'tandem-ls.askCloud',
  toggleOffline: 'tandem-ls.toggleOffline',
  showStatus: 'tandem-ls.showStatus',
  doctor: 'tandem-ls.doctor',
  chooseModel: 'tandem-ls.chooseModel',
  showLog: 'tandem-ls.showLog',
  restart: 'tandem-ls.restart',
} as const;

/** `workspace/executeCommand` ids the server registers. */
export const SERVER = {
  explain: 'tandem.explain',
  refactor: 'tandem.refactor',
  status: 'tandem.status',
  doctor: 'tandem.doctor',
} as const;

export interface Position {
  line: number;
  character: number;
}
export interface Range {
  start: Position;
  end: Position;
}

export interface Request {
  command: string;
  arguments: unknown[];
}

/** Explain the range (or the definition at the cursor when the range is empty). */
export function explainRequest(uri: string, range: Range, cloud = false): Request {
  return { command: SERVER.explain, arguments: [{ uri, range, ...(cloud ? { cloud: true } : {}) }] };
}

/** Rewrite the range as instructed; undefined when there is no instruction. */
export function refactorRequest(
  uri: string,
  range: Range,
  instruction: string | undefined,
  cloud = false,
): Request | undefined {
  const text = instruction?.trim();
  if (!text) return undefined;
  return {
    command: SERVER.refactor,
    arguments: [{ uri, range, task: 'rewrite', instruction: text, ...(cloud ? { cloud: true } : {}) }],
  };
}

/** What Ask Cloud offers; each runs its command with `cloud: true`. */
export const CLOUD_CHOICES = [
  { label: 'Explain with the cloud model', action: 'explain' },
  { label: 'Refactor with the cloud model…', action: 'refactor' },
] as const;

/** The outcome of a refactor as one message, or undefined when it was applied. */
export function refactorMessage(result: unknown): string | undefined {
  if (typeof result !== 'object' || result === null) return 'the server gave no answer';
  const r = result as { applied?: boolean; message?: string };
  if (r.applied) return undefined;
  return r.message ?? 'the edit was not applied';
}

/** The Markdown of an explanation, or the error to show. */
export function explanation(result: unknown): { markdown?: string; error?: string } {
  if (typeof result !== 'object' || result === null) return { error: 'the server gave no answer' };
  const r = result as { markdown?: string; error?: string };
  if (r.error) return { error: r.error };
  if (!r.markdown) return { error: 'the model gave an empty explanation' };
  return { markdown: r.markdown };
}
