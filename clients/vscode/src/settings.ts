// Settings -> how the server is started and what it is told. No `vscode` import:
// unit-tested with node --test.

/** The extension's own settings (`tandem.server.*`): how to start the server. */
export interface LaunchSettings {
  path?: string;
  pythonPath?: string;
  args?: string[];
  env?: Record<string, string>;
}

export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** Keys of the `tandem` section that belong to this client, not the server. */
export const CLIENT_KEYS: readonly string[] = ['server', 'trace'];

/** Sections whose change needs a new server process (the rest are pulled live). */
export const LAUNCH_SECTIONS: readonly string[] = ['tandem.server'];

/** The command line for the server: `python -m tandem` or the `tandem-ls` executable. */
export function serverLaunch(
  launch: LaunchSettings,
  baseEnv: Record<string, string | undefined>,
): Launch {
  const extra = (launch.args ?? []).filter((a) => typeof a === 'string');
  const python = (launch.pythonPath ?? '').trim();
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(baseEnv)) {
    if (value !== undefined) env[key] = value;
  }
  for (const [key, value] of Object.entries(launch.env ?? {})) {
    if (typeof value === 'string') env[key] = value;
  }
  // The server's log goes to stderr -> the output channel; unbuffered so that it
  // arrives as it is written.
  env.PYTHONUNBUFFERED = '1';
  if (python) {
    return { command: python, args: ['-m', 'tandem', ...extra], env };
  }
  const command = (launch.path ?? '').trim() || 'tandem-ls';
  return { command, args: extra, env };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The `tandem` settings section as the server takes it (initializationOptions and
 * workspace/configuration): the client's own keys dropped, nothing else changed.
 * VS Code hands settings over as nested objects (`tandem.local.modelPath` ->
 * `{local: {modelPath}}`), which is the server's shape; the server checks types.
 */
export function serverSettings(section: unknown): Record<string, unknown> {
  if (!isObject(section)) return {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(section)) {
    if (CLIENT_KEYS.includes(key) || value === undefined || typeof value === 'function') {
      continue;
    }
    out[key] = isObject(value) ? serverSettings(value) : value;
  }
  return out;
}

/** Whether a configuration change needs the server restarted. */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return LAUNCH_SECTIONS.some((s) => affects(s));
}

/** Whether no model is set up: no model path and no TANDEM_MODEL. */
export function modelMissing(
  modelPath: unknown,
  env: Record<string, string | undefined>,
): boolean {
  const path = typeof modelPath === 'string' ? modelPath.trim() : '';
  return path === '' && !(env.TANDEM_MODEL ?? '').trim();
}

/** Languages the server is started for (VS Code language ids). */
export const LANGUAGES: readonly string[] = [
  'python', 'lua', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
  'go', 'rust', 'java', 'c', 'cpp', 'csharp', 'ruby', 'php', 'shellscript', 'zig',
  'kotlin', 'swift', 'scala', 'haskell', 'ocaml', 'elixir', 'dart', 'r', 'julia', 'sql',
];
