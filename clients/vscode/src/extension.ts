// tandem-ls for VS Code: starts the server, passes settings through, binds commands
// and shows the server's status. Behaviour lives in the server; this is glue.
import * as vscode from 'vscode';
import {
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  MessageType,
  type ServerOptions,
  ShowMessageNotification,
  TransportKind,
} from 'vscode-languageclient/node';

import {
  CLOUD_CHOICES,
  COMMANDS,
  explainRequest,
  explanation,
  type Range,
  refactorMessage,
  refactorRequest,
  type Request,
  SERVER,
} from './commands';
import { NextEdits } from './nextedit';
import { LANGUAGES, type LaunchSettings, modelMissing, needsRestart, serverLaunch, serverSettings } from './settings';
import { modelProblem, type ServerStatus, statusView } from './status';

const STATUS_NOTIFICATION = '$/tandem/status';
const FOCUS_NOTIFICATION = 'tandem/didFocus';
const EXPLANATION_SCHEME = 'tandem-explanation';
const CHOOSE_MODEL = 'Choose a Model File…';

let client: LanguageClient | undefined;
let status: ServerStatus | undefined;
let output: vscode.LogOutputChannel;
let statusItem: vscode.StatusBarItem;
let languageItem: vscode.LanguageStatusItem;
const explanations = new (class implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }
  async show(markdown: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: EXPLANATION_SCHEME, path: '/Explanation.md' });
    this.texts.set(uri.toString(), markdown);
    this.changed.fire(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, {
      viewColumn: vscode.ViewColumn.Beside,
      preserveFocus: true,
      preview: true,
    });
  }
})();

function config(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('tandem');
}

function showStatus(next: ServerStatus | undefined): void {
  status = next;
  const view = statusView(next);
  statusItem.text = `${view.busy ? '$(loading~spin)' : '$(sparkle)'} ${view.text}`;
  statusItem.tooltip = [view.detail, ...(next?.summary ?? [])].filter(Boolean).join('\n');
  statusItem.backgroundColor =
    view.severity === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  languageItem.text = view.text.replace(/^tandem: /, '');
  languageItem.detail = view.detail;
  languageItem.busy = view.busy;
  languageItem.severity =
    view.severity === 'error'
      ? vscode.LanguageStatusSeverity.Error
      : view.severity === 'warning'
        ? vscode.LanguageStatusSeverity.Warning
        : vscode.LanguageStatusSeverity.Information;
}

/** The server's messages; a model that cannot load gets the actions that fix it. */
async function onShowMessage(params: { type: MessageType; message: string }): Promise<void> {
  const problem = modelProblem(status);
  if (problem && params.message.includes(problem)) {
    const pick = await vscode.window.showWarningMessage(params.message, CHOOSE_MODEL, 'Open Settings', 'Show Log');
    if (pick === CHOOSE_MODEL) await chooseModel();
    else if (pick === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'tandem.local');
    else if (pick === 'Show Log') output.show(true);
    return;
  }
  if (params.type === MessageType.Error) void vscode.window.showErrorMessage(params.message);
  else if (params.type === MessageType.Warning) void vscode.window.showWarningMessage(params.message);
  else if (params.type === MessageType.Info) void vscode.window.showInformationMessage(params.message);
  else output.appendLine(params.message);
}

async function startClient(): Promise<void> {
  const launch = serverLaunch(config().get<LaunchSettings>('server') ?? {}, process.env);
  const serverOptions: ServerOptions = {
    command: launch.command,
    args: launch.args,
    options: { env: launch.env },
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.flatMap((language) => [
      { scheme: 'file', language },
      { scheme: 'untitled', language },
    ]),
    initializationOptions: () => serverSettings(config()),
    synchronize: { configurationSection: 'tandem' },
    outputChannel: output,
    traceOutputChannel: output,
    middleware: {
      workspace: {
        // The server pulls the `tandem` section: answer without the client's keys.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          return Array.isArray(result)
            ? result.map((item, i) => (params.items[i]?.section === 'tandem' ? serverSettings(item) : item))
            : result;
        },
      },
    },
  };
  client = new LanguageClient('tandem', 'tandem-ls', serverOptions, clientOptions);
  showStatus(undefined);
  client.onNotification(STATUS_NOTIFICATION, (next: ServerStatus) => showStatus(next));
  // In place of the client's default display (handlers set before start win).
  client.onNotification(ShowMessageNotification.type, (params) => void onShowMessage(params));
  try {
    await client.start();
  } catch (e) {
    const message = `tandem-ls: could not start the server (${launch.command}): ${String(e)}`;
    output.appendLine(message);
    statusItem.text = '$(error) tandem: not running';
    const pick = await vscode.window.showErrorMessage(message, 'Open Settings', 'Show Log');
    if (pick === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'tandem.server');
    else if (pick === 'Show Log') output.show(true);
    return;
  }
  focus(vscode.window.activeTextEditor);
  // Status as it is now (the server also sends it whenever it changes).
  showStatus((await execute({ command: SERVER.status, arguments: [] })) as ServerStatus | undefined);
}

/** Tell the server which document is shown and where its cursor is. */
function focus(editor: vscode.TextEditor | undefined): void {
  if (!editor || !client?.isRunning() || !LANGUAGES.includes(editor.document.languageId)) return;
  void client.sendNotification(FOCUS_NOTIFICATION, {
    textDocument: { uri: editor.document.uri.toString() },
    position: editor.selection.active,
  });
}

async function stopClient(): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    try {
      await old.stop(5000);
    } catch (e) {
      output.appendLine(`tandem-ls: stopping the server: ${String(e)}`);
    }
  }
}

async function restart(): Promise<void> {
  await stopClient();
  await startClient();
}

/** Run a server command; errors become one message and `undefined`. */
async function execute(request: Request): Promise<unknown> {
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage('tandem-ls: the server is not running', 'Restart').then((pick) => {
      if (pick) void restart();
    });
    return undefined;
  }
  try {
    return await client.sendRequest(ExecuteCommandRequest.type, request);
  } catch (e) {
    void vscode.window.showErrorMessage(`tandem-ls: ${request.command} failed: ${(e as Error).message ?? e}`);
    return undefined;
  }
}

function target(): { uri: string; range: Range } | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !client) {
    void vscode.window.showInformationMessage('tandem-ls: open a file first');
    return undefined;
  }
  const c2p = client.code2ProtocolConverter;
  return { uri: c2p.asUri(editor.document.uri), range: c2p.asRange(editor.selection) };
}

async function explain(cloud = false): Promise<void> {
  const here = target();
  if (!here) return;
  const found = explanation(await execute(explainRequest(here.uri, here.range, cloud)));
  if (found.markdown) await explanations.show(found.markdown);
  // An error was already shown by the server (window/showMessage).
  else if (found.error) output.appendLine(`tandem-ls: explain: ${found.error}`);
}

async function refactor(cloud = false): Promise<void> {
  const here = target();
  if (!here) return;
  const instruction = await vscode.window.showInputBox({
    title: cloud ? 'tandem-ls: refactor with the cloud model' : 'tandem-ls: refactor',
    prompt: 'How should the selected code change?',
    placeHolder: 'e.g. use a dict comprehension; add type hints; handle the empty list',
  });
  const request = refactorRequest(here.uri, here.range, instruction, cloud);
  if (!request) return;
  const message = refactorMessage(await execute(request));
  if (message) output.appendLine(`tandem-ls: refactor: ${message}`);
}

async function askCloud(): Promise<void> {
  const pick = await vscode.window.showQuickPick(
    CLOUD_CHOICES.map((c) => ({ label: c.label, action: c.action })),
    { title: 'tandem-ls: ask the cloud model (when routing.allowEscalation permits)' },
  );
  if (pick?.action === 'explain') await explain(true);
  else if (pick?.action === 'refactor') await refactor(true);
}

async function toggleOffline(): Promise<void> {
  const cfg = config();
  const inspect = cfg.inspect<boolean>('offline');
  const target =
    inspect?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  const next = !cfg.get<boolean>('offline', false);
  await cfg.update('offline', next, target);
  void vscode.window.showInformationMessage(`tandem-ls: offline ${next ? 'on: no network connections' : 'off'}`);
}

async function showServerStatus(): Promise<void> {
  const found = (await execute({ command: SERVER.status, arguments: [] })) as ServerStatus | undefined;
  if (!found) return;
  showStatus(found);
  const actions = [
    { label: '$(pulse) Run Doctor', command: COMMANDS.doctor },
    { label: '$(output) Show Server Log', command: COMMANDS.showLog },
    { label: '$(debug-restart) Restart Server', command: COMMANDS.restart },
  ];
  const items: (vscode.QuickPickItem & { command?: string })[] = [
    ...(found.summary ?? []).map((line) => ({ label: line })),
    { label: '', kind: vscode.QuickPickItemKind.Separator },
    ...actions,
  ];
  const pick = await vscode.window.showQuickPick(items, { title: 'tandem-ls status' });
  if (pick?.command) await vscode.commands.executeCommand(pick.command);
}

async function doctor(): Promise<void> {
  const found = (await execute({ command: SERVER.doctor, arguments: [] })) as { text?: string } | undefined;
  if (!found?.text) return;
  const doc = await vscode.workspace.openTextDocument({ content: found.text, language: 'plaintext' });
  await vscode.window.showTextDocument(doc, { preview: true });
}

async function chooseModel(): Promise<void> {
  const files = await vscode.window.showOpenDialog({
    title: 'tandem-ls: choose a GGUF model file',
    canSelectMany: false,
    filters: { 'GGUF models': ['gguf'] },
  });
  if (!files?.length) return;
  await config().update('local.modelPath', files[0].fsPath, vscode.ConfigurationTarget.Global);
}

async function welcome(context: vscode.ExtensionContext): Promise<void> {
  const launchEnv = { ...process.env, ...(config().get<LaunchSettings>('server')?.env ?? {}) };
  if (context.globalState.get('welcomed') || !modelMissing(config().get('local.modelPath'), launchEnv)) return;
  await context.globalState.update('welcomed', true);
  const file = config().get<string>('local.modelFile');
  const pick = await vscode.window.showInformationMessage(
    `tandem-ls completes code with a model on this machine. No model file is set, so it downloads ${file} ` +
      'from Hugging Face once. Choose a GGUF file you have to skip the download.',
    CHOOSE_MODEL,
    'Keep the Default',
  );
  if (pick === CHOOSE_MODEL) await chooseModel();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('tandem-ls', { log: true });
  statusItem = vscode.window.createStatusBarItem('tandem-ls.status', vscode.StatusBarAlignment.Right, 100);
  statusItem.name = 'tandem-ls';
  statusItem.command = COMMANDS.showStatus;
  statusItem.show();
  languageItem = vscode.languages.createLanguageStatusItem('tandem-ls.model', [...LANGUAGES]);
  languageItem.name = 'tandem-ls model';
  languageItem.command = { title: 'Status', command: COMMANDS.showStatus };
  context.subscriptions.push(
    output,
    statusItem,
    languageItem,
    vscode.workspace.registerTextDocumentContentProvider(EXPLANATION_SCHEME, explanations),
    vscode.commands.registerCommand(COMMANDS.explain, () => explain()),
    vscode.commands.registerCommand(COMMANDS.refactor, () => refactor()),
    vscode.commands.registerCommand(COMMANDS.askCloud, askCloud),
    vscode.commands.registerCommand(COMMANDS.toggleOffline, toggleOffline),
    vscode.commands.registerCommand(COMMANDS.showStatus, showServerStatus),
    vscode.commands.registerCommand(COMMANDS.doctor, doctor),
    vscode.commands.registerCommand(COMMANDS.chooseModel, chooseModel),
    vscode.commands.registerCommand(COMMANDS.showLog, () => output.show(true)),
    vscode.commands.registerCommand(COMMANDS.restart, restart),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (needsRestart((s) => e.affectsConfiguration(s))) void restart();
    }),
    // Where the user is about to type: the server warms that prompt in idle time.
    vscode.window.onDidChangeActiveTextEditor((editor) => focus(editor)),
    vscode.window.onDidChangeTextEditorSelection((e) => {
      if (e.kind !== vscode.TextEditorSelectionChangeKind.Keyboard) focus(e.textEditor);
    }),
    { dispose: () => void stopClient() },
    new NextEdits(() => client, () => config().get<boolean>('nextEdit.enabled', true)),
  );
  void welcome(context);
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
